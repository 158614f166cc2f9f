"""The synthetic-data protocol (issue 12): amounts and classes, the filter, the guard, synthetic weights in
the loss, combination with loss strategies, two-stage training and the command line."""

import argparse
import json
import math

import pytest
import torch
from torch import nn

from tailgan import classify_cli
from tailgan.classify.strategies import parse_strategy, synthetic_classes, synthetic_counts
from tailgan.classify.train import ClassifyConfig, init_model, train_and_score, train_classifier
from tailgan.data import load_data, to_float, to_uint8
from tailgan.data.splits import carve_validation
from tailgan.errors import TailganError
from tailgan.synthesis.images import check_recognition, filter_synthetic, recognition_rates


class FakeGenerator:
    """The ``load_generator`` contract: class c -> a constant image of grey level c / 9 * 2 - 1."""

    def __init__(self, num_classes=10):
        self.num_classes, self.run_dir, self.step, self.data_config = num_classes, "fake-run", 7, None
        self.calls = []

    def sample(self, labels, seed=None, batch_size=256):
        self.calls.append((len(labels), seed))
        base = (labels.float() / (self.num_classes - 1) * 2 - 1).view(-1, 1, 1, 1)
        return base.expand(-1, 1, 8, 8).clone()


def _table(rows):
    """(10, 10) class probabilities: rows[k] = (predicted class, its probability) for grey level k."""
    t = torch.empty(10, 10)
    for k, (j, q) in enumerate(rows):
        t[k] = (1 - q) / 9
        t[k, j] = q
    return t


