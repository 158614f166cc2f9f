"""``tailgan demo``: the README's main job, end to end on the embedded long-tailed digits.

1. builds ``digits_lt`` (scikit-learn's real 8x8 digits cut to a long tail), prints its table, plots it;
2. trains ECOGAN (``ecogan-dcgan``, 32 px, class-balanced sampling) for a few CPU minutes, writing sample grids;
3. evaluates the generator per class against the balanced test set;
4. trains a classifier on the long-tailed data with and without the generated images and prints both ACSAs.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from tailgan.classify.train import train_and_score
from tailgan.data import load_data
from tailgan.data.cli import plot_counts
from tailgan.engine import load_generator
from tailgan.errors import TailganError
from tailgan.metrics import evaluate
from tailgan.metrics.evaluate import format_table
from tailgan.metrics.evaluator import get_evaluator
from tailgan.train import make_config, train

MARKER = ".tailgan-demo"


def prepare_out(out: Path) -> None:
    """Create ``out``; a previous demo folder is replaced, anything else is left alone."""
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            raise TailganError(f"{out} exists and is not a tailgan demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by tailgan demo; replaced by the next demo run\n")


def run_demo(out: Path, steps: int, seed: int = 0, quick: bool = False) -> dict:
    t0 = time.perf_counter()
    prepare_out(out)
    data = load_data("digits_lt")
    print(data.summary())
    plot_counts(data, out / "digits_lt_counts.png", log=True)
    print(f"class histogram: {out / 'digits_lt_counts.png'}\n")

    overrides = ["sampling=balanced", "optim.batch_size=64", "model.conv_dim=32", f"seed={seed}",
                 f"sample_every={max(steps // 4, 1)}", f"ckpt_every={steps}", f"log_every={max(steps // 10, 1)}"]
    if quick:  # for tests: the smallest networks that still run every stage
        overrides += ["optim.batch_size=16", "model.conv_dim=8", "model.embed_dim=16", "optim.d_steps=1"]
    cfg = make_config("ecogan-dcgan", data="digits_lt", overrides=overrides, steps=steps)
    run = out / "ecogan_run"
    print(f"training ECOGAN (ecogan-dcgan, 32 px, balanced sampling) for {steps} generator steps ...")
    train(cfg, run)
    grids = sorted((run / "samples").glob("*.png"))
    print(f"sample grids (one row per class): {grids[-1]} (+{len(grids) - 1} earlier)\n")
    summary = {"run": str(run), "grid": str(grids[-1]), "seconds": None}
    summary.update(_evaluate(run, quick))
    summary.update(_classify(run, seed, quick))
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"demo finished in {summary['seconds']} s; everything is in {out}")
    return summary


def _evaluate(run: Path, quick: bool) -> dict:
    """Per-class generation quality against the balanced test split, with the digits evaluator."""
    g = load_generator(run)
    data = load_data(g.data_config)
    print("evaluating the generator (features of a digits classifier trained once and cached) ...")
    get_evaluator(data.config, log=None)  # trains and caches it on the first demo run
    metrics = ["fid", "kid", "labelacc"] + ([] if quick else ["prdc"])
    result = evaluate(g, data, metrics=metrics, ref="test", kid_subset_size=50)
    print(format_table(result) + "\n")
    return {"fid": result["overall"].get("fid"), "labelacc": result["overall"].get("labelacc")}


def _classify(run: Path, seed: int, quick: bool) -> dict:
    """ACSA of a classifier trained on the long tail, with and without the generated images."""
    g = load_generator(run)
    data = load_data(g.data_config)
    epochs = 2 if quick else 30
    print(f"training LeNet-5 classifiers on digits_lt ({epochs} epochs): real images only, then + generated ...")
    real = train_and_score(data, "vanilla", seed, epochs=epochs)
    try:
        augmented = train_and_score(data, "gan", seed, generator=g, epochs=epochs)
    except TailganError as e:  # the synthetic-data guard refused images a classifier does not recognise
        print(f"ACSA (balanced accuracy on the real, balanced test set): real only {real['acsa']:.3f}; "
              f"the generated images were not used: {e}\n")
        return {"acsa_real": real["acsa"], "acsa_gan": None}
    print(f"ACSA (balanced accuracy on the real, balanced test set): real only {real['acsa']:.3f}, "
          f"with ECOGAN images filling every class to the largest {augmented['acsa']:.3f}\n")
    return {"acsa_real": real["acsa"], "acsa_gan": augmented["acsa"]}


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), args.steps, args.seed, quick=args.quick)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="long-tailed digits: data, ECOGAN training, evaluation, classifier (CPU minutes)")
    p.add_argument("--out", default="tailgan-demo", help="output folder (a previous demo folder is replaced)")
    p.add_argument("--steps", type=int, default=600, help="ECOGAN generator steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny networks and few steps (a smoke test)")
    p.set_defaults(func=cmd_demo)
