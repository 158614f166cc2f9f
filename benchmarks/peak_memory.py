"""Benchmark: peak host memory of training in exact fp32 and in the fast mode (bf16 autocast + channels-last).

For ``ecogan-dcgan`` and ``ecogan-biggan`` (the configurations of ``train_speed.py``: batch 64, 32 px) a fresh
process runs the real ``tailgan.train.train`` for a few G steps; for the classifiers (LeNet-5, ResNet-32,
batch 128, 32 px) a fresh process runs ``tailgan.classify.train.train_classifier`` on random images. Each
process records its RSS after the imports, then its RSS high-water mark (``getrusage``); the rise between the
two is what the data, the networks, the optimizer state and the activations of a step cost.

    python benchmarks/peak_memory.py               # every row, a few minutes on 1 thread

Writes benchmarks/results/peak_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from train_speed import CONFIGS, default_root, peak_rss_mb, pick_data, rss_mb, tailgan_config  # noqa: E402

STEM = "peak_memory"
CLASSIFIERS = {"lenet5": 1, "resnet32": 3}  # arch: input channels
MODES = {"fp32": "fp32", "fast": "auto"}  # row label: precision setting


def worker(config: str, precision: str, root: str, steps: int) -> dict[str, Any]:
    base = rss_mb()
    out: dict[str, Any] = {"rss_after_imports_mb": base}
    if config in CONFIGS:
        from tailgan.train import train

        data, _ = pick_data(root)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = tailgan_config(config, data, root, "cpu", precision=precision, steps=steps, log_every=1,
                                 sample_every=0, ckpt_every=10**9, eval_every=0)  # fmt: skip
            train(cfg, Path(tmp) / "run")
            records = [json.loads(x) for x in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
        out["precision_used"] = next((r.get("precision") for r in records if r.get("event") == "start"), None)
    else:
        from tailgan.classify.train import ClassifyConfig, parse_strategy, train_classifier
        from tailgan.data import ImageSet

        g = torch.Generator().manual_seed(0)
        c = CLASSIFIERS[config]
        x = torch.randint(0, 256, (1024, c, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (1024,), generator=g)
        valid = ImageSet(x[:200], y[:200], [str(i) for i in range(10)])
        cfg = ClassifyConfig(arch=config, batch_size=128, evals=1, precision=precision, compile="off")
        _, _, record = train_classifier(x, y, valid, parse_strategy("vanilla"), cfg, 10, steps, seed=0)
        out["precision_used"] = record["precision"]
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_rss_rise_mb"] = out["peak_rss_mb"] - base
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=default_root())
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--worker", nargs=3, metavar=("CONFIG", "PRECISION", "RESULT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = {**{k: v["mem_steps"] for k, v in CONFIGS.items()}, "lenet5": 20, "resnet32": 5}
    if args.worker:
        config, precision, result = args.worker
        Path(result).write_text(json.dumps(worker(config, precision, args.root, steps[config])))
        return 0
    rows = []
    for config in [*CONFIGS, *CLASSIFIERS]:
        for mode, precision in MODES.items():
            with tempfile.TemporaryDirectory() as tmp:
                res = Path(tmp) / "r.json"
                cmd = [sys.executable, __file__, "--root", args.root, "--threads", str(args.threads),
                       "--worker", config, precision, str(res)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(f"{config} {mode} failed:\n{proc.stderr[-3000:]}")
                rows.append({"config": config, "mode": mode, "steps": steps[config], **json.loads(res.read_text())})
            print(rows[-1], flush=True)
    from tailgan.classify.bench import machine_info

    doc = {"benchmark": STEM, "command": "python benchmarks/peak_memory.py " + " ".join(argv or sys.argv[1:]),
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "machine": machine_info(), "rows": rows}  # fmt: skip
    out = Path(args.out)
    (out / f"{STEM}.json").write_text(json.dumps(doc, indent=2) + "\n")
    by = {(r["config"], r["mode"]): r for r in rows}
    lines = [
        "# Peak host memory: fp32 vs the fast mode (bf16 autocast + channels-last)",
        "",
        f"{doc['date']}, {doc['machine']['cpu']}, torch {doc['machine']['torch']}, {args.threads} thread(s). "
        f"Command: `{doc['command']}`. Fresh process per cell; RSS high-water mark, and its rise over the RSS "
        "after the imports (data + networks + optimizer state + a few steps' activations).",
        "",
        "| configuration | steps | peak RSS fp32 (MB) | peak RSS fast (MB) | rise fp32 (MB) | rise fast (MB) "
        "| fast / fp32 rise |",
        "|---|---|---|---|---|---|---|",
    ]
    for config in [*CONFIGS, *CLASSIFIERS]:
        a, b = by[(config, "fp32")], by[(config, "fast")]
        ra, rb = a["peak_rss_rise_mb"], b["peak_rss_rise_mb"]
        lines.append(
            f"| {config} | {a['steps']} | {a['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} | {ra:.0f} "
            f"| {rb:.0f} ({b['precision_used']}) | {rb / ra:.2f} |"
        )
    (out / f"{STEM}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
