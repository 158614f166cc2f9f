"""Lazy regularisation (``loss.gp_every=k``, StyleGAN2): the gradient penalty every k-th D step, weight x k."""

import pytest
import torch

from tailgan.data import load_data
from tailgan.engine import DataShape, RunContext, Trainer, build_method, make_config
from tailgan.nets.precision import resolve_precision

TINY = ["optim.batch_size=8", "model.conv_dim=8", "model.embed_dim=16", "model.z_dim=16", "log_every=1",
        "sample_every=0", "precision=fp32", "loss.gp_weight=10"]  # fmt: skip
RECIPES = {"ecogan-dcgan": [], "bagan-gp": ["options.pretrain=false"]}


def build(name, overrides):
    cfg = make_config(name, overrides=[*TINY, *RECIPES[name], *overrides], steps=4)
    data = load_data(cfg.data)
    prec, _ = resolve_precision(cfg.precision, torch.device("cpu"))
    return build_method(cfg, DataShape(10, 1, 32, tuple(data.train.counts())), RunContext(precision=prec)), data


def test_schedule_is_every_kth_d_step_over_the_run_with_k_times_the_weight():
    m, _ = build("ecogan-dcgan", ["optim.d_steps=5", "loss.gp_every=3"])
    weights = [m.penalty_weight(step, d) for step in (1, 2, 3) for d in range(5)]
    # D steps 0..14 of the run: due at 0, 3, 6, 9, 12 with 3 x 10
    assert weights == [30.0, 0, 0, 30.0, 0, 0, 30.0, 0, 0, 30.0, 0, 0, 30.0, 0, 0]
    m1, _ = build("ecogan-dcgan", ["optim.d_steps=5"])
    assert [m1.penalty_weight(s, d) for s in (1, 2) for d in range(5)] == [10.0] * 10


@pytest.mark.parametrize("name", list(RECIPES))
def test_d_loss_holds_k_times_the_penalty_only_on_due_steps(name, monkeypatch):
    calls = []

    def fixed_penalty(critic, real, fake, **kwargs):  # a known value in place of the real penalty
        calls.append(len(real))
        return torch.tensor(0.25)

    monkeypatch.setattr("tailgan.methods.base.gradient_penalty", fixed_penalty)  # the step skeleton's penalty
    m, data = build(name, ["optim.d_steps=1", "loss.gp_every=2"])
    trainer = Trainer(m, data)
    extras = []
    for _ in range(4):
        logs = {k: float(v) for k, v in trainer.step().items()}
        rest = logs["d_loss"] - logs["d_adv"] - m.cfg.loss.cond_lambda * logs.get("d_cond", 0.0)
        extras.append(rest)
    assert len(calls) == 2  # D steps 0 and 2 of 0..3
    # due D steps add 2 x 10 x 0.25 = 5, the others nothing
    assert extras == pytest.approx([5.0, 0.0, 5.0, 0.0], abs=1e-5)
