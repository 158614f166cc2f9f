"""The joint CycleGAN + classifier recipe (``cyclegan-cls``): both modes train through ``tailgan train``,
resume bit for bit, translate, and route the classifier loss into the generators only in ``alt``."""

import copy
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_same, flatten_state, read_log
from helpers import run_state as state
from PIL import Image

from tailgan.cli import main as cli
from tailgan.data import load_data
from tailgan.engine import DataShape, RunContext, Trainer, build_method, load_generator, make_config
from tailgan.errors import TailganError
from tailgan.io import load_checkpoint
from tailgan.losses.translation import grad_norms
from tailgan.methods.cyclegan import CycleGANCls, lr_factor

TINY = ["precision=fp32", "optim.batch_size=4", "log_every=1", "ckpt_every=1", "sample_every=2", "data.resolution=8",
        "options.class_a=0", "options.class_b=9", "options.ngf=4", "options.ndf=4", "options.n_blocks=1"]  # fmt: skip
AUG = [*TINY, "options.mode=aug", "options.cyclegan_steps=3"]
ALT = [*TINY, "options.mode=alt", "options.gan_warmup=2", "options.cls_warmup=1"]


def run_cli(*args):
    assert cli([str(a) for a in args]) == 0


def train(out, steps, options, resume=False):
    if resume:
        run_cli("train", "--resume", out, "--steps", steps)
    else:
        run_cli("train", "--method", "cyclegan-cls", "--data", "digits_lt", *options, "--steps", steps, "--out", out)


def method(options, steps=2):
    cfg = make_config("cyclegan-cls", data="digits_lt", overrides=options, steps=steps)
    data = load_data(cfg.data)
    shape = DataShape(data.num_classes, 1, 8, tuple(data.train.counts()))
    return build_method(cfg, shape, RunContext()), data


def test_aug_trains_both_phases_and_resumes_bit_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(straight, 4, AUG)
    train(split, 2, AUG)
    train(split, 4, AUG, resume=True)
    assert_same(state(straight), state(split))
    records = read_log(straight)
    assert [(r["phase"], r["step"]) for r in records] == [("cyclegan", s) for s in (1, 2, 3)] + [
        ("classifier", s) for s in (1, 2, 3, 4)
    ]
    assert {"gan_ab", "cyc_a", "ide", "d_b"} <= set(records[0]) and "cls" not in records[0]
    assert {"c_loss", "c_loss_a", "c_loss_b"} <= set(records[-1])
    ckpt = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert set(ckpt["method"]["nets"]) == {"G_AB", "G_BA", "D_A", "D_B", "C"}
    extra = ckpt["method"]["extra"]
    assert extra["pool_A"]["images"].shape == (3 * 4, 1, 8, 8)  # 3 CycleGAN updates of 4 images, pool of 50
    # the grid: source / translated / cycled rows for each domain, 8 images per row
    grid = Image.open(straight / "samples" / "step_0000004.png")
    assert grid.size == (8 * 8 + 9 * 2, 6 * 8 + 7 * 2)  # torchvision's save_image pads 2 px


def test_alt_trains_resumes_bit_exact_and_survives_a_kill(tmp_path, monkeypatch):
    straight, split, killed = tmp_path / "straight", tmp_path / "split", tmp_path / "killed"
    no_decay = [*ALT, "options.lr_decay=false", "options.alt_period=2"]
    train(straight, 4, no_decay)
    train(split, 2, no_decay)
    train(split, 4, no_decay, resume=True)
    assert_same(state(straight), state(split))
    records = read_log(straight)
    assert [r["phase"] for r in records] == ["gan_warmup"] * 2 + ["cls_warmup"] + ["joint"] * 4
    assert all("cls" in r and "c_loss" in r for r in records[3:])

    # with the learning-rate decay (tied to the run's length): killed inside the joint phase, resumed
    decayed = tmp_path / "decayed"
    train(decayed, 4, ALT)
    real_step = CycleGANCls.joint_step

    def crash_at_3(self, batches, step):
        if step == 3:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, batches, step)

    monkeypatch.setattr(CycleGANCls, "joint_step", crash_at_3)
    assert cli(["train", "--method", "cyclegan-cls", "--data", "digits_lt", *ALT, "--steps", "4",
                "--out", str(killed)]) == 130  # fmt: skip
    monkeypatch.setattr(CycleGANCls, "joint_step", real_step)
    mid = load_checkpoint(killed / "checkpoints" / "last.pt")
    assert (mid["phase"], mid["step"]) == ("joint", 2)
    train(killed, 4, ALT, resume=True)
    assert_same(state(decayed), state(killed))


