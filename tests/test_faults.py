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

import pytest
import torch
from helpers import read_log
from PIL import Image

from tailgan.cli import main as cli
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
    held = FolderLock(tmp_path / "out", "output folder", beside=True)
    with pytest.raises(TailganError, match=f"in use by process {os.getpid()}"):
        FolderLock(tmp_path / "out", "output folder", beside=True)
    held.release()
    FolderLock(tmp_path / "out", "output folder", beside=True).release()  # free again


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
