"""benchmarks/device_check.py (issue 29's prepared GPU check) runs unchanged on the CPU with tiny settings."""

import importlib
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def device_check():
    """The script as a module, imported as ``python benchmarks/device_check.py`` would (its folder first on the
    path, for ``_harness``), for this module's tests only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        yield importlib.import_module("device_check")

TINY = ["--device", "cpu", "--data", "digits_lt", "--tiny", "--steps", "2", "--speed-steps", "2", "--speed-warmup",
        "1", "--batches", "8"]  # fmt: skip


def test_presets_ddp_and_speed_on_the_cpu(device_check, tmp_path, capsys):
    rc = device_check.main([*TINY, "--presets", "ecogan-dcgan,bagan-gp", "--sections", "presets,ddp,speed",
                            "--out", str(tmp_path)])  # fmt: skip
    doc = json.loads((tmp_path / "device_check.json").read_text())
    assert rc == 0 and doc["failed"] == []
    assert [r["preset"] for r in doc["presets"]] == ["ecogan-dcgan", "bagan-gp"]
    for r in doc["presets"]:
        # precision=auto resolved on this machine: bf16 where native, else fp32 with a note saying so
        assert r["ok"] and r["precision"] in ("bf16", "fp32") and (r["precision"] == "bf16" or r["note"])
        assert r["last_losses"] and "d_loss" in r["last_losses"]
    assert "skipped" in doc["ddp"] and doc["ddp"]["ok"] is None
    assert [(r["model"], r["batch"]) for r in doc["speed"]] == [("ecogan-dcgan", 8), ("bagan-gp", 8), ("resnet32", 8)]
    for r in doc["speed"]:
        assert r["ok"] and r["fp32_steps_per_s"] > 0 and r["auto_steps_per_s"] > 0
        assert r["speedup"] == pytest.approx(r["auto_steps_per_s"] / r["fp32_steps_per_s"])
    md = (tmp_path / "device_check.md").read_text()
    assert "| ecogan-dcgan | yes |" in md and "| resnet32 | 8 |" in md and "ddp**: skipped" in md


def test_a_failing_preset_is_recorded_and_the_run_goes_on(device_check, tmp_path):
    rc = device_check.main([*TINY, "--presets", "no-such-recipe,ecogan-dcgan", "--sections", "presets",
                            "--out", str(tmp_path)])  # fmt: skip
    doc = json.loads((tmp_path / "device_check.json").read_text())
    assert rc == 1 and doc["failed"] == ["presets:no-such-recipe"]
    assert doc["presets"][1]["ok"] and "no-such-recipe" in doc["presets"][0]["error"]


@pytest.mark.slow
def test_classify_and_eval_through_the_cli_on_the_cpu(device_check, tmp_path):
    rc = device_check.main([*TINY, "--presets", "ecogan-dcgan", "--sections", "presets,classify,eval",
                            "--classify-epochs", "0.2", "--eval-n", "100", "--out", str(tmp_path)])  # fmt: skip
    doc = json.loads((tmp_path / "device_check.json").read_text())
    assert rc == 0, doc
    assert doc["classify"]["ok"] and doc["eval"]["ok"]
    assert {"fid", "kid", "labelacc"} <= set(doc["eval"]["overall"])
