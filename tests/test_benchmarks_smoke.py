"""Every benchmark script of benchmarks/ (on benchmarks/_harness.py) runs end to end with its tiniest settings.

Each test runs the script as a user would (``python benchmarks/NAME.py ...``, from a temporary folder) into
``tmp_path`` and checks that its results file exists and parses, and that the markdown beside it is written. Slow
(seconds to minutes each; an evaluation trains and caches its evaluator on first use): ``pytest -m slow``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ROOT = os.environ.get("TAILGAN_DATA") or str(REPO.parent / "shared" / "data")
needs_fmnist = pytest.mark.skipif(
    not (Path(ROOT) / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file(),
    reason=f"Fashion-MNIST is not under {ROOT} (set TAILGAN_DATA)",
)
pytestmark = pytest.mark.slow


def run(script: str, *args: str, cwd: Path) -> str:
    """``python benchmarks/SCRIPT.py ARGS`` in ``cwd``; its output (it must succeed)."""
    cmd = [sys.executable, str(REPO / "benchmarks" / f"{script}.py"), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def results(path: Path) -> dict:
    """The results JSON at ``path`` (parsed) after checking that its markdown table is beside it."""
    assert path.with_suffix(".md").read_text().startswith("# ")
    return json.loads(path.read_text())


def test_train_speed(tmp_path):
    run("train_speed", "--configs", "ecogan-dcgan", "--dcgan-steps", "1", "--warmup", "1", "--mem-steps", "1",
        "--fast-steps", "0", "--root", str(tmp_path / "no-data"), "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    doc = results(tmp_path / "train_speed.json")
    assert doc["data"]["preset"] == "digits_lt"  # no Fashion-MNIST under --root: the fallback
    assert doc["configs"]["ecogan-dcgan"]["tailgan"]["g_steps_per_s"] > 0 and doc["machine"]["cpu"]


def test_peak_memory(tmp_path):
    run("peak_memory", "--configs", "lenet5", "--out", str(tmp_path), cwd=tmp_path)
    doc = results(tmp_path / "peak_memory.json")
    assert [(r["config"], r["mode"]) for r in doc["rows"]] == [("lenet5", "fp32"), ("lenet5", "fast")]
    assert all(r["peak_rss_mb"] >= r["rss_after_imports_mb"] > 0 for r in doc["rows"])


@needs_fmnist
def test_eval_speed(tmp_path):
    run("eval_speed", "--n", "1000", "--repeats", "1", "--threads", "1", "--out", str(tmp_path), cwd=tmp_path)
    doc = results(tmp_path / "eval_speed.json")
    assert doc["speed"]["images"] == 2000 and doc["speed"]["fid_rel_diff"] < 1e-3


def test_compile_speed(tmp_path):
    run("compile_speed", "--archs", "lenet5", "--modes", "fp32", "--steps", "2", "--out", str(tmp_path), cwd=tmp_path)
    (row,) = results(tmp_path / "compile_speed.json")["rows"]
    assert row["arch"] == "lenet5" and row["eager"]["step_s_median"] > 0  # compiled: a time or an error


@needs_fmnist
def test_precision_quality(tmp_path):
    run("precision_quality", "--recipes", "ecogan-dcgan", "--variants", "", "--steps", "2", "--jobs", "1",
        "--work", str(tmp_path / "runs"), "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    doc = results(tmp_path / "precision_quality.json")
    assert [r["run"] for r in doc["rows"]] == ["fp32_seed0", "fp32_seed1", "fp32_seed2"]


def test_gan_regularizers_keeps_its_rows_on_a_rerun(tmp_path):
    common = ["--data", "digits_lt", "--steps", "4", "--recipes", "ecogan-dcgan", "--jobs", "1",
              "--work", str(tmp_path / "runs"), "--out", str(tmp_path)]  # fmt: skip
    run("gan_regularizers", *common, "--only", "ecogan-dcgan:none", cwd=tmp_path)
    first = results(tmp_path / "gan_regularizers.json")["rows"]
    run("gan_regularizers", *common, "--only", "ecogan-dcgan:none,ecogan-dcgan:lecam", cwd=tmp_path)
    rows = results(tmp_path / "gan_regularizers.json")["rows"]
    assert [r["setting"] for r in rows] == ["none", "lecam"] and rows[0]["train-lt"] == first[0]["train-lt"]


@needs_fmnist
def test_fast_path_recipes(tmp_path):
    run("fast_path_recipes", "--recipes", "dfg", "--steps", "1", "--warmup", "1", "--out", str(tmp_path), cwd=tmp_path)
    assert results(tmp_path / "fast_path_recipes.json")["rows"]["dfg"]["speedup"] > 0


@needs_fmnist
def test_joint_binary(tmp_path):
    run("joint_binary", "--quick", "--out", str(tmp_path), cwd=tmp_path)
    doc = results(tmp_path / "joint_binary.json")
    assert doc["complete"] and len(doc["rows"]) == 4 and not doc["claims"]


@needs_fmnist
def test_dfg_fmnist(tmp_path):
    out = tmp_path / "dfg_quick.json"
    run("dfg_fmnist", "--quick", "--rows", "original,dfg,ts", "--out", str(out), "--work", str(tmp_path / "runs"),
        cwd=tmp_path)  # fmt: skip
    assert [(r["row"], r["seed"]) for r in results(out)["rows"]] == [("original", 0), ("dfg", 0), ("ts", 0)]


@needs_fmnist
def test_seed_table3(tmp_path):
    run("seed_table3", "--steps", "2", "--only", "ECOGAN samp", "--jobs", "1", "--out", str(tmp_path / "runs"),
        "--results", str(tmp_path), cwd=tmp_path)  # fmt: skip
    (row,) = results(tmp_path / "seed_table3.json")["rows"]
    assert row["name"] == "ECOGAN samp" and row["best"]["step"] in (1, 2)


@needs_fmnist
def test_synthetic_protocol(tmp_path):
    gen = tmp_path / "generator"
    subprocess.run([sys.executable, "-m", "tailgan", "train", "--method", "ecogan-dcgan", "--data", "fashion_mnist_lt",
                    "--root", ROOT, "--steps", "2", "--out", str(gen), "valid_fraction=0.1", "model.conv_dim=8",
                    "optim.batch_size=8", "sample_every=0"], check=True, capture_output=True)  # fmt: skip
    run("synthetic_protocol", "--generator", f"g={gen}", "--seeds", "1", "--epochs", "0.02", "--sweep", "none",
        "--work", str(tmp_path / "work"), "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    doc = results(tmp_path / "synthetic_protocol.json")
    assert len(doc["ablation"]) == 8 and doc["sweep"] == []  # each row measured, or refused by the guard


def test_device_check_script(tmp_path):
    run("device_check", "--device", "cpu", "--data", "digits_lt", "--tiny", "--presets", "ecogan-dcgan", "--sections",
        "presets,speed", "--steps", "2", "--speed-steps", "1", "--speed-warmup", "1", "--batches", "8",
        "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    doc = results(tmp_path / "device_check.json")
    assert doc["failed"] == [] and doc["presets"][0]["ok"]


def test_classify_fmnist_lt_merges_a_second_run(tmp_path):
    common = ["--data", "digits_lt", "--seeds", "1", "--epochs", "1", "--set", "min_steps=30", "--stem", "classify",
              "--out", str(tmp_path)]  # fmt: skip
    run("classify_fmnist_lt", *common, "--strategies", "vanilla", "--upper", cwd=tmp_path)
    run("classify_fmnist_lt", *common, "--strategies", "la", "--merge", cwd=tmp_path)
    doc = results(tmp_path / "classify.json")
    rows = [r["strategy"] for r in doc["results"]]
    assert rows[0] == "vanilla" and rows[-1] == "la" and [r.startswith("upper:") for r in rows[1:-1]] == [True] * 2
    assert doc["command"].startswith("python benchmarks/classify_fmnist_lt.py --data digits_lt") and doc["machine"]


@needs_fmnist
def test_if_sweep(tmp_path):
    run("if_sweep", "--run", "--factors", "10", "--seeds", "1", "--rows", "vanilla,feat-calibrate", "--epochs", "0.05",
        "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    report = results(tmp_path / "if_sweep" / "if_sweep_10.json")
    assert [r["strategy"] for r in report["results"]] == ["vanilla", "feat-calibrate"]
    assert "| 10 | " in (tmp_path / "if_sweep.md").read_text() and (tmp_path / "if_sweep.png").is_file()


def test_compare_tables(tmp_path):
    out = tmp_path / "compare.md"
    run("compare_tables", str(RESULTS / "classify_fmnist_lt_v2.json"), str(RESULTS / "classify_fmnist_lt_v3.json"),
        "--labels", "v2", "v3", "--note", "a note", "--out", str(out), cwd=tmp_path)  # fmt: skip
    md = out.read_text().splitlines()
    assert md[0] == "# v2 vs v3" and "- a note" in md and any(line.startswith("| vanilla | ") for line in md)
