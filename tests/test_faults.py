"""Faults a hostile or unlucky user meets (issue 11): each probe kept as a test.

Run-folder ownership, no overwrite of what tailgan did not write, a divergence guard that keeps a usable
checkpoint, resume overrides, kills at bad moments, and one-line errors instead of tracebacks.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_same, read_log, run_state
from PIL import Image

from tailgan.cli import main as cli
from tailgan.data import to_uint8
from tailgan.engine import load_run_config
from tailgan.errors import TailganError
from tailgan.io import load_checkpoint, save_checkpoint
from tailgan.outputs import FolderLock

REPO = Path(__file__).resolve().parents[1]
TINY = ["optim.batch_size=8", "optim.d_steps=1", "model.conv_dim=8", "model.embed_dim=16", "log_every=1",
        "sample_every=0", "ckpt_every=2", "precision=fp32"]  # fmt: skip


def train(out, *extra, steps=2, method="cgan"):
    return cli(["train", "--method", method, "--steps", str(steps), "--out", str(out), *TINY, *extra])


def slow_train(out, steps=100000):
    """A training in another process (the CLI as a user starts it)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "tailgan", "train", "--method", "cgan", "--steps", str(steps), "--out", str(out),
            *TINY, "ckpt_every=5"]  # fmt: skip
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(path, proc, timeout=120):
    t0 = time.time()
    while not Path(path).exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.2)


# -- 1. one owner per run folder
def test_a_second_training_into_a_running_folder_is_refused_naming_the_pid(tmp_path, capsys):
    run = tmp_path / "S"
    proc = slow_train(run)
    try:
        wait_for(run / "log.jsonl", proc)
        assert train(run, "model.conv_dim=4") == 2
        err = capsys.readouterr().err
        assert f"in use by process {proc.pid}" in err and err.count("\n") == 1
        assert cli(["train", "--resume", str(run), "--steps", "3"]) == 2
        assert f"in use by process {proc.pid}" in capsys.readouterr().err
        assert "conv_dim: 8" in (run / "config.yaml").read_text()  # the running run's config is untouched
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the OS released the lock of the killed process: the folder can be used again
    if (run / "checkpoints" / "last.pt").is_file():
        step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
        assert cli(["train", "--resume", str(run), "--steps", str(step + 1)]) == 0
    else:
        assert train(run, steps=1) == 0


def test_output_locks_refuse_a_second_writer(tmp_path):
    held = FolderLock(tmp_path / "out", "output folder")
    with pytest.raises(TailganError, match=f"in use by process {os.getpid()}"):
        FolderLock(tmp_path / "out", "output folder")
    held.release()
    FolderLock(tmp_path / "out", "output folder").release()  # free again


# -- 2. never into somebody else's folder
def test_out_onto_a_folder_that_is_not_a_run_is_refused_before_loading_data(tmp_path, capsys, monkeypatch):
    import tailgan.train as train_module

    monkeypatch.setattr(train_module, "load_data", lambda *a, **k: pytest.fail("data loaded before the check"))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "photo.png").write_bytes(b"x")
    # a folder with a config.yaml of the user's (the name tailgan writes) is not a run either
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own file\n")
    (mine / "notes.txt").write_text("keep me\n")
    for folder in (photos, mine):
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        assert train(folder) == 2
        assert "files that tailgan did not write" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# -- 3. --overwrite never deletes an input
def test_overwrite_never_deletes_the_data_root_or_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, steps=1) == 0
    assert cli(["sample", str(run), "--class", "1", "--n", "2", "--out", str(run), "--overwrite"]) == 2
    assert "overlaps" in capsys.readouterr().err and (run / "checkpoints" / "last.pt").is_file()
    assert cli(["sample", str(run), "--class", "1", "--n", "2", "--out", str(run / "gen"), "--overwrite"]) == 2

    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(root / c / f"{i}.png")
    for out in (root, root / "export"):
        assert cli(["data", "export", "folder", str(out), "--root", str(root), "--overwrite"]) == 2
        assert "overlaps" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == ["a", "b"] and len(list((root / "a").iterdir())) == 3


