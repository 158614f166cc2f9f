"""The fast path: bf16 autocast + channels-last by default where the CPU has native bf16, exact fp32 on
request, a logged fallback elsewhere."""

from contextlib import contextmanager

import pytest
import torch
from helpers import flatten_state, noise_gan_recipes

from tailgan.cli import main as cli
from tailgan.data import load_data
from tailgan.engine import DataShape, RunContext, Trainer, build_method, make_config
from tailgan.io import load_checkpoint
from tailgan.methods import resolve_preset
from tailgan.nets import precision as precision_module
from tailgan.nets.precision import Precision, resolve_precision

TINY = ["optim.batch_size=8", "optim.d_steps=1", "model.conv_dim=8", "model.embed_dim=16", "model.shared_dim=8",
        "model.z_dim=16", "log_every=1", "sample_every=0", "ckpt_every=2"]  # fmt: skip
HAS_BF16 = precision_module.bf16_supported(torch.device("cpu"))
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native bf16 (AVX512-BF16/AMX)")


def first_losses(name, precision):
    extra = ["options.pretrain=false"] if resolve_preset(name)["method"] in ("bagan", "bagan-gp", "idagan") else []
    cfg = make_config(name, overrides=[*TINY, *extra, f"precision={precision}"], steps=1)
    data = load_data(cfg.data)
    prec, _ = resolve_precision(cfg.precision, torch.device("cpu"))
    m = build_method(cfg, DataShape(10, 1, 32, tuple(data.train.counts())), RunContext(precision=prec))
    losses = Trainer(m, data).step()
    return {k: float(v) for k, v in losses.items()}, m


@needs_bf16
@pytest.mark.parametrize("name", noise_gan_recipes())
def test_fast_mode_trains_every_recipe_close_to_fp32_on_the_first_step(name):
    fast, m = first_losses(name, "auto")
    exact, _ = first_losses(name, "fp32")
    assert m.precision.name == "bf16" and m.precision.channels_last
    assert fast.keys() == exact.keys()
    for k in fast:
        assert torch.isfinite(torch.tensor(fast[k])), k
    # the D losses of the first step see the same weights and batch in both modes (the G-step losses come
    # after an Adam update of D, whose first step moves every weight by about +-lr whatever the gradient's
    # size, so they may differ more): bf16 forward passes move them by well under 5 %
    d_losses = [k for k in fast if k.startswith("d_")]
    assert d_losses
    for k in d_losses:
        assert fast[k] == pytest.approx(exact[k], rel=0.05, abs=0.02), (k, fast[k], exact[k])


@needs_bf16
def test_autocast_is_really_active_in_fast_mode():
    cfg = make_config("ecogan-dcgan", overrides=TINY, steps=1)
    data = load_data(cfg.data)
    prec, note = resolve_precision("auto", torch.device("cpu"))
    assert note is None and prec == Precision("bf16", "cpu", channels_last=True)
    m = build_method(cfg, DataShape(10, 1, 32, tuple(data.train.counts())), RunContext(precision=prec))
    G = m.nets["G"]
    outputs = []
    G.register_forward_hook(lambda mod, inp, out: outputs.append(out.dtype))
    Trainer(m, data).step()
    assert torch.bfloat16 in outputs  # a no-op autocast would leave every output float32
    conv = next(p for p in m.nets["D"].parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    # fp32 really is fp32
    m32 = build_method(cfg, DataShape(10, 1, 32, tuple(data.train.counts())), RunContext())
    outputs.clear()
    m32.nets["G"].register_forward_hook(lambda mod, inp, out: outputs.append(out.dtype))
    Trainer(m32, data).step()
    assert set(outputs) == {torch.float32}


@needs_bf16
@pytest.mark.parametrize("overrides, critic_dtypes", [
    ([], {torch.bfloat16}),  # precision=auto: the penalty's critic pass under autocast (issue 29's default)
    (["loss.gp_autocast=false"], {torch.float32}),  # one switch away: the whole penalty in fp32
    (["precision=fp32"], {torch.float32}),
])  # fmt: skip
def test_the_gradient_penalty_runs_under_autocast_by_default(overrides, critic_dtypes):
    """D's outputs inside the penalty (the interpolates' critic pass) are bf16 by default on the fast path."""
    cfg = make_config("ecogan-dcgan", overrides=[*TINY, *overrides], steps=1)
    data = load_data(cfg.data)
    prec, _ = resolve_precision(cfg.precision, torch.device("cpu"))
    m = build_method(cfg, DataShape(10, 1, 32, tuple(data.train.counts())), RunContext(precision=prec))
    seen, inside = [], []
    m.nets["D"].register_forward_hook(lambda mod, inp, out: seen.append(out["adv"].dtype) if inside else None)
    original = m.penalty_autocast

    @contextmanager
    def watched():  # marks the penalty's block, so only its critic pass is recorded
        inside.append(True)
        with original():
            yield
        inside.pop()

    m.penalty_autocast = watched
    Trainer(m, data).step()
    assert seen and set(seen) == critic_dtypes


def test_without_native_bf16_it_falls_back_to_fp32_and_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device: False)
    prec, note = resolve_precision("auto", torch.device("cpu"))
    assert prec.name == "fp32" and not prec.channels_last and "no native bf16" in note
    run = tmp_path / "r"
    assert cli(["train", "--method", "cgan", "--steps", "1", "--out", str(run), *TINY]) == 0
    start = next(line for line in (run / "log.jsonl").read_text().splitlines() if '"event"' in line)
    assert '"precision": "fp32"' in start and "no native bf16" in start
    assert resolve_precision("fp16", torch.device("cpu"))[0].name == "fp32"


@needs_bf16
def test_fast_mode_resume_continues_identically_on_this_machine(tmp_path):
    straight, split = tmp_path / "a", tmp_path / "b"
    args = ["train", "--method", "ecogan-dcgan", "sampling=balanced", *TINY]
    assert cli([*args, "--steps", "4", "--out", str(straight)]) == 0
    assert cli([*args, "--steps", "2", "--out", str(split)]) == 0
    assert cli(["train", "--resume", str(split), "--steps", "4"]) == 0
    a = flatten_state(load_checkpoint(straight / "checkpoints" / "last.pt")["method"]["nets"])
    b = flatten_state(load_checkpoint(split / "checkpoints" / "last.pt")["method"]["nets"])
    assert all(torch.equal(a[k], b[k]) for k in a)