def test_classifier_loss_reaches_the_generators_in_alt_only():
    torch.manual_seed(0)
    a, b = torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 1, 8, 8) * 2 - 1
    alt, _ = method(ALT)
    g = alt.generator_losses(a, b, with_cls=True)
    norms = grad_norms(g["cls"], {k: alt.nets[k] for k in ("G_AB", "G_BA")})
    assert norms["G_AB"] > 0 and norms["G_BA"] > 0
    without = alt.generator_losses(a, b, with_cls=False)
    assert torch.allclose(g["total"], without["total"] + alt.options.lambda_cls * g["cls"])
    # the classifier's own loss in either mode sees detached translations: nothing reaches G
    c = alt.classifier_loss(a, b, g["fake_a"].detach(), g["fake_b"].detach())["cls"]
    assert grad_norms(c, {k: alt.nets[k] for k in ("G_AB", "G_BA")}) == {"G_AB": 0.0, "G_BA": 0.0}
    assert grad_norms(c, {"C": alt.nets["C"]})["C"] > 0


@pytest.mark.parametrize("mode", ["alt", "aug"])
def test_changing_the_classifier_changes_the_generator_update_only_in_alt(mode):
    """One generator update from identical states, with and without a perturbed classifier."""
    results = []
    for perturb in (False, True):
        m, data = method(ALT if mode == "alt" else AUG)
        if perturb:
            with torch.no_grad():
                for p in m.nets["C"].parameters():
                    p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        trainer = Trainer(m, data)
        step = m.joint_step if mode == "alt" else m.cyclegan_step  # the update the generators get in each mode
        c_before = copy.deepcopy(m.nets["C"].state_dict())
        step(trainer.batches, 1)
        if mode == "aug":
            assert_same(c_before, m.nets["C"].state_dict())  # the CycleGAN phase never trains C
        results.append(flatten_state(m.nets["G_AB"].state_dict()))
    same = all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    assert same == (mode == "aug")


def test_classifier_phase_leaves_the_translators_unchanged():
    m, data = method(AUG)
    trainer = Trainer(m, data)
    before = {k: flatten_state(m.nets[k].state_dict()) for k in ("G_AB", "G_BA", "D_A", "D_B")}
    m.classifier_step(trainer.batches, 1)
    for k, s in before.items():
        assert_same(s, flatten_state(m.nets[k].state_dict()))


def test_gamma_weighting_and_cost_sensitive_ratio():
    m, _ = method([*AUG, "options.gamma=cs"])
    assert m.gamma == pytest.approx(120 / 12)  # digits_lt: class 0 keeps 120 images, class 9 keeps 12
    assert method([*AUG, "options.variant=ja+cs"])[0].gamma == pytest.approx(10.0)
    assert method([*AUG, "options.gamma=4"])[0].gamma == 4.0
    assert method(AUG)[0].gamma == 1.0
    torch.manual_seed(1)
    x = [torch.rand(3, 1, 8, 8) * 2 - 1 for _ in range(4)]  # a, b, G_BA(b), G_AB(a)
    loss = m.classifier_loss(*x)
    with torch.no_grad():
        logits = [m.nets["C"](t) for t in x]
    ce = [F.cross_entropy(lg, torch.full((3,), y)) for lg, y in zip(logits, (0, 1, 0, 1))]
    assert loss["cls_b"].item() == pytest.approx((ce[1] + ce[3]).item(), rel=1e-5)
    assert loss["cls_a"].item() == pytest.approx((ce[0] + ce[2]).item(), rel=1e-5)
    assert loss["cls"].item() == pytest.approx((ce[1] + ce[3] + (ce[0] + ce[2]) / 10).item(), rel=1e-5)