# -- 4. divergence keeps a finite checkpoint
def test_exploding_learning_rate_never_leaves_a_nan_checkpoint(tmp_path, capsys):
    run = tmp_path / "r"
    code = train(run, "optim.g_lr=1e30", "optim.d_lr=1e30", "ckpt_every=1", steps=5)
    err = capsys.readouterr().err
    assert code == 2 and ("NaN/Inf" in err or "became nan" in err.lower())
    last = run / "checkpoints" / "last.pt"
    if last.is_file():  # whatever is on disk is finite
        state = load_checkpoint(last)
        from helpers import flatten_state

        assert all(
            torch.isfinite(v).all() for v in flatten_state(state["method"]["nets"]).values() if v.is_floating_point()
        )
    else:
        assert "No checkpoint had been written yet" in err and "kept" not in err


def test_sample_refuses_a_generator_with_non_finite_outputs(tmp_path, capsys):
    run = tmp_path / "r"
    assert train(run, steps=1) == 0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    for part in ("nets", "ema"):  # the sampling network is G's EMA copy when the run keeps one
        for v in state["method"][part].get("G", {}).values():
            if v.is_floating_point():
                v.fill_(float("nan"))
    save_checkpoint(state, run / "checkpoints" / "last.pt")
    assert cli(["sample", str(run), "--class", "1", "--n", "3", "--out", str(tmp_path / "s")]) == 2
    assert "NaN/Inf outputs" in capsys.readouterr().err and not (tmp_path / "s").exists()


# -- 5. resume overrides: applied and recorded, or refused
def test_resume_applies_learning_rate_overrides_and_refuses_structural_ones(tmp_path, capsys):
    run = tmp_path / "r"
    assert train(run, steps=2) == 0
    assert cli(["train", "--resume", str(run), "--steps", "3", "model.conv_dim=4"]) == 2
    assert "config key 'model.conv_dim' cannot change when resuming" in capsys.readouterr().err
    assert cli(["train", "--resume", str(run), "--steps", "4", "optim.g_lr=0.0123", "log_every=2"]) == 0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["method"]["optimizers"]["G"]["param_groups"][0]["lr"] == 0.0123
    assert state["method"]["optimizers"]["D"]["param_groups"][0]["lr"] == 2e-4
    assert "g_lr: 0.0123" in (run / "config.yaml").read_text()
    resume = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"resume"' in line]
    assert resume[-1]["overrides"] == {"steps": 4, "optim.g_lr": 0.0123, "log_every": 2}


# -- 6 & 7. kills at bad moments
def test_kill_during_the_first_checkpoint_write_can_be_restarted(tmp_path, capsys):
    run = tmp_path / "r"
    assert train(run, steps=1) == 0
    (run / "checkpoints" / "last.pt").rename(run / "checkpoints" / ".last.pt.abc123.tmp.pt")  # as a kill leaves it
    assert cli(["train", "--resume", str(run), "--steps", "2"]) == 2
    assert "no checkpoint yet" in capsys.readouterr().err
    assert train(run, steps=2) == 0  # a fresh start over the dead run
    assert not list((run / "checkpoints").glob(".*tmp*"))
    assert [r["step"] for r in read_log(run)] == [1, 2]  # the dead run's log is gone


def test_resume_after_a_kill_between_checkpoints_does_not_duplicate_log_steps(tmp_path):
    run = tmp_path / "r"
    assert train(run, "keep_checkpoints=true", steps=4) == 0
    shutil.copy(run / "checkpoints" / "step_0000002.pt", run / "checkpoints" / "last.pt")  # killed at step 3-4
    assert cli(["train", "--resume", str(run), "--steps", "5"]) == 0
    assert [r["step"] for r in read_log(run)] == [1, 2, 3, 4, 5]


# -- 8 & 10. numbers out of range
@pytest.mark.parametrize(
    "override, key",
    [("optim.batch_size=0", "optim.batch_size"), ("optim.batch_size=-3", "optim.batch_size"),
     ("ckpt_every=0", "ckpt_every"), ("log_every=0", "log_every"), ("optim.g_lr=-1", "optim.g_lr")],
)  # fmt: skip
def test_numeric_settings_out_of_range_are_one_line_errors(override, key, tmp_path, capsys):
    assert train(tmp_path / "r", override) == 2
    err = capsys.readouterr().err
    assert f"config key '{key}'" in err and "out of range" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_zero_or_negative_steps_are_refused(steps, tmp_path, capsys):
    assert cli(["train", "--method", "cgan", "--steps", steps, "--out", str(tmp_path / "r"), *TINY]) == 2
    assert "config key 'steps'" in capsys.readouterr().err


