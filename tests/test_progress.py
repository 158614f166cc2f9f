"""Progress never goes silent: one bar per training phase (pre-training included), a line at least every 30 s
off a terminal, a quiet console on request; ``tailgan train --threads``."""

from __future__ import annotations

import re
import types

import pytest
import torch

import tailgan.engine.trainer as trainer_module
import tailgan.progress as progress_module
from tailgan.cli import main
from tailgan.train import make_config, train

TINY = ["model.conv_dim=8", "model.z_dim=16", "model.embed_dim=16", "optim.batch_size=32", "optim.d_steps=1",
        "options.pretrain_epochs=1", "sample_every=0", "ckpt_every=2", "log_every=1000"]  # fmt: skip


def tiny_config(steps: int = 3):
    return make_config("bagan-gp", data="digits_lt", steps=steps, overrides=list(TINY))


class Bars:
    """Stands in for ``tailgan.progress.progress``: records each bar's (desc, total, initial) and updates."""

    def __init__(self) -> None:
        self.made: list[dict] = []

    def __call__(self, total, desc, unit="step", initial=0, every=30.0):
        bar = {"desc": desc, "total": total, "initial": initial, "updates": 0, "closed": False}
        self.made.append(bar)
        return types.SimpleNamespace(
            update=lambda k=1: bar.__setitem__("updates", bar["updates"] + k),
            write=print,
            close=lambda: bar.__setitem__("closed", True),
        )


def test_each_phase_has_its_own_bar_and_a_resumed_run_starts_where_it_stopped(tmp_path, monkeypatch):
    bars = Bars()
    monkeypatch.setattr(trainer_module, "progress", bars)
    train(tiny_config(steps=2), tmp_path / "run")
    pre, gan = bars.made
    # digits_lt at batch 32: 486 images -> 15 pre-training steps in its one epoch, then the 2 GAN steps
    assert (pre["desc"], pre["total"], pre["initial"], pre["updates"]) == ("pretrain", 15, 0, 15)
    assert (gan["desc"], gan["total"], gan["initial"], gan["updates"]) == ("gan", 2, 0, 2)
    assert pre["closed"] and gan["closed"]

    bars.made.clear()
    cfg = tiny_config(steps=5)
    train(cfg, tmp_path / "run", resume=True, overrides={"steps": 5})
    (gan,) = bars.made  # pre-training is done: no bar for it
    assert (gan["desc"], gan["total"], gan["initial"], gan["updates"]) == ("gan", 5, 2, 3)


class Clock:
    """A monotonic clock that moves ``tick`` seconds each time it is read."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now


def test_off_a_terminal_a_line_comes_at_least_every_30_seconds(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "time", Clock(tick=31.0))  # every step "takes" 31 s
    train(tiny_config(steps=3), tmp_path / "run")
    err = capsys.readouterr().err
    pre = re.findall(r"^pretrain: (\d+)/15 step \(\d+ %\), [\d.e+-]+ step/s, ETA \S+$", err, re.M)
    gan = re.findall(r"^gan: (\d+)/3 step \(\d+ %\), [\d.e+-]+ step/s, ETA \S+$", err, re.M)
    assert [int(n) for n in pre] == list(range(1, 16)) and [int(n) for n in gan] == [1, 2, 3]


def test_lines_wait_for_30_seconds(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "time", Clock(tick=10.0))  # a line every third read of the clock
    bar = progress_module.progress(9, "gan")
    for _ in range(9):
        bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in lines] == ["3/9", "6/9", "9/9"]
    assert lines[0] == "gan: 3/9 step (33 %), 0.1 step/s, ETA 1m00s"


def test_console_false_prints_nothing_but_writes_the_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "time", Clock(tick=31.0))
    train(tiny_config(steps=2), tmp_path / "run", console=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") >= 2


def test_train_threads_sets_torch_threads_and_refuses_zero(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    argv = ["train", "--method", "bagan-gp", "--steps", "1", "--out", str(tmp_path / "run"), "--threads", "1", *TINY]
    assert main(argv) == 0 and seen == [1]
    assert main(["train", "--out", str(tmp_path / "other"), "--threads", "0"]) == 2
    assert "--threads 0: give 1 or more CPU threads" in capsys.readouterr().err


@pytest.mark.parametrize("steps", [1])
def test_sampler_is_quiet_by_default_and_shows_progress_with_verbose(steps, capsys, monkeypatch):
    import numpy as np

    from tailgan.samplers import GenerativeOverSampler

    monkeypatch.setattr(progress_module, "time", Clock(tick=31.0))
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (24, 8, 8), dtype=np.uint8), np.repeat([0, 1, 2], [12, 6, 6])
    overrides = [o for o in TINY if "pretrain" not in o] + ["options.pretrain=false"]
    kw = dict(steps=steps, random_state=0, overrides=overrides)
    GenerativeOverSampler(**kw).fit_resample(X, y)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    GenerativeOverSampler(**kw, verbose=1).fit_resample(X, y)
    loud = capsys.readouterr()
    assert "gan: 1/1 step" in loud.err and "event=start" in loud.out