def test_ja_cs_variant_uses_non_saturating_loss_and_one_sided_identity():
    torch.manual_seed(2)
    a, b = torch.rand(2, 1, 8, 8) * 2 - 1, torch.rand(2, 1, 8, 8) * 2 - 1
    m, _ = method([*AUG, "options.variant=ja+cs"])
    g = m.generator_losses(a, b, with_cls=False)
    with torch.no_grad():
        d_b = m.nets["D_B"](m.nets["G_AB"](a))
        idt = (m.nets["G_BA"](a) - a).abs().mean()
    assert g["gan_ab"].item() == pytest.approx(F.softplus(-d_b).mean().item(), rel=1e-5)
    assert g["ide"].item() == pytest.approx(idt.item(), rel=1e-5)


def test_learning_rate_decays_linearly_over_the_second_half():
    assert [lr_factor(t, 10) for t in (1, 5)] == [1.0, 1.0]
    assert lr_factor(6, 10) == pytest.approx(5 / 6) and lr_factor(10, 10) == pytest.approx(1 / 6)
    m, data = method([*AUG, "options.cyclegan_steps=10"])
    trainer = Trainer(m, data)
    m.cyclegan_step(trainer.batches, 8)
    assert m.optimizers["G"].param_groups[0]["lr"] == pytest.approx(2e-4 * (1 - 3 / 6))
    assert m.optimizers["D"].param_groups[0]["lr"] == pytest.approx(2e-4 * (1 - 3 / 6))


def test_translates_from_the_command_line_api_and_refuses_other_classes(tmp_path):
    run = tmp_path / "run"
    train(run, 1, [*AUG, "options.cyclegan_steps=1"])
    g = load_generator(run)
    assert g.output.translates
    src = torch.rand(3, 1, 8, 8) * 2 - 1
    out = g.sample(torch.tensor([9, 0, 9]), source=src)
    with torch.no_grad():  # a batch of 3 and a batch of 1 take different CPU kernels: ~1e-6 apart
        assert torch.allclose(out[0], g.method.nets["G_AB"](src[:1])[0], atol=2e-5)
        assert torch.allclose(out[1], g.method.nets["G_BA"](src[1:2])[0], atol=2e-5)
    with pytest.raises(TailganError, match="between classes 0 and 9"):
        g.sample(torch.tensor([3]), source=src[:1])


def test_options_are_checked_before_training():
    with pytest.raises(TailganError, match="options.mode"):
        make_config("cyclegan-cls", overrides=["options.mode=joint"])
    with pytest.raises(TailganError, match="both 9"):
        method([*AUG, "options.class_a=9"])
    with pytest.raises(TailganError, match="not a class"):
        method([*AUG, "options.class_b=10"])
    with pytest.raises(TailganError, match="divisible by 4"):
        cfg = make_config("cyclegan-cls", data="digits_lt", overrides=AUG)
        build_method(cfg, DataShape(10, 1, 10, ()), RunContext())


# --- the classifier side: cyclegan-aug / cyclegan-alt strategies, binary tasks, precision ---------------------

JOINT = dict(steps=6, evals=3, batch_size=16, joint_gan_steps=3, joint_batch_size=4, precision="fp32",
             joint_options=("options.ngf=4", "options.ndf=4", "options.n_blocks=1"))  # fmt: skip


def digits_pair(counts=None):
    from tailgan.baselines.joint import binary_pair

    return binary_pair(load_data("digits_lt", resolution=8), (0, 9), counts)