# -- 9. temp folders of killed exports
def test_stale_temp_folders_of_killed_exports_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".out.tmp-{pid}-xyz"
    (stale / "train" / "cls0").mkdir(parents=True)
    (stale / "train" / "cls0" / "train0.png").write_bytes(b"x")
    assert cli(["data", "export", "digits_lt", str(tmp_path / "out")]) == 0
    assert not stale.exists() and (tmp_path / "out" / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")] == []


# -- 11. outputs that cannot be written, disks that fill, checkpoints that do not fit
def test_unwritable_outputs_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, words in ((tmp_path / "file", "is a file"), (Path("/proc/tailgan-run"), "system folder"),
                       (Path("/sys/x"), "system folder")):  # fmt: skip
        assert train(out) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1


def test_a_full_disk_while_writing_a_checkpoint_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    real_save = torch.save

    def full(obj, f, *a, **k):
        if str(f).endswith(".tmp.pt") and "last.pt" in str(f) and full.armed:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return real_save(obj, f, *a, **k)

    full.armed = False
    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "r"
    assert train(run, steps=2) == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    full.armed = True
    assert cli(["train", "--resume", str(run), "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "is the disk full" in err and err.count("\n") == 1
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert not list((run / "checkpoints").glob(".*tmp*"))


def test_checkpoint_that_does_not_match_config_yaml_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "r"
    assert train(run, steps=1) == 0
    cfg = (run / "config.yaml").read_text().replace("conv_dim: 8", "conv_dim: 12")
    (run / "config.yaml").write_text(cfg)
    assert cli(["sample", str(run), "--class", "0", "--n", "2", "--out", str(tmp_path / "s")]) == 2
    assert "does not match" in capsys.readouterr().err
    assert cli(["train", "--resume", str(run), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and err.count("\n") == 1


# -- 12. decompression bombs
def _bomb_png(path):
    """A small file whose header claims 30000 x 30000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_named_or_skipped(tmp_path, capsys):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(root / c / f"{i}.png")
    _bomb_png(root / "a" / "bomb.png")
    assert cli(["data", "info", "folder", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "bomb.png" in err and err.count("\n") == 1 and "data.skip_bad=true" in err
    with pytest.warns(UserWarning, match="skipped 1"):
        assert cli(["data", "info", "folder", "--root", str(root), "--skip-bad"]) == 0


# -- 14. wording
class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refused_and_empty_checkpoints_say_why(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(TailganError) as e:
        load_checkpoint(bad)
    assert "loads checkpoints safely" in str(e.value) and "weights_only=False" not in str(e.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(TailganError, match="empty \\(0 bytes\\)"):
        load_checkpoint(tmp_path / "empty.pt")


# -- 18. atomic checkpoint writes
def test_a_kill_between_write_and_rename_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"v": torch.tensor([1.0])}, path)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"v": torch.tensor([2.0])}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["v"].item() == 1.0 and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# -- 17. DDP averages gradients
DDP_SCRIPT = r"""
import os, sys, torch, torch.distributed as dist
from torch import nn
from tailgan.engine import make_config
from tailgan.methods.base import Method
from tailgan.methods.spec import DataShape, RunContext
rank, world = int(sys.argv[1]), int(sys.argv[2])
if world > 1:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{sys.argv[3]}", rank=rank, world_size=world)
class Toy(Method):
    def build(self):
        self.nets["N"] = nn.Linear(3, 1)
        self.optimizers["N"] = torch.optim.SGD(self.nets["N"].parameters(), lr=0.1)
cfg = make_config("cgan")
torch.manual_seed(0)  # the same initial weights in every process
m = Toy(cfg, DataShape(2, 1, 8), RunContext(rank=rank, world_size=world))
x = torch.arange(24, dtype=torch.float32).view(8, 3) / 10
part = x if world == 1 else x[rank * 4 : (rank + 1) * 4]
m.update("N", m.nets["N"](part).pow(2).mean(), ["N"])
if rank == 0:
    torch.save({k: v.clone() for k, v in m.nets["N"].state_dict().items()}, sys.argv[4])
if world > 1:
    dist.barrier(); dist.destroy_process_group()
"""


def test_ddp_step_equals_one_process_on_the_concatenated_batch(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, str(script), "0", "1", "0", str(tmp_path / "one.pt")], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert one.returncode == 0, one.stderr
    procs = [subprocess.Popen([sys.executable, str(script), str(r), "2", str(port), str(tmp_path / "two.pt")],
                              env=env, cwd=REPO, stderr=subprocess.PIPE, text=True) for r in (0, 1)]  # fmt: skip
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), (k, a[k], b[k])  # summed gradients would double the step


# -- the kill tests (slow)
@pytest.mark.slow
def test_random_kills_during_training_then_resume_match_a_straight_run(tmp_path):
    import random

    from helpers import flatten_state

    steps, every = 30, ["ckpt_every=3"]
    straight, run = tmp_path / "straight", tmp_path / "killed"
    assert cli(["train", "--method", "cgan", "--steps", str(steps), "--out", str(straight), *TINY, *every]) == 0
    rng = random.Random(0)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def command():
        if (run / "checkpoints" / "last.pt").is_file():
            return ["train", "--resume", str(run), "--steps", str(steps)]
        return ["train", "--method", "cgan", "--steps", str(steps), "--out", str(run), *TINY, *every]

    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-m", "tailgan", *command()], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(2.0, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = (run / "checkpoints" / "last.pt").is_file() and load_checkpoint(run / "checkpoints" / "last.pt")[
        "step"
    ] == steps
    if not done:
        assert cli(command()) == 0
    a = flatten_state(load_checkpoint(straight / "checkpoints" / "last.pt")["method"]["nets"])
    b = flatten_state(load_checkpoint(run / "checkpoints" / "last.pt")["method"]["nets"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_log(run)] == list(range(1, steps + 1))


@pytest.mark.slow
def test_kill_during_the_first_checkpoint_then_restart(tmp_path):
    run = tmp_path / "r"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "tailgan", "train", "--method", "cgan", "--steps", "40", "--out", str(run), *TINY,
            "ckpt_every=40"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(run / "log.jsonl", proc)
    ckpts = run / "checkpoints"
    while proc.poll() is None and not (ckpts.is_dir() and list(ckpts.glob(".*tmp*"))):
        time.sleep(0.005)  # until the first checkpoint is being written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (ckpts / "last.pt").is_file():  # the write finished before the kill
        state = load_checkpoint(ckpts / "last.pt")
        assert state["step"] == 40
    else:  # killed mid-write: a fresh start over it must be accepted and clean up
        assert train(run, "ckpt_every=40", steps=40) == 0
    assert (ckpts / "last.pt").is_file() and not list(ckpts.glob(".*tmp*"))


# -- issue 24: one lock rule and a marker in every output; --overwrite never reaches what another command owns
def _user_folder(path):
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("\\documentclass{article}")
    return path


def test_overwrite_never_deletes_a_running_run_or_another_commands_output(tmp_path, capsys):
    run = tmp_path / "RUN"
    proc = slow_train(run)
    try:
        wait_for(run / "log.jsonl", proc)
        assert cli(["data", "export", "digits_lt", str(run), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"in use by process {proc.pid}" in err and err.count("\n") == 1
        assert (run / "config.yaml").is_file() and proc.poll() is None  # the run goes on, untouched
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished, other = tmp_path / "finished", tmp_path / "other"
    assert train(finished, steps=1) == 0 and train(other, steps=1) == 0
    thesis = _user_folder(tmp_path / "thesis")
    for out, what in ((other, "is a training run (tailgan train)"), (thesis, "files that tailgan did not write")):
        before = sorted(p.name for p in out.iterdir())
        assert cli(["sample", str(finished), "--class", "1", "--n", "2", "--out", str(out), "--overwrite"]) == 2
        assert what in capsys.readouterr().err
        assert cli(["data", "export", "digits_lt", str(out), "--overwrite"]) == 2
        assert what in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == before
    # a sample folder may replace a sample folder, and is marked as one
    gen = tmp_path / "gen"
    assert cli(["sample", str(finished), "--class", "1", "--n", "3", "--out", str(gen)]) == 0
    assert cli(["sample", str(finished), "--class", "2", "--n", "2", "--out", str(gen)]) == 2
    assert "already holds a folder of generated images" in capsys.readouterr().err
    assert cli(["sample", str(finished), "--class", "2", "--n", "2", "--out", str(gen), "--overwrite"]) == 0
    assert json.loads((gen / ".tailgan-output.json").read_text())["kind"] == "samples"
    assert sorted(p.name for p in (gen / "train").iterdir() if any(p.iterdir())) == ["cls2"]
    assert cli(["data", "export", "digits_lt", str(gen), "--overwrite"]) == 2  # a different kind
    assert "is a folder of generated images (tailgan sample), not a dataset export" in capsys.readouterr().err


def test_overwrite_never_reaches_into_inputs_or_user_folders(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, steps=1) == 0
    ckpt = run / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    assert cli(["report", str(run), "--out", str(ckpt), "--overwrite"]) == 2
    assert "is a file of the input" in capsys.readouterr().err and ckpt.read_bytes() == before
    assert cli(["report", str(run), "--out", str(run / "report.html")]) == 0  # a new file beside it is fine
    user = _user_folder(tmp_path / "user")
    (user / "metrics.json").write_text("{}")
    steps = ["--steps", "2", "--batch-size", "16"]
    assert cli(["classify", "--data", "digits_lt", "--strategy", "vanilla", *steps, "--out", str(user),
                "--overwrite"]) == 2  # fmt: skip
    assert "files that tailgan did not write" in capsys.readouterr().err
    assert (user / "metrics.json").read_text() == "{}" and (user / "thesis.tex").is_file()
    # an overwrite with fewer seeds leaves nothing of the earlier output behind
    cls = tmp_path / "cls"
    assert cli(["classify", "--data", "digits_lt", "--strategy", "vanilla", "--seeds", "2", *steps,
                "--out", str(cls)]) == 0  # fmt: skip
    assert (cls / "seed1").is_dir()
    assert cli(["classify", "--data", "digits_lt", "--strategy", "vanilla", "--seeds", "1", *steps,
                "--out", str(cls), "--overwrite"]) == 0  # fmt: skip
    assert not (cls / "seed1").exists() and (cls / "seed0").is_dir()
    assert json.loads((cls / ".tailgan-output.json").read_text()) | {"tailgan": None} == {
        "kind": "classify", "complete": True, "tailgan": None}  # fmt: skip


def test_an_unfinished_classify_output_is_named_and_offers_resume(tmp_path, capsys):
    from tailgan.outputs import claim_output

    out = tmp_path / "cls"
    claim_output(out, "classify").release()  # what a kill -9 after the start leaves: the marker, unfinished
    (out / "metrics.json").write_text("{}")
    assert cli(["classify", "--data", "digits_lt", "--strategy", "vanilla", "--steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unfinished classify output" in err and "--resume" in err and "--overwrite" in err


def _folder_dataset(root):
    for split, n in (("train", (6, 3)), ("valid", (2, 2))):
        for c, count in zip(("a", "b"), n):
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                Image.new("L", (8, 8), 20 * i + 100 * (c == "b")).save(root / split / c / f"{i}.png")
    return root


def test_resume_refuses_changed_data_unless_allowed(tmp_path, capsys):
    root = _folder_dataset(tmp_path / "imgs")
    run = tmp_path / "run"
    data = ["--data", "folder", "--root", str(root), "data.resolution=32"]
    assert train(run, *data, "optim.batch_size=4", steps=1) == 0

    def resume(*extra):
        return cli(["train", "--resume", str(run), "--steps", "2", *extra])

    (root / "train" / "a" / "5.png").unlink()  # one image fewer
    assert resume() == 2
    err = capsys.readouterr().err
    assert "changed since it was trained" in err and "class 0: 6 -> 5" in err and "--allow-data-change" in err
    Image.new("L", (8, 8), 7).save(root / "train" / "a" / "5.png")  # back, with other pixels: same counts
    assert resume() == 2 and "pixels" in capsys.readouterr().err
    shutil.rmtree(root / "valid")
    assert resume() == 2 and "test images per class" in capsys.readouterr().err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1  # nothing was trained on it
    assert resume("--allow-data-change") == 0
    assert "continuing" in capsys.readouterr().err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2


def test_resume_refuses_a_truncated_config_naming_the_missing_key(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, steps=1) == 0
    text = (run / "config.yaml").read_text()
    cut = text[: text.index("\nprecision:")] + "\n"
    (run / "config.yaml").write_text(cut)
    assert cli(["train", "--resume", str(run), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "lacks the key 'precision'" in err and err.count("\n") == 1
    assert (run / "config.yaml").read_text() == cut  # never filled in and written back
    broken = ((b"\x00\xff\xfe binary", "not a text file"), (b"a: [1, 2\nb: }", "not valid YAML at line"))
    for content, expected in broken:
        (run / "config.yaml").write_bytes(content)
        assert cli(["train", "--resume", str(run), "--steps", "2"]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1


def _records(run):
    return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in read_log(run)]


def test_sigterm_finishes_the_step_writes_a_checkpoint_and_resumes_exactly(tmp_path):
    steps, extra = 12, ["log_every=3", "ckpt_every=1000"]  # no checkpoint before the signal; logs every 3rd step
    straight = tmp_path / "straight"
    assert train(straight, *extra, steps=steps) == 0
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "tailgan", "train", "--method", "cgan", "--steps", "100000", "--out", str(run),
            *TINY, *extra]  # fmt: skip
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(run / "log.jsonl", proc)
    while proc.poll() is None and len(read_log(run)) < 2:
        time.sleep(0.05)
    time.sleep(0.15)  # most likely between two log steps: the partial sums must survive too
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    err = proc.stderr.read().decode()
    stopped = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert f"stopped by SIGTERM at step {stopped}" in err and f"--resume {run}" in err
    assert 6 <= stopped < steps, "the run went too far before the signal; the comparison needs steps left"
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert events[-1] == {"event": "stopped", "signal": "SIGTERM", "phase": "gan", "step": stopped}
    assert cli(["train", "--resume", str(run), "--steps", str(steps)]) == 0
    assert _records(run) == _records(straight)
    assert_same(run_state(run), run_state(straight))


def test_a_second_signal_exits_at_once(monkeypatch):
    from tailgan.engine.trainer import stop_on_signals

    class Exited(Exception):
        pass

    def exit_now(code):
        raise Exited(code)

    trainer = type("T", (), {"stop_signal": None})()
    monkeypatch.setattr(os, "_exit", exit_now)
    with stop_on_signals(trainer):
        os.kill(os.getpid(), signal.SIGINT)
        assert trainer.stop_signal == signal.SIGINT  # the first: finish the step
        with pytest.raises(Exited, match=str(128 + signal.SIGTERM)):  # the second: at once
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_tensorboard_keeps_no_duplicated_steps_after_a_resume(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "r"
    assert train(run, "keep_checkpoints=true", steps=4) == 0
    shutil.copy(run / "checkpoints" / "step_0000002.pt", run / "checkpoints" / "last.pt")  # killed at step 3-4
    assert cli(["train", "--resume", str(run), "--steps", "5"]) == 0
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert tags and all([e.step for e in acc.Scalars(t)] == [1, 2, 3, 4, 5] for t in tags if t.startswith("train/"))


def test_sample_streams_batch_by_batch_and_writes_the_same_images(tmp_path, monkeypatch):
    from tailgan.data import folder as folder_module
    from tailgan.engine import load_generator

    run = tmp_path / "run"
    assert train(run, steps=1) == 0
    g = load_generator(run)
    expected = to_uint8(g.sample(torch.full((20,), 3), seed=5, batch_size=6))
    sizes = []
    original = folder_module.ImageFolderWriter.write
    monkeypatch.setattr(folder_module.ImageFolderWriter, "write",
                        lambda self, split, x, y, prefix=None: sizes.append(len(x)) or original(self, split, x, y))
    assert cli(["sample", str(run), "--class", "3", "--n", "20", "--batch-size", "6", "--seed", "5",
                "--out", str(tmp_path / "gen")]) == 0  # fmt: skip
    assert sizes == [6, 6, 6, 2]  # never more than a batch in memory
    folder = tmp_path / "gen" / "train" / "cls3"
    written = torch.stack([torch.from_numpy(np.asarray(Image.open(folder / f"train{i}.png"))) for i in range(20)])
    assert torch.equal(written.reshape(expected.shape), expected)


@pytest.mark.parametrize("n, batch", [("-1", "8"), ("0", "8"), ("4", "0"), ("4", "-1")])
def test_sample_counts_out_of_range_are_one_line_errors(n, batch, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, steps=1) == 0
    capsys.readouterr()
    assert cli(["sample", str(run), "--class", "1", "--n", n, "--batch-size", batch, "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("--n" in err or "--batch-size" in err) and not (tmp_path / "g").exists()


def test_confusion_matrix_of_a_thousand_classes_stays_small(tmp_path):
    from tailgan.report.classify_figures import plot_confusion_matrix

    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(5, 10, 1000)) + rng.integers(0, 2, (1000, 1000))
    cm[7, 3] = 500  # the most confused pair is in the block shown
    plot_confusion_matrix(cm, [f"c{i}" for i in range(1000)], tmp_path / "cm.png")
    with Image.open(tmp_path / "cm.png") as img:
        assert max(img.size) < 3000


def test_full_disk_symlinks_and_foreign_files_are_one_line_errors(tmp_path, capsys, monkeypatch):
    import errno as errno_module

    def full(*a, **k):
        raise OSError(errno_module.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Image.Image, "save", full)
        assert cli(["data", "export", "digits_lt", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "is the disk full?" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # no temp folder, no lock file left
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert cli(["data", "export", "digits_lt", str(tmp_path / "dangling")]) == 2
    assert "symbolic link" in capsys.readouterr().err
    real = tmp_path / "real"
    assert cli(["data", "export", "digits_lt", str(real)]) == 0
    (tmp_path / "link").symlink_to(real)
    assert cli(["data", "export", "digits_lt", str(tmp_path / "link"), "--overwrite"]) == 0  # through the link
    assert (tmp_path / "link").is_symlink() and (real / "train").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_foreign_evaluator_file_is_named_without_torch_advice(tmp_path, capsys):
    import pickle

    from tailgan.metrics.evaluator import load_evaluator_from

    folder = tmp_path / "ev"
    folder.mkdir()
    (folder / "evaluator.json").write_text("{}")
    for content in (b"garbage", pickle.dumps({"x": Path("/")})):  # damaged, and objects that are not tensors
        (folder / "model.pt").write_bytes(content)
        with pytest.raises(TailganError) as e:
            load_evaluator_from(folder)
        assert "is not an evaluator tailgan wrote" in str(e.value) and "weights_only=False" not in str(e.value)


def test_created_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert cli(["data", "export", "digits_lt", str(tmp_path / "exp")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "exp").stat().st_mode & 0o777 == 0o755
    assert ((tmp_path / "exp" / "train").stat().st_mode & 0o777) == 0o755


def test_a_key_added_after_the_run_was_written_resumes_with_its_old_behaviour(tmp_path):
    from tailgan.engine.config import ADDED_KEYS

    run = tmp_path / "run"
    assert train(run, steps=1) == 0
    text = (run / "config.yaml").read_text()
    assert "  gp_every: 1\n" in text and ADDED_KEYS["loss.gp_every"] == 1
    assert "  gp_autocast: true\n" in text  # the default since issue 29; older runs trained with it false
    old_text = text.replace("  gp_every: 1\n", "").replace("  gp_autocast: true\n", "")
    (run / "config.yaml").write_text(old_text)  # a run of an older tailgan
    assert not load_run_config(run).loss.gp_autocast  # loaded (for sampling or resuming) as it trained
    assert cli(["train", "--resume", str(run), "--steps", "2"]) == 0
    assert "  gp_autocast: false\n" in (run / "config.yaml").read_text()  # and written back so