class LevelClassifier(nn.Module):
    """A fixed classifier of the grey level k = round((mean + 1) / 2 * 9): logits log(table[k])."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, x):
        k = ((x.mean(dim=(1, 2, 3)) + 1) / 2 * 9).round().long().clamp(0, 9)
        return self.table[k].log()


# level 6 is recognised but with probability 0.6 only; level 7 images are taken for class 0
RIGHT = [(k, 0.99) for k in range(10)]
RIGHT[6], RIGHT[7] = (6, 0.6), (0, 0.99)
REFERENCE = LevelClassifier(_table(RIGHT))


def _images(levels):
    """Constant 8x8 uint8 images of grey level k / 9 * 2 - 1 (the FakeGenerator's class-k image)."""
    grey = torch.tensor(levels, dtype=torch.float32).div(9).mul(2).sub(1)
    return to_uint8(grey.view(-1, 1, 1, 1).expand(-1, 1, 8, 8))


@pytest.fixture(scope="module")
def digits():
    return load_data("digits_lt")


# --- how many, which classes ---------------------------------------------------------------------------------


def test_synthetic_amounts_and_classes():
    counts = [100, 30, 5]
    assert synthetic_counts(counts, "fill") == [0, 70, 95]
    assert synthetic_counts(counts, "ratio:0.5") == [0, 20, 45]
    assert synthetic_counts(counts, "target:40") == [0, 10, 35]
    assert synthetic_counts(counts, "target:100,50,10") == [0, 20, 5]
    assert synthetic_counts(counts, "add:7") == [7, 7, 7]
    assert synthetic_counts(counts, "add:1,2,3") == [1, 2, 3]
    assert synthetic_classes(counts, "below:31") == [1, 2]
    assert synthetic_counts(counts, "add:7", "below:31") == [0, 7, 7]
    assert synthetic_counts(counts, "fill", "2") == [0, 0, 95]
    for bad in ("ratio:0", "target:1,2", "add:-1", "target:x", "lots"):
        with pytest.raises(TailganError, match="--synthetic"):
            synthetic_counts(counts, bad)
    with pytest.raises(TailganError, match="--synthetic-classes"):
        synthetic_classes(counts, "3")


def test_gan_strategy_uses_the_amount_and_classes(digits):
    gen = FakeGenerator()
    r = train_and_score(
        digits, "gan", steps=1, batch_size=32, evals=1, generator=gen, guard=False,
        synthetic="add:5", synthetic_classes="below:20", log=lambda s: None,
    )
    small = [c for c, n in enumerate(r["real_counts"]) if n < 20]
    assert small and r["synthetic_counts"] == [5 if c in small else 0 for c in range(10)]
    assert r["train_counts"] == [n + s for n, s in zip(r["real_counts"], r["synthetic_counts"])]


# --- the filter ----------------------------------------------------------------------------------------------


def test_filter_keeps_and_drops_the_right_images():
    images = _images([0, 6, 7, 7, 9, 3])
    labels = torch.tensor([0, 6, 7, 0, 9, 4])
    keep, acc = filter_synthetic(images, labels, REFERENCE, threshold=0.9)
    # 0: class 0 at 0.99; 6: only 0.6; 7 labelled 7 but seen as 0; 7 labelled 0: seen as 0 at 0.99; 9: yes;
    # 3 labelled 4: seen as 3
    assert keep.tolist() == [True, False, False, True, True, False]
    assert acc == [1.0, None, None, None, 0.0, None, 0.0, 0.0, None, 1.0]
    assert filter_synthetic(images, labels, REFERENCE, threshold=0.5)[0].tolist() == [
        True, True, False, True, True, False,
    ]
    # a threshold of 0 still requires the image's own class to be the classifier's top class
    assert filter_synthetic(images, labels, REFERENCE, threshold=0.0)[0].tolist() == [
        True, True, False, True, True, False,
    ]
    # float images in [-1, 1] work the same
    assert torch.equal(filter_synthetic(to_float(images), labels, REFERENCE, 0.9)[0], keep)
    with pytest.raises(TailganError, match="threshold"):
        filter_synthetic(images, labels, REFERENCE, threshold=1.5)


def test_gan_filter_in_training_with_a_fixed_reference(digits):
    gen = FakeGenerator()
    logs = []
    r = train_and_score(
        digits, "gan", steps=1, batch_size=32, evals=1, generator=gen, reference=REFERENCE,
        filter=0.9, guard=False, log=logs.append,
    )
    want = [max(r["real_counts"]) - n for n in r["real_counts"]]
    # classes 6 (confidence 0.6) and 7 (taken for class 0) lose every image; the others keep all of theirs
    assert r["synthetic_counts"] == [0 if c in (6, 7) else want[c] for c in range(10)]
    assert r["filter_acceptance"] == [None] + [0.0 if c in (6, 7) else 1.0 for c in range(1, 10)]
    assert r["train_counts"] == [n + s for n, s in zip(r["real_counts"], r["synthetic_counts"])]
    # dropped images are drawn again with new seeds, up to filter_rounds rounds
    assert gen.calls == [(sum(want), 0), (want[6] + want[7], 100_003), (want[6] + want[7], 200_006)]
    assert r["synthetic_scored"] == sum(want) + 2 * (want[6] + want[7])
    assert any("acceptance per class" in line and "0.00" in line for line in logs)


def test_reference_classifier_is_trained_once_for_configurations_that_share_it(digits):
    """``references`` keeps each seed's reference: a second run that differs only in the synthetic protocol
    reuses it (no second training) and scores exactly as a run that trains its own."""
    refs, logs = {}, []
    kw = dict(steps=2, batch_size=32, evals=1, generator=FakeGenerator(), guard_refuse=None, guard_warn=0.0)
    train_and_score(digits, "gan", filter=0.5, references=refs, log=logs.append, **kw)
    assert len(refs) == 1 and sum("training the reference" in m for m in logs) == 1
    cached = train_and_score(digits, "gan", synthetic_weight=0.5, references=refs, log=logs.append, **kw)
    assert len(refs) == 1 and sum("training the reference" in m for m in logs) == 1
    fresh = train_and_score(digits, "gan", synthetic_weight=0.5, log=lambda m: None, **kw)
    assert cached["recognition_rate"] == fresh["recognition_rate"] and cached["acsa"] == fresh["acsa"]
    # another seed (or any classifier setting) is another reference
    train_and_score(digits, "gan", seed=1, references=refs, log=logs.append, **kw)
    train_and_score(digits, "gan", references=refs, log=logs.append, **{**kw, "steps": 3})
    assert len(refs) == 3


# --- the guard -----------------------------------------------------------------------------------------------


def test_recognition_rates_and_guard():
    images = _images([0, 6, 7, 7, 9])
    labels = torch.tensor([0, 6, 7, 7, 9])
    rates = recognition_rates(images, labels, REFERENCE)  # top-1, whatever the confidence
    assert rates == [1.0, None, None, None, None, None, 1.0, 0.0, None, 1.0]
    logs = []
    mean = check_recognition(rates, list("0123456789"), warn_below=0.5, refuse_below=0.2, log=logs.append)
    assert mean == pytest.approx(0.75) and "7 0.00" in logs[0] and "(mean 0.75)" in logs[0]
    with pytest.warns(UserWarning, match="recognised as their class only 75%"):
        check_recognition(rates, list("0123456789"), warn_below=0.8, refuse_below=0.2, log=logs.append)
    assert logs[-1].startswith("WARNING")
    with pytest.raises(TailganError, match="only 75% .*--no-guard"):
        check_recognition(rates, list("0123456789"), warn_below=0.9, refuse_below=0.8, log=logs.append)
    with pytest.warns(UserWarning, match="75%"):  # never refused without a refusal threshold, still warned
        assert check_recognition(rates, list("0123456789"), 0.9, None, log=logs.append) == pytest.approx(0.75)


def test_guard_refuses_unrecognisable_images_and_can_be_switched_off(digits):
    wrong = LevelClassifier(_table([((k + 1) % 10, 0.99) for k in range(10)]))  # never the right class
    with pytest.raises(TailganError, match="only 0% of the time"):
        train_and_score(
            digits, "gan", steps=1, batch_size=32, evals=1, generator=FakeGenerator(), reference=wrong,
            log=lambda s: None,
        )
    r = train_and_score(
        digits, "gan", steps=1, batch_size=32, evals=1, generator=FakeGenerator(), reference=wrong,
        guard_refuse=None, guard_warn=0.0, log=lambda s: None,
    )
    assert r["recognition_rate"] == [None] + [0.0] * 9 and r["recognition_mean"] == 0.0
    r = train_and_score(
        digits, "gan", steps=1, batch_size=32, evals=1, generator=FakeGenerator(), reference=REFERENCE,
        log=lambda s: None,
    )
    assert r["recognition_rate"][7] == 0.0 and r["recognition_rate"][6] == 1.0
    assert r["recognition_mean"] == pytest.approx(8 / 9)


# --- synthetic weight and combination with loss strategies ------------------------------------------------------


def test_synthetic_weight_enters_the_loss_as_stated(digits):
    """gan+cs with weight s: loss = sum_i s_i w_{y_i} CE_i / sum_i s_i, with cs weights from n_real + s n_syn."""
    s = 0.25
    cfg = ClassifyConfig(steps=1, batch_size=5000, evals=1, synthetic_weight=s, guard=False, augment="none")
    r = train_and_score(digits, "gan+cs", seed=0, config=cfg, generator=FakeGenerator(), log=lambda m: None)
    real, _, _ = carve_validation(digits, cfg.valid_fraction, 0)
    n_real = real.counts()
    n_syn = [max(n_real) - n for n in n_real]
    syn_y = torch.repeat_interleave(torch.arange(10), torch.tensor(n_syn))
    x = torch.cat([real.images, _images(syn_y.tolist())])
    y = torch.cat([real.labels, syn_y])
    sw = torch.cat([torch.ones(len(real)), torch.full((len(syn_y),), s)]).double()
    eff = [a + s * b for a, b in zip(n_real, n_syn)]
    assert r["effective_counts"] == pytest.approx(eff)
    inv = torch.tensor([1 / e for e in eff], dtype=torch.float64)
    w = inv * 10 / inv.sum()
    model = init_model(parse_strategy("gan+cs"), cfg, 10, 1, 0).double()
    with torch.no_grad():
        z = model(to_float(x).double())
    ce = torch.logsumexp(z, 1) - z[torch.arange(len(y)), y]
    hand = (sw * w[y] * ce).sum() / sw.sum()
    assert r["first_loss"] == pytest.approx(float(hand), rel=1e-5)
    assert abs(float(hand) - float(ce.mean())) > 1e-3  # the weight makes a difference here
    # with weight 1 the same strategy is the unweighted loss on the balanced set (uniform cs weights)
    r1 = train_and_score(
        digits, "gan+cs", seed=0, config=ClassifyConfig(**{**cfg.__dict__, "synthetic_weight": 1.0}),
        generator=FakeGenerator(), log=lambda m: None,
    )
    assert r1["first_loss"] == pytest.approx(float(ce.mean()), rel=1e-5)


def test_gan_combines_with_loss_and_prediction_strategies(digits):
    for name in ("gan+la", "gan+ts", "gan+cbl:0.99", "gan+la-posthoc"):
        r = train_and_score(
            digits, name, steps=2, batch_size=32, evals=1, generator=FakeGenerator(), guard=False,
            synthetic="ratio:0.5", log=lambda s: None,
        )
        assert r["strategy"] == name and r["synthetic_counts"] != [0] * 10
        assert (r["tau"] is None) == (name in ("gan+la", "gan+cbl:0.99"))
    with pytest.raises(TailganError, match="modifiers joined by '\\+' before a loss or prediction strategy"):
        parse_strategy("gan+os")


# --- two-stage training --------------------------------------------------------------------------------------


def test_head_only_fine_tuning_changes_only_the_head(digits):
    real = digits.train
    # select="last": the trained networks themselves (with validation, the incoming one may be kept)
    strat, cfg = parse_strategy("vanilla"), ClassifyConfig(steps=3, batch_size=32, evals=1, select="last")
    model0 = init_model(strat, cfg, 10, 1, 0)
    head, _, _ = train_classifier(real.images, real.labels, real, strat, cfg, 10, 3, 0, model=model0, head_only=True)
    full, _, _ = train_classifier(real.images, real.labels, real, strat, cfg, 10, 3, 0, model=model0)
    start = model0.state_dict()
    for name, p in head.state_dict().items():
        assert torch.equal(p, start[name]) != name.startswith("fc."), name
    assert not torch.equal(full.state_dict()["features.0.weight"], start["features.0.weight"])


def test_two_stage_training_splits_the_budget(digits):
    r = train_and_score(
        digits, "gan+la", steps=10, batch_size=32, evals=1, generator=FakeGenerator(), guard=False,
        finetune="head", finetune_fraction=0.3, log=lambda s: None,
    )
    assert r["steps"] == 10 and r["finetune_steps"] == 3 and r["stage1"]["steps"] == 7
    assert r["history"][0]["step"] == 0 and r["stage"] == (1 if r["selected_step"] == 0 else 2)
    with pytest.raises(TailganError, match="--finetune"):
        train_and_score(digits, "la", steps=10, finetune="all")


# --- command line --------------------------------------------------------------------------------------------


def _run(argv):
    parser = argparse.ArgumentParser()
    classify_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_gan_la_with_filter_and_bench_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(classify_cli, "_load_generator", lambda run, checkpoint, device: FakeGenerator())
    common = ["--data", "digits_lt", "--seeds", "1", "--steps", "2", "--batch-size", "32"]
    out = tmp_path / "one"
    argv = ["classify", "--strategy", "gan+la", "--generator", str(tmp_path / "run"), "--filter", "0.9"]
    assert _run([*argv, "--no-guard", "--synthetic-weight", "0.5", *common, "--out", str(out)]) == 0
    run = json.loads((out / "metrics.json").read_text())["runs"][0]
    assert run["strategy"] == "gan+la" and len(run["filter_acceptance"]) == 10
    assert run["config"]["filter"] == 0.9 and run["config"]["synthetic_weight"] == 0.5
    assert "acceptance per class" in capsys.readouterr().out
    bench = tmp_path / "bench"
    argv = ["bench", "classify", "--strategies", "la,gan,gan+la", "--generator", f"fake={tmp_path / 'run'}"]
    assert _run([*argv, "--no-guard", *common, "--out", str(bench)]) == 0
    doc = json.loads((bench / "bench.json").read_text())
    assert [(r["strategy"], r["generative"]) for r in doc["results"]] == [
        ("la", False), ("fake", True), ("fake+la", True),
    ]
    with pytest.raises(TailganError, match="need generators"):
        _run(["bench", "classify", "--strategies", "gan+la", *common, "--out", str(tmp_path / "x")])


def test_cli_accepts_data_overrides(tmp_path):
    out = tmp_path / "o"
    common = ["--data", "digits_lt", "--seeds", "1", "--steps", "1", "--batch-size", "32"]
    assert _run(["classify", "--strategy", "balanced-softmax", *common, "--out", str(out), "imbalance_factor=5"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    counts = doc["data"]["train_counts"]
    assert counts[0] == 120 and counts[-1] == math.floor(120 / 5)


# --- the generator must not have seen the classifier's validation split ------------------------------------------


def test_gan_uses_and_checks_the_generators_held_out_split(digits):
    from tailgan.data.splits import split_fingerprint, split_validation

    _, valid_idx = split_validation(digits.train.labels, 0.2, 5)
    gen = FakeGenerator()
    gen.valid_split = {"fraction": 0.2, "seed": 5, "fingerprint": split_fingerprint(valid_idx)}
    r = train_and_score(digits, "gan", seed=0, steps=1, batch_size=32, evals=1, generator=gen, guard=False)
    assert r["valid_split"] == {"source": "carved", **gen.valid_split}  # the run's split, not seed 0's
    assert sum(r["valid_counts"]) == len(valid_idx)
    with pytest.raises(TailganError, match="different validation split .*--split-seed 5"):
        train_and_score(digits, "gan", steps=1, generator=gen, guard=False, split_seed=1)
    # a run that held out nothing: allowed, said loudly
    logs = []
    with pytest.warns(UserWarning, match="whole training split"):
        train_and_score(digits, "gan", steps=1, evals=1, generator=FakeGenerator(), guard=False, log=logs.append)
    assert any(line.startswith("WARNING") for line in logs)
