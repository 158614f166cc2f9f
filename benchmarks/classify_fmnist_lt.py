"""Benchmark: every rebalancing strategy on Fashion-MNIST-LT (ECOGAN's 6000, 100, 200, ..., 900), 3 seeds.

Budget (CPU): LeNet-5 on the native 28 x 28 images (resized to 32 x 32 inside the net), batch 128,
SGD (Nesterov momentum 0.9, lr 0.05, weight decay 5e-4, 5 % warm-up then cosine), 30 epochs of the
real long-tailed training part (~90 % of 10,500 images) = the same 2,215 steps for every strategy,
one CPU thread. Model selection on a stratified 10 % validation split of the long-tailed training
data (10 evaluations); the test set is the untouched, balanced official test split (1,000 per class).

Strategies ("all"): vanilla, ts, cs, us, os, us+cs, os+cs, smote, cbl, cbl-sigmoid, cbl-focal, focal,
ldam-drw, la, la-posthoc (tau chosen on the validation split), balanced-softmax, ce-drw.

``--generator LABEL=RUN`` (repeatable) adds a ``gan`` row per trained tailgan run (ECOGAN, BAGAN-GP,
...): by default each class is filled up to the largest with generated images (``--gan-strategies
gan,gan+la,...`` adds one row per combination; ``--synthetic``, ``--filter``, ``--synthetic-weight``,
``--finetune`` set the synthetic-data protocol, e.g. the one ``synthetic_protocol.py`` chose on validation).
Without it the ``gan`` rows are skipped and the report says so.

    python benchmarks/classify_fmnist_lt.py                    # classical strategies, ~55 min on 1 core
    python benchmarks/classify_fmnist_lt.py --strategies none --generator ecogan=runs/ecogan_fmnist

Writes benchmarks/results/classify_fmnist_lt.{json,md} and classify_fmnist_lt_recall.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tailgan.classify.bench import run_bench  # noqa: E402
from tailgan.classify.strategies import expand_strategies  # noqa: E402
from tailgan.classify.train import ClassifyConfig, resolve_steps  # noqa: E402
from tailgan.data import load_data  # noqa: E402
from tailgan.data.splits import split_validation  # noqa: E402

STEM = "classify_fmnist_lt"


def default_root() -> str:
    return os.environ.get("TAILGAN_DATA") or str(REPO.parent / "shared" / "data")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=default_root(), help="folder holding FashionMNIST/raw")
    p.add_argument("--strategies", default="all", help="'all', 'none' (generators only) or a comma list")
    p.add_argument("--generator", action="append", default=[], metavar="LABEL=RUN", help="add a gan row")
    p.add_argument("--checkpoint", default="last")
    p.add_argument(
        "--gan-strategies", default="gan", help="rows per generator: a comma list of gan, gan+la, gan+cbl, ..."
    )
    p.add_argument("--filter", type=float, help="gan rows: keep images the real-data classifier gives p >= T")
    p.add_argument("--synthetic", default="fill", help="gan rows: how many (fill, ratio:R, target:N, add:N)")
    p.add_argument("--synthetic-weight", type=float, default=1.0, help="gan rows: weight of synthetic images")
    p.add_argument("--finetune", default="none", choices=("none", "all", "head"), help="gan rows: two-stage")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves the other core free)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--stem", default=STEM, help="output file names")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the existing report (same settings) that this run does not redo, e.g. to add "
        "gan rows with --strategies none --generator ...; with nothing to run it re-renders the report",
    )
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = load_data("fashion_mnist_lt", root=args.root)
    cfg = ClassifyConfig(
        arch="lenet5",
        epochs=args.epochs,
        filter=args.filter,
        synthetic=args.synthetic,
        synthetic_weight=args.synthetic_weight,
        finetune=args.finetune,
    )
    strategies = [] if args.strategies == "none" else expand_strategies(args.strategies)
    gan_strategies = expand_strategies(args.gan_strategies)

    previous = None
    report = Path(args.out) / f"{args.stem}.json"
    if args.merge and report.is_file():
        previous = json.loads(report.read_text())
    notes = [
        "Protocol: model selection on a validation split carved from the long-tailed training data; "
        "the seeds' code selected on the test set, so its numbers are optimistic and not comparable.",
        "The test set is balanced (1,000 images per class), so accuracy equals ACSA here.",
        "us+cs / os+cs resample half-way (geometric mean of each count and the balanced count) and weight the "
        "loss by inverse frequency of the resampled counts.",
        "la: logit-adjusted loss (Menon et al. 2021, tau 1); la-posthoc: a plain model predicting with "
        "argmax(logits - tau log prior), tau from {0, 0.25, ..., 2} chosen on the validation split; "
        "balanced-softmax: Ren et al. 2020; ce-drw: cross-entropy, class-balanced weights (beta 0.9999) "
        "from 80 % of training, like ldam-drw.",
        "folder: not run here (it scores a folder of synthetic images made elsewhere; `tailgan augment RUN` "
        "writes one from the same generators the gan rows use).",
    ]
    generators = {}
    if args.generator:
        from tailgan import load_generator

        for item in args.generator:
            label, sep, run = item.partition("=")
            if not sep:
                label, run = Path(item).name, item
            generators[f"gan:{label}"] = load_generator(run, checkpoint=args.checkpoint, device="cpu")
    kept_gan = [r["strategy"] for r in (previous or {}).get("results", []) if r.get("generative")]
    kept_gan = [g for g in kept_gan if g not in generators]
    # notes describing generator rows kept from the earlier report stay with them
    notes += [n for n in (previous or {}).get("notes", []) if any(n.startswith(f"{g}: ") for g in kept_gan)]
    notes += [
        f"{label}: generator of run {item.partition('=')[2] or item} (checkpoint {args.checkpoint}), "
        f"--synthetic {args.synthetic}, rows {', '.join(gan_strategies)}, "
        f"filter {args.filter}, synthetic weight {args.synthetic_weight}, fine-tuning {args.finetune}; the guard "
        "(recognition by a classifier trained on the real training part) is on"
        for label, item in zip(generators, args.generator)
    ]
    if not generators and not kept_gan:
        notes.append(
            "gan: skipped, no --generator RUN was given (no trained ECOGAN / BAGAN-GP run on fashion_mnist_lt "
            "was available when this table was made)."
        )
    n_train = len(split_validation(data.train.labels, cfg.valid_fraction, 0)[0])
    steps = resolve_steps(cfg, n_train)
    header = {
        "command": "python benchmarks/" + Path(__file__).name + " " + " ".join(argv or sys.argv[1:]),
        "budget": (
            f"LeNet-5, {args.epochs:g} epochs of the {n_train} real LT training images = {steps} steps for "
            f"every strategy, batch {cfg.batch_size}, SGD lr {cfg.lr}, {args.threads} CPU thread(s)"
        ),
        "data": "fashion_mnist_lt",
    }
    run_bench(
        data,
        strategies,
        range(args.seeds),
        cfg,
        args.out,
        generators=generators,
        gan_strategies=gan_strategies,
        header=header,
        notes=notes,
        stem=args.stem,
        previous=previous,
        log=lambda s: print(s, flush=True),
    )
    print(f"wrote {Path(args.out) / (args.stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
