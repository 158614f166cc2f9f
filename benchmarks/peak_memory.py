"""Benchmark: peak host memory of training in exact fp32 and in the fast mode (bf16 autocast + channels-last).

For ``ecogan-dcgan`` and ``ecogan-biggan`` (the configurations of ``train_speed.py``: batch 64, 32 px) a fresh
process runs the real ``tailgan.train.train`` for a few G steps; for the classifiers (LeNet-5, ResNet-32,
batch 128, 32 px) a fresh process runs ``tailgan.classify.train.train_classifier`` on random images. Each
process records its RSS after the imports, then its RSS high-water mark (``getrusage``); the rise between the
two is what the data, the networks, the optimizer state and the activations of a step cost.

    python benchmarks/peak_memory.py               # every row, a few minutes on 1 thread
    python benchmarks/peak_memory.py --configs lenet5 --out /tmp/mem     # one row (seconds)

Writes benchmarks/results/peak_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from _harness import (
    GAN_CONFIGS,
    RESULTS,
    command,
    data_root,
    gan_config,
    machine,
    now,
    peak_rss_mb,
    pick_data,
    rss_mb,
    run_worker,
    write_results,
)

STEM = "peak_memory"
CLASSIFIERS = {"lenet5": 1, "resnet32": 3}  # arch: input channels
MODES = {"fp32": "fp32", "fast": "auto"}  # row label: precision setting
STEPS = {**{k: v["mem_steps"] for k, v in GAN_CONFIGS.items()}, "lenet5": 20, "resnet32": 5}


def worker(config: str, precision: str, root: str, steps: int) -> dict[str, Any]:
    base = rss_mb()
    out: dict[str, Any] = {"rss_after_imports_mb": base}
    if config in GAN_CONFIGS:
        from tailgan.train import train

        data, _ = pick_data(root)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = gan_config(config, data, root, "cpu", precision=precision, steps=steps, log_every=1,
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


def markdown(doc: dict) -> str:
    by = {(r["config"], r["mode"]): r for r in doc["rows"]}
    lines = [
        "# Peak host memory: fp32 vs the fast mode (bf16 autocast + channels-last)",
        "",
        f"{doc['date']}, {doc['machine']['cpu']}, torch {doc['machine']['torch']}, "
        f"{doc['machine']['torch_threads']} thread(s). Command: `{doc['command']}`. Fresh process per cell; RSS "
        "high-water mark, and its rise over the RSS after the imports (data + networks + optimizer state + a few "
        "steps' activations).",
        "",
        "| configuration | steps | peak RSS fp32 (MB) | peak RSS fast (MB) | rise fp32 (MB) | rise fast (MB) "
        "| fast / fp32 rise |",
        "|---|---|---|---|---|---|---|",
    ]
    for config in dict.fromkeys(r["config"] for r in doc["rows"]):
        a, b = by[(config, "fp32")], by[(config, "fast")]
        ra, rb = a["peak_rss_rise_mb"], b["peak_rss_rise_mb"]
        lines.append(
            f"| {config} | {a['steps']} | {a['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} | {ra:.0f} "
            f"| {rb:.0f} ({b['precision_used']}) | {rb / ra:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=data_root())
    p.add_argument("--configs", default=",".join(STEPS), help="comma list of " + ", ".join(STEPS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--worker", nargs=2, metavar=("CONFIG", "PRECISION"), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        config, precision = args.worker
        Path(args.result).write_text(json.dumps(worker(config, precision, args.root, STEPS[config])))
        return 0
    configs = [c for c in args.configs.split(",") if c]
    if unknown := [c for c in configs if c not in STEPS]:
        p.error(f"unknown configuration {unknown[0]!r}; choose from {', '.join(STEPS)}")
    rows = []
    for config in configs:
        for mode, precision in MODES.items():
            res = run_worker(__file__, ["--root", args.root, "--worker", config, precision], args.threads)
            rows.append({"config": config, "mode": mode, "steps": STEPS[config], **res})
            print(rows[-1], flush=True)
    doc = {"benchmark": STEM, "command": command(__file__, argv), "date": now(), "machine": machine(), "rows": rows}
    write_results(args.out, STEM, doc, markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
