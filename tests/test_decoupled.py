"""Second stages on a backbone's features (crt, tau-norm, lws, feat-*) and mixed batches in classify."""

import pytest
import torch
from torch import nn

import tailgan.classify.decoupled as decoupled
from tailgan.classify import parse_strategy, train_and_score
from tailgan.classify.config import ClassifyConfig
from tailgan.classify.decoupled import STAGES, HeadTask
from tailgan.data import BatchStream, load_data
from tailgan.nets.heads import TAU_GRID, tau_normalized
from tailgan.scores import balanced_accuracy


def quiet(msg):
    pass


def feature_task(seed=0, counts=(200, 20, 5), dim=4, **cfg):
    """Three Gaussian classes of features, imbalanced; validation balanced."""
    g = torch.Generator().manual_seed(seed)
    means = torch.eye(3, dim) * 3

    def draw(n_per):
        y = torch.repeat_interleave(torch.arange(3), torch.tensor(n_per))
        return (means[y] + torch.randn(len(y), dim, generator=g)).clamp_min(0), y

    z, y = draw(list(counts))
    vz, vy = draw([30, 30, 30])
    fc = nn.Linear(dim, 3)
    return HeadTask(fc, z, y, vz, vy, ClassifyConfig(**cfg), seed, "cpu", quiet)


def test_strategy_names_compose_modifiers_with_any_loss():
    s = parse_strategy("crt+gan+balanced-softmax")
    assert (s.stage, s.synthetic, s.loss, s.mix) == ("crt", "gan", "balanced-softmax", "none")
    assert s.backbone.name == "balanced-softmax" and s.backbone.synthetic is None and s.backbone.stage == "none"
    assert parse_strategy("cmo+la").mix == "cmo" and parse_strategy("cmo+la").loss == "la"
    assert parse_strategy("crt").backbone.name == "vanilla"
    assert parse_strategy("us+cs").sampler == "us-half"  # the seeds' names stay strategies of their own
    for bad in ("cmo+cmo", "crt+lws", "gan+us", "crt+nope"):
        with pytest.raises(Exception, match="strategy"):
            parse_strategy(bad)


