"""``tailgan classify``, ``tailgan bench classify`` and ``tailgan augment``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tailgan.classify.strategies import CLASSICAL_STRATEGIES, STRATEGIES, expand_strategies, parse_strategy
from tailgan.errors import TailganError


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    from tailgan.classify.train import ClassifyConfig
    from tailgan.data.cli import add_data_arguments

    d = ClassifyConfig()
    p.add_argument("--data", required=True, help="preset (fashion_mnist_lt, digits_lt, ...) or source name")
    add_data_arguments(p, positional=False)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. N-1); default 3")
    p.add_argument("--arch", default=d.arch, choices=("lenet5", "resnet32", "resnet18"))
    p.add_argument(
        "--epochs",
        type=float,
        default=d.epochs,
        help=f"passes over the real long-tailed training part (all strategies alike); default {d.epochs:g}",
    )
    p.add_argument("--steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--optimizer", default=d.optimizer, choices=("sgd", "adam"))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--beta", type=float, default=d.beta, help="class-balanced loss beta (default 0.9999)")
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=d.valid_fraction,
        help="share of each class held out from training for model selection",
    )
    p.add_argument(
        "--select",
        default=d.select,
        choices=("valid", "last"),
        help="keep the best-on-validation checkpoint (default) or the last one",
    )
    p.add_argument("--synthetic", default=d.synthetic, help="gan/folder: 'fill' or 'ratio:R' (default fill)")
    p.add_argument("--checkpoint", default="last", help="generator checkpoint: last, best or a path")
    p.add_argument("--synthetic-dir", help="folder of synthetic images (strategy 'folder')")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")


def _config(args: argparse.Namespace):
    from tailgan.classify.train import ClassifyConfig

    if args.seeds < 1:
        raise TailganError(f"--seeds {args.seeds}: give at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    return ClassifyConfig(
        arch=args.arch,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        beta=args.beta,
        valid_fraction=args.valid_fraction,
        select=args.select,
        synthetic=args.synthetic,
    )


def _load_data(args: argparse.Namespace):
    from tailgan.data import load_data
    from tailgan.data.cli import data_config_from_args

    return load_data(data_config_from_args(args.data, args))


def _prepare_out(args: argparse.Namespace, data, runs: list[str]) -> Path:
    from tailgan.classify.augment import check_not_protected
    from tailgan.data.folder import check_output_dir

    out = Path(args.out)
    user_root = data.config.root if data.config.source in ("folder", "places_lt") else None
    check_not_protected(out, [user_root, *runs, getattr(args, "synthetic_dir", None)])
    check_output_dir(out, args.overwrite)
    return out


def _load_generator(run: str, checkpoint: str, device: str):
    from tailgan import load_generator

    return load_generator(run, checkpoint=checkpoint, device=device)


def cmd_classify(args: argparse.Namespace) -> int:
    from tailgan.classify.bench import classify_seeds, write_classify_report

    strategy = parse_strategy(args.strategy, beta=args.beta)
    cfg = _config(args)
    data = _load_data(args)
    runs = [args.generator] if args.generator else []
    out = _prepare_out(args, data, runs)
    generator = None
    if strategy.synthetic == "gan":
        if not args.generator:
            raise TailganError("strategy 'gan' needs --generator RUN (a tailgan training run folder)")
        generator = _load_generator(args.generator, args.checkpoint, args.device)
    result = classify_seeds(
        data,
        args.strategy,
        range(args.seeds),
        cfg,
        generator=generator,
        synthetic_dir=args.synthetic_dir,
        device=args.device,
    )
    extra = {"generator": args.generator, "checkpoint": args.checkpoint} if generator is not None else {}
    path = write_classify_report(result, data, out, extra)
    s = result["summary"]
    print(
        f"{result['strategy']}: ACSA {s['acsa']['mean']:.4f} ± {s['acsa']['std']:.4f}, "
        f"macro-F1 {s['macro_f1']['mean']:.4f} ± {s['macro_f1']['std']:.4f} over {args.seeds} seed(s)"
    )
    print(f"wrote {path} and {out / 'confusion.png'}")
    return 0


def _parse_generators(items: list[str] | None) -> dict[str, str]:
    """``RUN`` or ``LABEL=RUN`` -> {label: run}; the default label is gan:<run folder name>."""
    gens: dict[str, str] = {}
    for item in items or []:
        label, sep, run = item.partition("=")
        if not sep:
            label, run = f"gan:{Path(item).name}", item
        if label in gens:
            raise TailganError(f"generator label {label!r} is given twice; name them LABEL=RUN")
        gens[label] = run
    return gens


def cmd_bench_classify(args: argparse.Namespace) -> int:
    from tailgan.classify.bench import run_bench

    strategies = expand_strategies(args.strategies)
    if "gan" in strategies:
        raise TailganError("in bench, give generators with --generator RUN (each adds a 'gan' row), not strategy gan")
    cfg = _config(args)
    data = _load_data(args)
    gen_runs = _parse_generators(args.generator)
    out = _prepare_out(args, data, list(gen_runs.values()))
    generators = {label: _load_generator(run, args.checkpoint, args.device) for label, run in gen_runs.items()}
    header = {"command": "tailgan bench classify", "data": args.data, "generators": gen_runs or "none"}
    run_bench(
        data,
        strategies,
        range(args.seeds),
        cfg,
        out,
        generators=generators,
        synthetic_dir=args.synthetic_dir,
        device=args.device,
        header=header,
    )
    print(f"wrote {out / 'bench.md'}, {out / 'bench.json'} and {out / 'bench_recall.png'}")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from tailgan.classify.augment import augment_folder

    data = _load_data(args)
    generator = _load_generator(args.run, args.checkpoint, args.device)
    manifest = augment_folder(
        generator,
        data,
        args.out,
        synthetic=args.synthetic,
        seed=args.seed,
        overwrite=args.overwrite,
        protected=[args.run],
    )
    n_syn = sum(manifest["synthetic_counts"])
    print(
        f"wrote {sum(manifest['real_counts'])} real and {n_syn} synthetic training images"
        f" (+ {sum(manifest['test_counts'])} test images) to {args.out}"
    )
    return 0


def _bench_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-commands of ``tailgan bench``, creating ``bench`` unless another module already did."""
    bench = sub.choices.get("bench")
    if bench is None:
        bench = sub.add_parser("bench", help="benchmarks")
    for action in bench._actions:  # argparse has no public accessor for an existing subparsers action
        if isinstance(action, argparse._SubParsersAction):
            return action
    return bench.add_subparsers(dest="bench_command", required=True)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``classify``, ``bench classify`` and ``augment`` to the tailgan command line."""
    p = sub.add_parser("classify", help="train a classifier on long-tailed data with a rebalancing strategy")
    p.add_argument(
        "--strategy",
        required=True,
        help=f"one of {', '.join(STRATEGIES)}; cbl variants take ':beta' (e.g. cbl:0.99)",
    )
    p.add_argument("--generator", help="strategy gan: a tailgan training run folder")
    _add_training_arguments(p)
    p.set_defaults(func=cmd_classify)

    b = _bench_subparsers(sub).add_parser("classify", help="every strategy x seeds: a table of mean ± std")
    b.add_argument(
        "--strategies",
        default="all",
        help=f"'all' ({', '.join(CLASSICAL_STRATEGIES)}) or a comma-separated list",
    )
    b.add_argument(
        "--generator",
        action="append",
        metavar="[LABEL=]RUN",
        help="add a 'gan' row with this run's generator (repeatable)",
    )
    _add_training_arguments(b)
    b.set_defaults(func=cmd_bench_classify)

    a = sub.add_parser("augment", help="write the long-tailed images plus the synthetic ones that balance them")
    a.add_argument("run", help="a tailgan training run folder")
    a.add_argument("--data", required=True, help="the preset the run was trained on")
    from tailgan.data.cli import add_data_arguments

    add_data_arguments(a, positional=False)
    a.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    a.add_argument("--synthetic", default="fill", help="'fill' (every class to the largest) or 'ratio:R'")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--checkpoint", default="last", help="generator checkpoint: last, best or a path")
    a.add_argument("--device", default="cpu")
    a.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    a.set_defaults(func=cmd_augment)