def test_binary_pair_keeps_two_classes_relabelled_with_chosen_counts():
    full = load_data("digits_lt", resolution=8)
    pair = digits_pair()
    assert pair.classes == ["0", "9"] and pair.train.counts() == [120, 12] and pair.test.counts() == [50, 50]
    assert torch.equal(pair.train.images[pair.train.labels == 1], full.train.images[full.train.labels == 9])
    small = digits_pair((30, 5))
    assert small.train.counts() == [30, 5]
    kept = small.manifest["pair_kept_indices"]
    assert torch.equal(small.train.images[:30], full.train.images[torch.tensor(kept[0])])
    assert set(kept[1]) <= set(torch.nonzero(full.train.labels == 9).flatten().tolist())
    with pytest.raises(TailganError, match="class 9 has 12 images"):
        digits_pair((30, 13))


@pytest.mark.parametrize("strategy", ["cyclegan-aug", "cyclegan-alt"])
def test_joint_strategies_select_on_validation_and_never_train_on_it(strategy, monkeypatch):
    import tailgan.engine.run as run_wiring
    from tailgan.classify import train_and_score

    seen = []
    real_trainer = run_wiring.Trainer

    def recording_trainer(method, data, *args, **kwargs):
        seen.append(data.train)
        return real_trainer(method, data, *args, **kwargs)

    monkeypatch.setattr(run_wiring, "Trainer", recording_trainer)
    data = digits_pair()
    r = train_and_score(data, strategy, seed=0, log=lambda s: None, **JOINT)
    assert r["strategy"] == strategy
    assert 0.0 <= r["acsa"] <= 1.0 and r["minority_f1"] is not None
    assert r["valid_counts"] == [12, 1] and r["valid_acsa"] is not None
    assert r["selected_step"] in {2, 4, 6} and [h["step"] for h in r["history"]] == [2, 4, 6]
    assert r["joint"]["mode"] == strategy.removeprefix("cyclegan-") and r["joint"]["class_b"] == 1
    # the recipe trained on the training part only: the validation images are not in it
    (train_part,) = seen
    assert train_part.counts() == [108, 11]
    valid_idx = r["valid_split"]
    assert valid_idx["source"] == "carved"
    flat = train_part.images.reshape(len(train_part), -1)
    full = data.train.images.reshape(len(data.train), -1)
    in_train = (full[:, None, :] == flat[None, :, :]).all(-1).any(1)
    assert int((~in_train).sum()) == 13  # exactly the 12 + 1 validation images are missing


def test_joint_strategy_needs_a_binary_task():
    from tailgan.classify import train_and_score

    with pytest.raises(TailganError, match="--pair"):
        train_and_score(load_data("digits_lt", resolution=8), "cyclegan-aug", log=lambda s: None, **JOINT)


def test_bench_classify_puts_joint_rows_beside_classical_ones(tmp_path):
    out = tmp_path / "bench"
    run_cli("bench", "classify", "--data", "digits_lt", "--pair", "0,9", "--pair-counts", "60,8",
            "--strategies", "vanilla,cyclegan-aug", "--seeds", 1, "--steps", 4, "--joint-gan-steps", 2,
            "--joint-batch-size", 4, "--joint-option", "options.ngf=4", "--joint-option", "options.ndf=4",
            "--precision", "fp32", "--out", out, "data.resolution=8")  # fmt: skip
    import json

    doc = json.loads((out / "bench.json").read_text())
    rows = {r["strategy"]: r for r in doc["results"]}
    assert set(rows) == {"vanilla", "cyclegan-aug"}
    assert rows["cyclegan-aug"]["generative"] and not rows["vanilla"]["generative"]
    assert doc["data"]["train_counts"] == [60, 8] and "cyclegan-aug" in (out / "bench.md").read_text()


# --- classifier training precision ----------------------------------------------------------------------------


def _train(precision, hook=None):
    from tailgan.classify.strategies import parse_strategy
    from tailgan.classify.train import ClassifyConfig, init_model, train_classifier

    data = load_data("digits_lt", resolution=8)
    cfg = ClassifyConfig(steps=3, batch_size=16, evals=1, augment="none")  # the batches exactly as stored
    strat = parse_strategy("vanilla")
    model0 = init_model(strat, cfg, 10, 1, 0)
    if hook is not None:
        model0.fc.register_forward_hook(hook)
    model, loss, record = train_classifier(
        data.train.images, data.train.labels, data.train, strat, cfg, 10, 3, 0, model=model0, precision=precision
    )
    return model0, model, record, data


