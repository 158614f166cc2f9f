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
import dataclasses
import sys
from pathlib import Path

import torch
from _harness import RESULTS, command, data_root

from tailgan.classify.bench import classify_seeds, load_json, run_bench, summarize, write_bench_report
from tailgan.classify.strategies import expand_strategies
from tailgan.classify.train import ClassifyConfig, resolve_steps
from tailgan.data import load_data
from tailgan.data.splits import split_validation

STEM = "classify_fmnist_lt"
UPPER = "upper:"  # rows trained on data the user does not have
UPPER_NOTE = (
    "upper:* rows use data the user does not have: vanilla with the same steps on a class-balanced real set of the "
    "long-tailed set's size (upper:balanced-N) and on the full balanced training set (upper:full-balanced); their "
    "validation split is carved from that set, their tail-3 recall is on the long-tailed set's rarest classes. They "
    "show the headroom of rebalancing and generation, and are never a strategy's competitor."
)
NO_GAN_NOTE = (
    "gan: skipped, no --generator RUN was given (no trained ECOGAN / BAGAN-GP run on fashion_mnist_lt "
    "was available when this table was made)."
)


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise SystemExit(f"{item!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


def _settings(items: list[str]) -> dict:
    """``KEY=VALUE`` items (``--set``, ``--data-set``) as a dict, each value read as YAML."""
    return {k: _value(v) for k, v in map(_pair, items)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=data_root(), help="folder holding FashionMNIST/raw")
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
    p.add_argument("--data", default="fashion_mnist_lt", help="a preset, e.g. digits_lt (the quick table)")
    p.add_argument("--data-set", action="append", default=[], metavar="KEY=VALUE",
                   help="data overrides, e.g. recipe=exp imbalance_factor=100 (the imbalance sweep)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="classifier settings for every row, e.g. augment=none, split_seed=0")  # fmt: skip
    p.add_argument("--add-rows", action="append", default=[], metavar="REPORT.json",
                   help="with --merge: add the rows of another report of the same seeds, settings and split "
                        "(e.g. gan rows run beside the classical ones); their notes come along")  # fmt: skip
    p.add_argument("--upper", action="store_true",
                   help="add the upper-bound rows: the same budget on a class-balanced real set of the same size, "
                        "and on the full balanced training set (data the user does not have)")  # fmt: skip
    p.add_argument("--epochs", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves the other core free)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--stem", default=STEM, help="output file names")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the existing report (same settings) that this run does not redo, e.g. to add "
        "gan rows with --strategies none --generator ...; with nothing to run it re-renders the report",
    )
    return p.parse_args(argv)


def classifier_config(args: argparse.Namespace) -> ClassifyConfig:
    """The settings of every row: ``--set`` items, the budget and the synthetic-data protocol of the gan rows."""
    return ClassifyConfig(
        **_settings(args.set),
        epochs=args.epochs,
        filter=args.filter,
        synthetic=args.synthetic,
        synthetic_weight=args.synthetic_weight,
        finetune=args.finetune,
    )


def add_rows(previous: dict | None, other: dict, path: str) -> dict:
    """``previous`` with the rows of ``other`` appended (rows of the same name replaced) and its row notes."""
    if previous is None:
        raise SystemExit("--add-rows needs --merge and an existing report to add to")
    for key in ("seeds", "validation_split"):
        if previous.get(key) != other.get(key):
            raise SystemExit(f"{path}: its {key} differs ({other.get(key)!r} vs {previous.get(key)!r})")
    names = {r["strategy"] for r in other["results"]}
    previous["results"] = [r for r in previous["results"] if r["strategy"] not in names] + other["results"]
    previous["notes"] = previous.get("notes", []) + [n for n in other.get("notes", []) if n.startswith("gan:")]
    previous["merged_with"] = "; ".join(filter(None, [previous.get("merged_with"), other.get("command")]))
    return previous


def previous_report(args: argparse.Namespace) -> dict | None:
    """The report whose rows this run keeps: the existing one with ``--merge``, with the ``--add-rows`` reports'
    rows (measured by another process with the same settings and splits) added; None to start afresh."""
    report = Path(args.out) / f"{args.stem}.json"
    previous = load_json(report) if args.merge and report.is_file() else None
    for extra in args.add_rows:
        previous = add_rows(previous, load_json(extra), extra)
    return previous


def load_generators(args: argparse.Namespace) -> dict:
    """``gan:LABEL`` -> the generator of each ``--generator LABEL=RUN`` (LABEL defaults to the run folder's name)."""
    if not args.generator:
        return {}
    from tailgan import load_generator

    generators = {}
    for item in args.generator:
        label, sep, run = item.partition("=")
        if not sep:
            label, run = Path(item).name, item
        generators[f"gan:{label}"] = load_generator(run, checkpoint=args.checkpoint, device="cpu")
    return generators


def protocol_notes(augment: str) -> list[str]:
    """The notes of every report, whatever its rows (``augment``: the rows' augmentation recipe)."""
    return [
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
        f"Recipe: augment={augment} (standard: pad-and-random-crop of size // 8 px and a horizontal flip where "
        "the source's classes survive a mirror) on every training batch of every row, synthetic images included; "
        "validation and test images are never augmented.",
        "mixup / cutmix / cmo: batch mixing (alpha 1; CMO pastes a box of a class-balanced second batch into half "
        "of the batches), loss lam L(y_a) + (1 - lam) L(y_b) with the row's loss (cmo+la: logit-adjusted).",
        "crt / tau-norm / lws (+S: on the S backbone; alone: on vanilla): the backbone is the plain row of the same "
        "name, trained once; the second stage works on its penultimate features of the real training part "
        "(crt: a fresh linear head, class-balanced batches, 10 epochs of features; tau-norm: tau chosen on "
        "validation; lws: per-class scales). Their step budget is the backbone's; the head's steps are listed "
        "in each run's second_stage record (a few hundred steps of an 84 x C linear layer, about a second).",
        "feat-calibrate / feat-diffusion (+S): the head re-trained as crt on real + generated penultimate "
        "features of the backbone (fill: every class up to the largest), generated in the power-transformed space "
        "and passed through the prototype filter (kept / down-weighted / dropped per class in each run's record).",
    ]


def report_notes(
    args: argparse.Namespace, cfg: ClassifyConfig, generators: dict, gan_strategies: list[str], previous: dict | None
) -> list[str]:
    """The report's notes: the protocol, each new generator row's run and settings, and the notes of the generator
    rows kept from ``previous`` (they stay with their rows)."""
    notes = protocol_notes(cfg.augment)
    kept_gan = [r["strategy"] for r in (previous or {}).get("results", []) if r.get("generative")]
    kept_gan = [g for g in kept_gan if g not in generators]
    notes += [n for n in (previous or {}).get("notes", []) if any(n.startswith(f"{g}: ") for g in kept_gan)]
    notes += [
        f"{label}: generator of run {item.partition('=')[2] or item} (checkpoint {args.checkpoint}), "
        f"--synthetic {args.synthetic}, rows {', '.join(gan_strategies)}, "
        f"filter {args.filter}, synthetic weight {args.synthetic_weight}, fine-tuning {args.finetune}; the guard "
        "(recognition by a classifier trained on the real training part) is on"
        for label, item in zip(generators, args.generator)
    ]
    if not generators and not kept_gan:
        notes.append(NO_GAN_NOTE)
    return notes


def report_header(
    args: argparse.Namespace, argv: list[str] | None, cfg: ClassifyConfig, n_train: int, steps: int
) -> dict:
    """The header fields this script adds to the report (run_bench adds seeds, settings and the machine)."""
    return {
        "command": command(__file__, argv),
        "budget": (
            f"{cfg.arch}, {args.epochs:g} epochs of the {n_train} real LT training images = {steps} steps for "
            f"every strategy, batch {cfg.batch_size}, SGD lr {cfg.lr}, {args.threads} CPU thread(s)"
        ),
        "data": " ".join([args.data, *args.data_set]),
    }


def upper_bound_data(data, root: str) -> dict:
    """The source's balanced sets beside the long-tailed cut: the same total size, and the full training set."""
    total, k = len(data.train), data.num_classes
    src = data.config.source
    return {
        f"{UPPER}balanced-{total // k * k}": load_data(src, root=root, recipe="counts", counts=[total // k] * k),
        f"{UPPER}full-balanced": load_data(src, root=root),
    }


def add_upper_bounds(rows, data, args, cfg, steps, notes, log) -> None:
    """Train vanilla with the long-tailed rows' step budget on each balanced set; tail-3 recall is taken on the
    long-tailed set's rarest classes; the rows join the report (resumed: rows already there are kept)."""
    doc = load_json(Path(args.out) / f"{args.stem}.json")  # the header run_bench wrote
    header = {k: v for k, v in doc.items() if k not in ("data", "winners", "notes", "results")}

    tail = rows[0]["runs"][0]["tail_classes"] if rows else None
    done = {r["strategy"] for r in rows}
    for label, upper in upper_bound_data(data, args.root).items():
        if label in done:
            continue
        r = classify_seeds(upper, "vanilla", range(args.seeds), dataclasses.replace(cfg, steps=steps), log=log)
        for run in r["runs"]:
            run["tail_classes"] = tail
            run["tail_recall"] = sum(run["recall_per_class"][c] for c in tail) / len(tail)
            run["strategy"] = label
        rows.append({"strategy": label, "runs": r["runs"], "summary": summarize(r["runs"]), "generative": False,
                     "upper_bound": True})  # fmt: skip
        write_bench_report(rows, data, args.out, header, notes + [UPPER_NOTE], args.stem)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_data(args.data, root=args.root, **_settings(args.data_set))
    cfg = classifier_config(args)
    strategies = [] if args.strategies == "none" else expand_strategies(args.strategies)
    gan_strategies = expand_strategies(args.gan_strategies)
    previous = previous_report(args)
    generators = load_generators(args)
    notes = report_notes(args, cfg, generators, gan_strategies, previous)
    n_train = len(split_validation(data.train.labels, cfg.valid_fraction, 0)[0])
    steps = resolve_steps(cfg, n_train)
    header = report_header(args, argv, cfg, n_train, steps)
    log = lambda s: print(s, flush=True)  # noqa: E731
    rows = run_bench(data, strategies, range(args.seeds), cfg, args.out, generators=generators,
                     gan_strategies=gan_strategies, header=header, notes=notes, stem=args.stem, previous=previous,
                     log=log)  # fmt: skip
    if args.upper:
        add_upper_bounds(rows, data, args, cfg, steps, notes, log)
    print(f"wrote {Path(args.out) / (args.stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
