"""Benchmark: the fast path (bf16 autocast + channels-last) vs fp32 for the recipes train_speed.py does not time.

Issue 10 asks for the fast path in every recipe's step; ``train_speed.py`` times ecogan-dcgan, ecogan-biggan
and the classifiers against hand-written loops. This script times the rest through tailgan's own
``Trainer.step`` (one step of the recipe's main phase, whatever it runs), fp32 and ``precision=auto`` built
from the same seed in one process and stepped alternately (A B B A ...), median of the timed steps:

* ``dfg``: Fashion-MNIST 40:1 (``fashion_mnist_dfg40``), LeNet-5 at 32 px, batch 64; one step = 5 critic
  updates + G adversarial + G classification + E/Cl update (+ Cl on fakes every 5th step);
* ``cyclegan-cls`` (alt): a Fashion-MNIST-LT pair (sneaker -> ankle boot) at 32 px, ngf = ndf = 16, batch 8;
  one joint step = a CycleGAN update with the classifier's loss + a classifier update;
* ``stargan-cls`` (alt): Fashion-MNIST-LT, 10 classes at 32 px, batch 16; one joint step likewise.

There is no hand loop for these (their steps are too large to replicate by hand here): the figure is the
speed-up of the switch, not overhead.

    python benchmarks/fast_path_recipes.py --threads 1
    python benchmarks/fast_path_recipes.py --recipes dfg --steps 1 --warmup 1 --out /tmp/fp     # a check

Writes benchmarks/results/fast_path_recipes.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _harness import RESULTS, command, data_root, loadavg, machine, now, time_alternately, write_results

STEM = "fast_path_recipes"
SCRATCH = tempfile.mkdtemp(prefix="fast_path_")  # run folders and the cold compile cache; removed at the end
RECIPES = {
    "dfg": ("dfg", "fashion_mnist_dfg40", ["optim.batch_size=64", "options.source=random"]),
    "cyclegan-cls": ("cyclegan-cls", "fashion_mnist_lt", [
        "data.resolution=32", "optim.batch_size=8", "options.class_a=7", "options.class_b=9", "options.mode=alt",
        "options.gan_warmup=0", "options.cls_warmup=0", "options.ngf=16", "options.ndf=16"]),
    "stargan-cls": ("stargan-cls", "fashion_mnist_lt", [
        "data.resolution=32", "optim.batch_size=16", "options.mode=alt", "options.gan_warmup=0",
        "options.cls_warmup=0"]),
}  # fmt: skip


def build(recipe: str, data_name: str, overrides: list[str], precision: str, root: str, compile: str = "off",
          device: str = "cpu"):  # fmt: skip
    """(Trainer, method) of ``recipe`` as ``tailgan train`` builds it, without run folder callbacks."""
    from tailgan.data import load_data
    from tailgan.engine import build_trainer, make_config

    cfg = make_config(recipe, data=data_name, overrides=[f"data.root={root}", *overrides, f"precision={precision}",
                                                         "log_every=1000", "sample_every=0", f"compile={compile}",
                                                         f"device={device}"],
                      steps=10_000)  # fmt: skip
    run_dir = Path(tempfile.mkdtemp(prefix="run_", dir=SCRATCH))  # a training context (compile applies to it)
    trainer = build_trainer(cfg, load_data(cfg.data), device=device, run_dir=run_dir)
    return trainer, trainer.method


def time_recipe(name: str, root: str, steps: int, warmup: int) -> dict:
    recipe, data_name, overrides = RECIPES[name]
    loops = {p: build(recipe, data_name, overrides, p, root) for p in ("fp32", "auto")}
    if loops["auto"][1].compiled_nets:  # the fast path with its compilable networks compiled
        loops["auto+compile"] = build(recipe, data_name, overrides, "auto", root, compile="on")
    first, first_wall = {}, {}
    for i in range(warmup):
        for p, (trainer, _) in loops.items():
            t0 = time.perf_counter()
            out = trainer.step()
            if i == 0:
                first_wall[p] = time.perf_counter() - t0
                first[p] = {k: float(v) for k, v in out.items()}
    wall = time_alternately({p: trainer.step for p, (trainer, _) in loops.items()}, steps)
    med = {p: statistics.median(v) for p, v in wall.items()}
    policy = loops["auto"][1].precision
    compiled = {}
    if "auto+compile" in med:
        gain = med["auto"] - med["auto+compile"]
        compile_s = first_wall["auto+compile"] - first_wall["auto"]  # the first step compiles
        compiled = {"compile_s": compile_s, "speedup_vs_fast": med["auto"] / med["auto+compile"],
                    "breakeven_steps": compile_s / gain if gain > 0 else None,
                    "compiled_nets": list(loops["auto+compile"][1].compiled_nets)}  # fmt: skip
    return {
        "steps_per_s": {p: 1.0 / m for p, m in med.items()},
        "speedup": med["fp32"] / med["auto"],
        "compiled": compiled,
        "fast_policy": {"name": policy.name, "channels_last": policy.channels_last},
        "first_step_losses": first,
        "timed_steps": steps,
        "wall": wall,
    }


def markdown(doc: dict) -> str:
    m, timed, warmup = doc["machine"], doc["timed_steps"], doc["warmup_steps"]
    lines = [
        "# Fast path vs fp32 for DFG and the joint recipes (tailgan's Trainer.step)", "",
        f"{doc['started']}, {m['cpu']}, {m['nproc']} cores, {m['torch_threads']} thread(s), torch {m['torch']}, load "
        f"average {m['loadavg_start']} at start, {m['loadavg_end']} at the end. Command: `{doc['command']}`.", "",
        "Steps per second of the recipe's main phase, fp32 and fast mode interleaved in one process, median of "
        f"{timed} timed steps each (after {warmup} warm-up steps). Bar (issue 10): 1.5x.", "",
        "Compiled: the fast path with the recipe's compilable networks under `torch.compile` (`compile=on`); "
        "compile time = the first step's extra wall time with an empty compile cache; break-even = compile "
        "time / time won per step.", "",
        "| recipe | data | fp32 steps/s | fast steps/s | speed-up | bar 1.5x | fast + compiled steps/s | vs fast "
        "| compile time | break-even steps |", "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for n, r in doc["rows"].items():
        s, c = r["steps_per_s"], r["compiled"]
        comp = (f"{s['auto+compile']:.3f} | {c['speedup_vs_fast']:.2f}x | {c['compile_s']:.0f} s | "
                f"{c['breakeven_steps']:.0f}" if c and c["breakeven_steps"] else
                (f"{s['auto+compile']:.3f} | {c['speedup_vs_fast']:.2f}x | {c['compile_s']:.0f} s | never" if c
                 else "- | - | - | -"))  # fmt: skip
        lines.append(f"| {n} | {doc['recipes'][n]['data']} | {s['fp32']:.3f} | {s['auto']:.3f} | {r['speedup']:.2f}x | "
                     f"{'met' if r['speedup'] >= 1.5 else 'missed'} | {comp} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=data_root(), help="folder holding FashionMNIST/raw")
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma list of " + ", ".join(RECIPES))
    p.add_argument("--steps", type=int, default=30, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--warm-cache", action="store_true", help="keep TorchInductor's compile cache (default: a cold one)")
    args = p.parse_args(argv)
    if not args.warm_cache:  # a first run's compile time, not a cached graph's (a rerun compiles in seconds)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_cold_", dir=SCRATCH)
    torch.set_num_threads(args.threads)
    names = [n for n in args.recipes.split(",") if n]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; choose from {', '.join(RECIPES)}")
    doc = {"benchmark": STEM, "command": command(__file__, argv), "started": now(), "machine": machine(),
           "recipes": {n: {"recipe": RECIPES[n][0], "data": RECIPES[n][1], "overrides": RECIPES[n][2]} for n in names},
           "timed_steps": args.steps, "warmup_steps": args.warmup, "rows": {}}  # fmt: skip
    for name in names:
        print(f"{name}: {args.warmup} + {args.steps} steps per mode", flush=True)
        r = doc["rows"][name] = time_recipe(name, args.root, args.steps, args.warmup)
        print(f"    fp32 {r['steps_per_s']['fp32']:.3f}/s, fast {r['steps_per_s']['auto']:.3f}/s: {r['speedup']:.2f}x")
    doc["machine"]["loadavg_end"] = loadavg()
    write_results(args.out, STEM, doc, markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