@pytest.mark.skipif(
    not __import__("tailgan.nets.precision", fromlist=["x"]).bf16_supported(torch.device("cpu")),
    reason="this CPU has no native bf16",
)
def test_classifier_training_runs_bf16_when_asked():
    dtypes = []
    _, _, record, _ = _train("bf16", lambda m, i, o: dtypes.append(o.dtype) if m.training else None)
    assert record["precision"] == "bf16" and dtypes and set(dtypes) == {torch.bfloat16}


def test_classifier_training_fp32_is_exact():
    from tailgan.classify.strategies import parse_strategy
    from tailgan.classify.train import ClassifyConfig, StrategyLoss
    from tailgan.data import BatchStream, to_float

    dtypes = []
    model0, model, record, data = _train("fp32", lambda m, i, o: dtypes.append(o.dtype) if m.training else None)
    assert record["precision"] == "fp32" and set(dtypes) == {torch.float32}
    # step 1's loss is the plain fp32 loss of the initial network on the first batch, to the bit
    idx = BatchStream(data.train.labels, 16, seed=0).next()
    loss_fn = StrategyLoss(parse_strategy("vanilla"), data.train.counts(), ClassifyConfig())
    with torch.no_grad():
        m = copy.deepcopy(model0).train()
        expected = loss_fn(m(to_float(data.train.images[idx])), data.train.labels[idx], 0.0).item()
    assert record["first_loss"] == expected
    again = _train("fp32")[1]
    assert_same(flatten_state(model.state_dict()), flatten_state(again.state_dict()))


# --- the K-class variant: one StarGAN-style translator into the tail classes ---------------------------------

STAR = ["precision=fp32", "optim.batch_size=4", "log_every=1", "ckpt_every=1", "sample_every=2", "data.resolution=8",
        "options.ngf=4", "options.ndf=4", "options.n_blocks=1"]  # fmt: skip


def test_stargan_targets_are_the_tail_classes_never_the_source():
    from tailgan.methods.stargan import target_classes

    counts = (120, 92, 71, 55, 43, 33, 25, 20, 15, 12)  # digits_lt; the median class (sorted[5]) has 43
    assert target_classes(counts, "tail") == [5, 6, 7, 8, 9]
    assert target_classes(counts, "all") == list(range(10))
    cfg = make_config("stargan-cls", data="digits_lt", overrides=STAR, steps=2)
    m = build_method(cfg, DataShape(10, 1, 8, counts), RunContext())
    y = torch.tensor([0, 5, 6, 7, 8, 9] * 20)
    t = m.draw_targets(y)
    assert set(t.tolist()) <= {5, 6, 7, 8, 9} and not bool((t == y).any())


