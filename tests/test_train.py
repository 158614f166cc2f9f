"""The GAN engine: every recipe trains from the CLI, resume is bit-exact, NaN stops cleanly, sampling."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import flatten_state, noise_gan_recipes, read_log

from tailgan import load_generator
from tailgan.cli import main as cli
from tailgan.errors import TailganError
from tailgan.io import load_checkpoint
from tailgan.methods import resolve_preset
from tailgan.train import TrainingDiverged, make_config, train

TINY = [
    "optim.batch_size=8",
    "optim.d_steps=2",
    "model.conv_dim=8",
    "model.embed_dim=16",
    "model.shared_dim=8",
    "log_every=1",
    "sample_every=2",
    "ckpt_every=2",
]


def tiny(arch_overrides=()):
    return TINY + list(arch_overrides)


def pretrain_briefly(name):
    """Autoencoder recipes pre-train for one epoch only in tests."""
    return ["options.pretrain_epochs=1"] if resolve_preset(name)["method"] in ("bagan", "bagan-gp", "idagan") else []


def run_cli(args):
    assert cli(args) == 0


@pytest.mark.parametrize("name", noise_gan_recipes())
def test_every_method_and_preset_trains_from_cli(name, tmp_path):
    out = tmp_path / "run"
    extra = pretrain_briefly(name)
    run_cli(["train", "--method", name, "--data", "digits_lt", "--steps", "2", "--out", str(out), *tiny(), *extra])
    records = [r for r in read_log(out) if r.get("phase") != "pretrain"]
    assert [r["step"] for r in records] == [1, 2]
    assert all("d_loss" in r and "g_loss" in r for r in records)
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "samples" / "step_0000002.png").is_file()
    assert (out / "config.yaml").is_file() and list((out / "tb").iterdir())
    g = load_generator(out)
    x = g.sample(torch.arange(10), seed=0)
    assert x.shape == (10, 1, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, g.sample(torch.arange(10), seed=0))


@pytest.mark.parametrize("name", sorted(noise_gan_recipes()))
def test_every_preset_trains_on_fashion_mnist_lt(name, fmnist_root, tmp_path):
    run_cli(
        [
            "train",
            "--method",
            name,
            "--data",
            "fashion_mnist_lt",
            "--root",
            fmnist_root,
            "--steps",
            "1",
            "--out",
            str(tmp_path / "r"),
            "sampling=balanced",
            *tiny(),
            *pretrain_briefly(name),
        ]
    )
    cfg = (tmp_path / "r" / "config.yaml").read_text()
    assert "fashion_mnist" in cfg and "balanced" in cfg


def _weights(run):
    return load_checkpoint(Path(run) / "checkpoints" / "last.pt")["method"]


def _assert_same_state(a, b):
    for part in ("nets", "ema", "optimizers"):
        flat_a, flat_b = flatten_state(a[part]), flatten_state(b[part])
        assert flat_a.keys() == flat_b.keys()
        for k in flat_a:
            assert torch.equal(flat_a[k], flat_b[k]), f"{part}: {k} differs"


@pytest.mark.parametrize(
    "method, extra",
    [
        ("ecogan-dcgan", ["sampling=balanced"]),
        ("ecogan-biggan", ["ema_start=2", "ema_decay=0.9"]),  # EMA, flips, uniform fake labels
    ],
)
def test_resume_is_bit_exact(method, extra, tmp_path):
    over = tiny() + extra + ["precision=fp32"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_cli(["train", "--method", method, "--steps", "6", "--out", str(straight), *over])
    run_cli(["train", "--method", method, "--steps", "3", "--out", str(split), *over])
    run_cli(["train", "--resume", str(split), "--steps", "6"])
    _assert_same_state(_weights(straight), _weights(split))
    steps = [r["step"] for r in read_log(split)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_refuses_to_overwrite_a_run(tmp_path, capsys):
    run_cli(["train", "--method", "ecogan-dcgan", "--steps", "1", "--out", str(tmp_path / "r"), *tiny()])
    assert cli(["train", "--method", "ecogan-dcgan", "--steps", "1", "--out", str(tmp_path / "r"), *tiny()]) == 2
    assert "--resume" in capsys.readouterr().err


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from tailgan.methods.ecogan import ECOGAN

    real_loss = ECOGAN.contrastive
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        value = real_loss(*args, **kwargs)
        return value * float("nan") if calls["n"] > 3 * 3 else value  # NaN from step 4 (3 calls per step)

    monkeypatch.setattr(ECOGAN, "contrastive", staticmethod(poisoned))
    cfg = make_config("ecogan-dcgan", overrides=tiny(), steps=10)
    with pytest.raises(TrainingDiverged, match=r"step 4") as e:
        train(cfg, tmp_path / "r")
    assert "loss d_" in str(e.value) and "last good checkpoint" in str(e.value)
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert state["step"] == 2  # the last good checkpoint (every 2 steps) is kept
    weights = flatten_state(state["method"]["nets"]).values()
    assert all(torch.isfinite(v).all() for v in weights if v.is_floating_point())


def test_unknown_method_and_bad_override(capsys, tmp_path):
    assert cli(["train", "--method", "nogan", "--steps", "1", "--out", str(tmp_path / "x")]) == 2
    assert "unknown method or preset 'nogan'" in capsys.readouterr().err
    assert cli(["train", "--method", "ecogan", "--steps", "1", "--out", str(tmp_path / "x"), "optim.lr=1"]) == 2
    assert "unknown config key 'optim.lr'" in capsys.readouterr().err


def test_config_file_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("method: contragan\nsteps: 7\nloss:\n  temperature: 0.3\n")
    cfg = make_config(config_file=str(tmp_path / "c.yaml"), overrides=["loss.cond_lambda=0.25"])
    assert cfg.method == "contragan" and cfg.steps == 7 and cfg.loss.temperature == 0.3 and cfg.loss.cond_lambda == 0.25
    assert cfg.loss.adv == "hinge" and cfg.ema  # from the contragan preset
    (tmp_path / "bad.yaml").write_text("stepz: 3\n")
    with pytest.raises(TailganError, match="stepz"):
        make_config(config_file=str(tmp_path / "bad.yaml"))


def test_sample_cli(tmp_path):
    run = tmp_path / "run"
    run_cli(["train", "--method", "ecogan-dcgan", "--steps", "1", "--out", str(run), *tiny()])
    run_cli(["sample", str(run), "--class", "3", "--n", "5", "--out", str(tmp_path / "s")])
    assert len(list((tmp_path / "s" / "train" / "cls3").glob("*.png"))) == 5
    run_cli(["sample", str(run), "--balance-to", "max", "--out", str(tmp_path / "b")])
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["counts"] == [0, 28, 49, 65, 77, 87, 95, 100, 105, 108]  # 120 - digits_lt counts
    assert manifest["generated"] and manifest["step"] == 1
    for c, n in enumerate(manifest["counts"]):
        assert len(list((tmp_path / "b" / "train" / f"cls{c}").glob("*.png"))) == n


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "tailgan",
        *args,
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_ddp_two_processes_stay_in_sync_and_resume(tmp_path):
    run = tmp_path / "ddp"
    common = [*tiny(), "sampling=balanced"]
    _torchrun(["train", "--method", "ecogan-dcgan", "--steps", "2", "--out", str(run), *common], tmp_path)
    _torchrun(["train", "--resume", str(run), "--steps", "4"], tmp_path)
    records = read_log(run)
    synced = [r for r in records if "ddp_in_sync" in r]
    assert [r["step"] for r in synced] == [2, 4] and all(r["ddp_in_sync"] for r in synced)
    assert all(r["world_size"] == 2 for r in synced)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4


def test_deprecated_amp_switch_maps_to_precision():
    assert make_config("ecogan-dcgan", overrides=["amp=true"]).precision == "bf16"
    assert make_config("ecogan-dcgan", overrides=["amp=false"]).precision == "fp32"
    assert make_config("ecogan-dcgan").precision == "auto"


def test_evaluation_during_training_keeps_best(tmp_path):
    cfg = make_config(
        "ecogan-dcgan",
        overrides=[*tiny(), "eval_every=2", "eval_metrics=[fid,labelacc]", "eval_ref=test", "best_metric=fid"],
        steps=4,
    )
    train(cfg, tmp_path / "r")
    records = read_log(tmp_path / "r")
    evals = [r for r in records if "fid" in r]
    assert [r["step"] for r in evals] == [2, 4] and all(0 <= r["labelacc"] <= 1 for r in evals)
    best = load_checkpoint(tmp_path / "r" / "checkpoints" / "best.pt")
    assert best["best"]["value"] == min(r["fid"] for r in evals) and best["step"] == best["best"]["step"]


def test_valid_fraction_holds_the_classifiers_validation_split_out_of_gan_training(tmp_path):
    from tailgan.data import load_data
    from tailgan.data.splits import carve_validation

    run = tmp_path / "r"
    run_cli(["train", "--method", "cgan", "--steps", "1", "--out", str(run), *tiny(), "valid_fraction=0.2",
             "valid_seed=3"])  # fmt: skip
    g = load_generator(run)
    _, valid, record = carve_validation(load_data(g.data_config), 0.2, 3)
    assert g.valid_split == record and record["source"] == "carved"
    assert json.loads((run / "data_manifest.json").read_text())["counts"] == [120, 92, 71, 55, 43, 33, 25, 20, 15, 12]
    assert len(valid) == sum(max(1, round(0.2 * n)) for n in [120, 92, 71, 55, 43, 33, 25, 20, 15, 12])
    from tailgan.train import hold_out_validation

    cfg = make_config("cgan", overrides=["valid_fraction=0.2", "valid_seed=3"])
    held, rec = hold_out_validation(load_data(cfg.data), cfg)
    assert rec == record and len(held.train) == 486 - len(valid)
    assert torch.equal(held.valid.images, valid.images)  # the generator's data is the rest
