"""The joint CycleGAN + classifier recipe (``cyclegan-cls``): both modes train through ``tailgan train``,
resume bit for bit, translate, and route the classifier loss into the generators only in ``alt``."""

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import flatten_state, read_log
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


def state(run):
    return flatten_state(load_checkpoint(run / "checkpoints" / "last.pt")["method"])


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


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
    with torch.no_grad():
        assert torch.allclose(out[0], g.method.nets["G_AB"](src[:1])[0], atol=1e-6)
        assert torch.allclose(out[1], g.method.nets["G_BA"](src[1:2])[0], atol=1e-6)
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