@pytest.mark.parametrize("mode", ["aug", "alt"])
def test_stargan_trains_both_modes_and_resumes_bit_exact(tmp_path, mode):
    opts = [*STAR, f"options.mode={mode}", "options.gan_steps=2", "options.gan_warmup=2", "options.cls_warmup=1",
            "options.lr_decay=false"]  # fmt: skip
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_cli("train", "--method", "stargan-cls", "--data", "digits_lt", *opts, "--steps", 3, "--out", straight)
    run_cli("train", "--method", "stargan-cls", "--data", "digits_lt", *opts, "--steps", 1, "--out", split)
    run_cli("train", "--resume", split, "--steps", 3)
    assert_same(state(straight), state(split))
    phases = [r["phase"] for r in read_log(straight)]
    assert phases == (["stargan"] * 2 + ["classifier"] * 3 if mode == "aug" else
                      ["gan_warmup"] * 2 + ["cls_warmup"] + ["joint"] * 3)  # fmt: skip
    grid = Image.open(straight / "samples" / "step_0000003.png")
    assert grid.size == (8 * 8 + 9 * 2, 6 * 8 + 7 * 2)  # sources + 5 tail classes
    g = load_generator(straight)
    src = torch.rand(2, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        want = g.method.nets["G"](src, torch.tensor([7, 9]))
    assert torch.allclose(g.sample(torch.tensor([7, 9]), source=src), want, atol=1e-6)


def test_stargan_classifier_loss_reaches_the_translator_in_alt_only():
    cfg = make_config("stargan-cls", data="digits_lt", overrides=[*STAR, "options.mode=alt"], steps=2)
    m = build_method(cfg, DataShape(10, 1, 8, (120, 92, 71, 55, 43, 33, 25, 20, 15, 12)), RunContext())
    x, y = torch.rand(6, 1, 8, 8) * 2 - 1, torch.tensor([0, 0, 1, 1, 2, 3])
    t = m.draw_targets(y)
    g = m.generator_losses(x, y, t, with_cls=True)
    assert grad_norms(g["joint_cls"], {"G": m.nets["G"]})["G"] > 0
    c = m.classifier_loss(x, y, g["fake"].detach(), t)
    assert grad_norms(c, {"G": m.nets["G"]})["G"] == 0.0 and grad_norms(c, {"C": m.nets["C"]})["C"] > 0
    # L_cls / K against the per-class means written out (real classes 0..3, translated classes t)
    with torch.no_grad():
        logits = m.nets["C"](torch.cat([x, g["fake"]]))
    ce = F.cross_entropy(logits, torch.cat([y, t]), reduction="none")
    labels, real = torch.cat([y, t]), torch.arange(12) < 6
    want = sum(ce[(labels == k) & (real == r)].mean() for k in range(10) for r in (True, False)
               if bool(((labels == k) & (real == r)).any())) / 10  # fmt: skip
    assert c.item() == pytest.approx(want.item(), rel=1e-5)


def test_stargan_strategy_scores_a_k_class_task():
    from tailgan.classify import train_and_score

    r = train_and_score(load_data("digits_lt", resolution=8), "stargan-alt", seed=0, log=lambda s: None,
                        **{**JOINT, "joint_options": ("options.ngf=4", "options.ndf=4", "options.n_blocks=1")})
    assert r["strategy"] == "stargan-alt" and len(r["recall_per_class"]) == 10
    assert r["joint"]["targets"] == [5, 6, 7, 8, 9]  # the tail of the training part's counts
    assert r["selected_step"] in {2, 4, 6}


def test_sample_translates_a_folder_of_images_from_the_cli(tmp_path, capsys):
    from PIL import Image

    from tailgan.cli import main as cli

    run = tmp_path / "run"
    options = ["options.class_a=0", "options.class_b=9", "options.cyclegan_steps=1", "options.ngf=4",
               "options.ndf=4", "options.n_blocks=1", "optim.batch_size=2", "data.resolution=8", "sample_every=0"]
    assert cli(["train", "--method", "cyclegan-cls", "--data", "digits_lt", *options, "--steps", "1",
                "--out", str(run)]) == 0  # fmt: skip
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.new("L", (28, 28), 30 * i).save(src / f"{i}.png")  # any size: brought to the run's 8 px
    assert cli(["sample", str(run), "--class", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--source DIR --to C" in capsys.readouterr().err
    assert cli(["sample", str(run), "--source", str(src), "--to", "9", "--out", str(tmp_path / "out")]) == 0
    made = sorted((tmp_path / "out" / "train" / "cls9").glob("*.png"))
    assert len(made) == 3 and Image.open(made[0]).size == (8, 8)


# --- torch.compile of the translator networks ---------------------------------------------------------------------
def compiled(m):
    return {name for name, net in m.nets.items() if getattr(net, "_compiled_call_impl", None) is not None}


def test_compile_auto_follows_the_run_length_and_on_compiles_the_translators_only(tmp_path):
    cfg = lambda *extra: make_config("cyclegan-cls", data="digits_lt", overrides=[*AUG, *extra], steps=2)  # noqa: E731
    data = load_data(cfg().data)
    shape = DataShape(data.num_classes, 1, 8, tuple(data.train.counts()))
    short = build_method(cfg(), shape, RunContext(run_dir=tmp_path))  # 3 translator updates: eager
    assert not short.compiled and compiled(short) == set()
    assert not build_method(cfg("options.cyclegan_steps=3999"), shape, RunContext(run_dir=tmp_path)).compiled
    long = build_method(cfg("options.cyclegan_steps=4000"), shape, RunContext(run_dir=tmp_path))
    assert long.compiled == (shutil.which("c++") is not None or shutil.which("g++") is not None)
    on = build_method(cfg("compile=on"), shape, RunContext(run_dir=tmp_path))
    assert compiled(on) == {"G_AB", "G_BA", "D_A", "D_B"}  # never the classifier
    off = build_method(cfg("options.cyclegan_steps=4000", "compile=off"), shape, RunContext(run_dir=tmp_path))
    assert compiled(off) == set()
    sampling = build_method(cfg("compile=on"), shape, RunContext())  # loaded back to translate: eager
    assert compiled(sampling) == set()
    with pytest.raises(TailganError, match="compile"):
        cfg("compile=sometimes")
    gan_cfg = make_config("bagan-gp", overrides=["compile=on", "options.pretrain=false"], steps=1)
    gan = build_method(gan_cfg, DataShape(10, 1, 32, tuple(data.train.counts())), RunContext(run_dir=tmp_path))
    assert not gan.compiled and "no network torch.compile can take" in gan.compile_note  # said, not silent


@pytest.mark.slow
def test_a_compiled_run_trains_like_the_eager_one_and_saves_the_same_checkpoint_keys(tmp_path):
    runs, logs = {}, {}
    for mode in ("off", "on"):
        train(tmp_path / mode, 2, [*AUG, f"compile={mode}"])
        runs[mode] = load_checkpoint(tmp_path / mode / "checkpoints" / "last.pt")["method"]["nets"]
        logs[mode] = [r for r in read_log(tmp_path / mode) if r["phase"] == "cyclegan"]
    assert flatten_state(runs["off"]).keys() == flatten_state(runs["on"]).keys()  # no _orig_mod. prefixes
    assert len(logs["on"]) == len(logs["off"]) == 3
    start = json.loads((tmp_path / "on" / "log.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["compiled"] == ["G_AB", "G_BA", "D_A", "D_B"]
    # fp32 both: compiled kernels reorder sums, so the losses agree closely, not bit for bit (weights whose
    # gradient is ~0, e.g. conv biases before instance norm, can get Adam steps of either sign)
    for eager, comp in zip(logs["off"], logs["on"]):
        for k in ("g_loss", "d_a", "d_b", "cyc_a", "cyc_b"):
            assert comp[k] == pytest.approx(eager[k], rel=1e-3, abs=1e-5), k


# --- the classifier's own batch (options.cls_batch_size) ------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["cyclegan-cls", "stargan-cls"])
def test_the_classifier_draws_its_own_batch_when_cls_batch_size_is_set(recipe):
    base = [*ALT, "options.gan_warmup=0", "options.cls_warmup=0"] if recipe == "cyclegan-cls" else [
        *STAR, "options.mode=alt", "options.gan_warmup=0", "options.cls_warmup=0"]  # fmt: skip
    groups = 4 if recipe == "cyclegan-cls" else 2  # (a, b, G_BA(b), G_AB(a)) or (x, G(x, t))
    for extra, per_group in (([], 4), (["options.cls_batch_size=6"], 6)):
        cfg = make_config(recipe, data="digits_lt", overrides=[*base, *extra], steps=2)
        data = load_data(cfg.data)
        m = build_method(cfg, DataShape(data.num_classes, 1, 8, tuple(data.train.counts())), RunContext())
        seen = []
        m.nets["C"].register_forward_hook(lambda mod, inp, out, seen=seen: seen.append((mod.training, len(inp[0]))))
        Trainer(m, data).step()  # one joint step: the teacher pass (eval mode), then the classifier's update
        assert [n for training, n in seen if training] == [groups * per_group], extra
        if extra:
            assert m.streams().keys() >= ({"cls_a", "cls_b"} if recipe == "cyclegan-cls" else {"cls_real"})