def test_crt_trains_only_a_new_linear_head_on_class_balanced_batches(monkeypatch):
    drawn = []

    class Recording(BatchStream):
        def next(self):
            idx = super().next()
            drawn.append(self.labels[idx])
            return idx

    monkeypatch.setattr(decoupled, "BatchStream", Recording)
    task = feature_task(head_epochs=20, batch_size=32)
    before = task.fc.weight.detach().clone()
    head, record = STAGES.get("crt")(task)
    share = torch.bincount(torch.cat(drawn), minlength=3).double() / len(torch.cat(drawn))
    assert share.sub(1 / 3).abs().max() < 0.05  # the real counts are 200 : 20 : 5
    assert torch.equal(task.fc.weight, before)  # the backbone's head is not touched; a fresh one is trained
    assert isinstance(head, nn.Linear) and record["valid_acsa"] > 0.8
    assert record["steps"] == -(-20 * 225 // 32)


def test_crt_in_classify_keeps_the_backbone_body_and_reuses_it():
    data = load_data("digits_lt")
    backbones, kept = {}, []
    common = dict(steps=40, batch_size=32, head_epochs=2, log=quiet, backbones=backbones)
    r = train_and_score(data, "crt", seed=0, keep_model=kept.append, **common)
    ((backbone, record, _),) = backbones.values()
    body = {k: v for k, v in kept[0].state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in body.items())
    assert r["backbone"] == "vanilla" and r["second_stage"]["kind"] == "crt"
    r2 = train_and_score(data, "lws", seed=0, **common)  # same backbone: trained once
    assert len(backbones) == 1 and r2["backbone_valid_acsa"] == r["backbone_valid_acsa"]


def test_tau_norm_picks_the_best_tau_on_validation():
    task = feature_task(seed=1)
    with torch.no_grad():
        task.fc.weight.copy_(torch.eye(3, 4) * torch.tensor([[4.0], [1.0], [0.3]]))  # a head biased to class 0
        task.fc.bias.zero_()
    head, record = STAGES.get("tau-norm")(task)
    scores = [balanced_accuracy(task.valid_y, tau_normalized(task.fc, t)(task.valid_z).argmax(1)) for t in TAU_GRID]
    assert record["tau_norm"] == TAU_GRID[scores.index(max(scores))] and record["valid_acsa"] == max(scores)
    assert torch.allclose(head.weight, tau_normalized(task.fc, record["tau_norm"]).weight)


@pytest.mark.parametrize("kind", ["feat-calibrate", "feat-diffusion"])
def test_feature_stages_fill_the_tail_and_report_the_filter(kind):
    task = feature_task(feat_steps=200, feat_sample_steps=10, head_epochs=5)
    head, record = STAGES.get(kind)(task)
    assert record["generated_counts"] == [0, 180, 195]  # fill: up to the largest class
    kept = sum(sum(v[:2]) for v in record["filter_report"].values())
    assert kept == record["kept"] and sum(sum(v) for v in record["filter_report"].values()) == 375
    assert record["train_features"] == 225 + record["kept"]


def test_no_validation_or_test_image_reaches_a_feature_generator(monkeypatch):
    """Poison the validation and test images; the generator's inputs must all be features of training images."""
    import tailgan.classify.train as classify_train
    from tailgan.data.splits import carve_validation

    seen = {}

    def poisoned_carve(data, fraction, seed):
        real, valid, split = carve_validation(data, fraction, seed)
        valid.images.fill_(255)
        seen["real"] = real.images.clone()
        return real, valid, split

    def spy(z, y, add, task):
        seen["z"] = z.clone()
        return z[:0], y[:0], {}

    monkeypatch.setattr(classify_train, "carve_validation", poisoned_carve)
    monkeypatch.setitem(decoupled.GENERATORS, "feat-calibrate", spy)
    data = load_data("digits_lt")
    data.test.images.fill_(255)
    kept = []
    train_and_score(data, "feat-calibrate", seed=0, steps=20, batch_size=32, head_epochs=1, feat_space="raw",
                    log=quiet, keep_model=kept.append)  # fmt: skip
    body = kept[0]
    body.fc = nn.Identity()
    white = body(torch.ones(1, *data.test.images.shape[1:]))
    assert not (seen["z"] - white).abs().amax(1).lt(1e-5).any()
    assert torch.allclose(seen["z"], body(seen["real"].float() / 127.5 - 1), atol=1e-5)  # the training part, all


def test_cmo_batches_paste_class_balanced_boxes_and_weigh_both_labels():
    from tailgan.classify.train import _batches, _mixing_loss

    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.zeros(300, dtype=torch.long), torch.ones(30, dtype=torch.long), torch.full((6,), 2)])
    images = torch.randint(0, 256, (len(labels), 1, 8, 8), generator=g, dtype=torch.uint8)
    cfg = ClassifyConfig(batch_size=64, mix_prob=1.0, augment="none")
    batch = _batches(images, labels, parse_strategy("cmo"), cfg, 0, "cpu", None, None)
    minority, lams = [], []
    for step in range(1, 30):
        x, (y_a, y_b, lam), w = batch(step)
        assert 0 <= lam <= 1 and x.shape == (64, 1, 8, 8)  # 1: a box that rounded to nothing
        minority.append(y_b)
        lams.append(lam)
    assert sum(lam < 1 for lam in lams) > 20  # mix_prob=1: every batch draws a box
    share = torch.bincount(torch.cat(minority), minlength=3).double() / (29 * 64)
    assert share.sub(1 / 3).abs().max() < 0.05  # drawn with weights 1 / n_c, not 300 : 30 : 6
    logits = torch.randn(4, 3)
    ce = lambda z, y, p, w: nn.functional.cross_entropy(z, y)  # noqa: E731
    y_a, y_b = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 1, 1])
    got = _mixing_loss(ce)(lambda x: logits, None, (y_a, y_b, 0.25), None, 0.0)
    want = 0.25 * nn.functional.cross_entropy(logits, y_a) + 0.75 * nn.functional.cross_entropy(logits, y_b)
    assert float(got) == pytest.approx(float(want))


def test_synthetic_images_skip_augmentation_when_asked():
    from tailgan.classify.train import _batches

    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(40) % 2
    synthetic = torch.arange(40) >= 20
    cfg = ClassifyConfig(batch_size=40, augment="standard", augment_synthetic=False)
    x, y, _ = _batches(images, labels, parse_strategy("vanilla"), cfg, 0, "cpu", None, synthetic)(1)
    idx = BatchStream(labels, 40, seed=0).next()
    raw = images[idx].float() / 127.5 - 1
    syn = synthetic[idx]
    assert torch.allclose(x[syn], raw[syn]) and not torch.allclose(x[~syn], raw[~syn])


def test_a_second_stage_says_it_ignores_finetune():
    data = load_data("digits_lt")
    with pytest.warns(UserWarning, match="--finetune is ignored by strategy 'crt'"):
        train_and_score(data, "crt", seed=0, steps=5, batch_size=32, head_epochs=1, finetune="head", log=quiet)
