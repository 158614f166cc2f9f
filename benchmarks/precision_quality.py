"""Benchmark: does the fast path (bf16 autocast + channels-last) train generators as good as fp32?

Issue 10's quality bar: a 2,000-G-step ``ecogan-dcgan`` run on Fashion-MNIST-LT in the fast mode, seed 0,
against 3 fp32 seeds (0, 1, 2) of the same run; FID, KID and label accuracy (the evaluator at 32 px, the
balanced test split as reference, equal fakes per class), overall and on the three rarest classes. The fast
run passes when each figure lies within the range of the fp32 seeds (widened by nothing) or outside it on
the better side.

Resumable: each run is a tailgan run folder under ``--work``; rerunning continues unfinished runs from their
checkpoints and skips finished ones and finished evaluations. ``--jobs 2`` trains two runs at once (one
thread each).

    python benchmarks/precision_quality.py --work runs/precision_quality --jobs 2

Writes benchmarks/results/precision_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tailgan.version import cpu_model  # noqa: E402

STEM = "precision_quality"
SETTINGS = ["sampling=balanced", "optim.batch_size=64", "model.conv_dim=32", "log_every=100", "sample_every=500",
            "ckpt_every=100"]  # fmt: skip
RUNS = [("fp32", 0), ("fp32", 1), ("fp32", 2), ("auto", 0)]


def run_name(precision: str, seed: int) -> str:
    return f"{'fast' if precision == 'auto' else precision}_seed{seed}"


def tailgan(*args: str, threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "tailgan", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=REPO)


def last_step(run: Path) -> int:
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
    except OSError:
        return 0
    steps = [json.loads(line).get("step", 0) for line in lines if '"event"' not in line]
    return max(steps, default=0)


def train_and_eval(precision: str, seed: int, args: argparse.Namespace) -> dict:
    run = Path(args.work) / run_name(precision, seed)
    if not (run / "checkpoints" / "last.pt").is_file():
        if run.exists():  # killed before its first checkpoint: start again
            subprocess.run(["rm", "-rf", str(run)], check=True)
        tailgan("train", "--method", "ecogan-dcgan", "--data", "fashion_mnist_lt", "--root", args.root,
                "--steps", str(args.steps), "--out", str(run), f"seed={seed}", f"precision={precision}", *SETTINGS,
                threads=args.threads)  # fmt: skip
    elif last_step(run) < args.steps:
        tailgan("train", "--resume", str(run), "--steps", str(args.steps), threads=args.threads)
    result_file = run / "eval" / f"{args.steps}.json"
    if not result_file.is_file() or "test/evaluator" not in json.loads(result_file.read_text())["results"]:
        tailgan("eval", str(run), "--metrics", "fid,kid,labelacc", "--ref", "test", "--root", args.root,
                threads=args.threads)  # fmt: skip
    result = json.loads(result_file.read_text())["results"]["test/evaluator"]
    counts = json.loads((run / "data_manifest.json").read_text())["counts"]
    rare = sorted(range(len(counts)), key=lambda c: counts[c])[:3]
    per = result["per_class"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rates = [r["steps_per_s"] for r in log if "steps_per_s" in r]
    return {
        "run": run.name, "precision": precision, "seed": seed,
        "fid": result["overall"]["fid"], "kid": result["overall"]["kid"], "labelacc": result["overall"]["labelacc"],
        "rare_classes": rare,
        "rare_fid": sum(per[c]["fid"] for c in rare) / 3, "rare_labelacc": sum(per[c]["labelacc"] for c in rare) / 3,
        "steps_per_s_median": sorted(rates)[len(rates) // 2] if rates else None,
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=os.environ.get("TAILGAN_DATA") or str(REPO.parent / "shared" / "data"))
    p.add_argument("--work", default=str(REPO / "runs" / STEM))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args()
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda r: train_and_eval(*r, args), RUNS))
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    fast = next(r for r in rows if r["precision"] == "auto")
    verdict = {}
    for key in ("fid", "kid", "labelacc", "rare_fid", "rare_labelacc"):
        lo, hi = min(r[key] for r in fp32), max(r[key] for r in fp32)
        higher_better = "labelacc" in key  # FID / KID: lower is better
        side = "within" if lo <= fast[key] <= hi else ("better" if (fast[key] > hi) == higher_better else "worse")
        verdict[key] = {"fp32_min": lo, "fp32_max": hi, "fast": fast[key], "within": side == "within", "side": side}
    doc = {
        "command": " ".join([sys.executable, *sys.argv]), "started": started,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "nproc": os.cpu_count(),
                    "python": platform.python_version()},
        "settings": {"method": "ecogan-dcgan", "data": "fashion_mnist_lt", "steps": args.steps, "overrides": SETTINGS,
                     "eval": "evaluator features at 32 px, ref test, fid,kid,labelacc"},
        "rows": rows, "verdict": verdict,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{STEM}.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [
        f"# Fast path vs fp32: {args.steps} G steps of ecogan-dcgan on Fashion-MNIST-LT",
        "",
        f"Machine: {doc['machine']['cpu']}, {doc['machine']['nproc']} cores, one thread per run; "
        f"{started[:10]}. Command: `{doc['command']}`.",
        "",
        "| run | FID | KID | label acc. | rarest-3 FID | rarest-3 label acc. | G steps/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['run']} | {r['fid']:.2f} | {r['kid']:.4f} | {r['labelacc']:.3f} | {r['rare_fid']:.2f} | "
                     f"{r['rare_labelacc']:.3f} | {r['steps_per_s_median']:.3f} |")  # fmt: skip
    lines += ["", "Fast run vs the fp32 seeds' range (within, or outside on the better / worse side): " + ", ".join(
        f"{k} {v['side']}" for k, v in verdict.items())]  # fmt: skip
    lines += ["", "G steps/s: the median of a run's log records; the runs shared the machine with other jobs at "
              "different times (and were resumed), so speed is measured by train_speed.py, not here."]
    (out / f"{STEM}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
