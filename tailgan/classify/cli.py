"""``tailgan classify``, ``tailgan bench classify`` and ``tailgan augment``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tailgan.classify.augment import augment_folder
from tailgan.classify.bench import classify_seeds, run_bench, write_classify_report
from tailgan.classify.joint import binary_pair
from tailgan.classify.strategies import (
    CLASSICAL_STRATEGIES,
    COMBINABLE,
    STRATEGIES,
    expand_strategies,
    parse_strategy,
)
from tailgan.classify.train import ClassifyConfig
from tailgan.data import LongTailedData, load_data
from tailgan.data.cli import add_data_arguments, data_config_from_args
from tailgan.data.folder import check_output_dir
from tailgan.engine import load_generator
from tailgan.errors import TailganError
from tailgan.outputs import FolderLock, check_not_inside
from tailgan.report.build import build_report


def _add_data_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="data config overrides, as for tailgan train (e.g. resolution=32 channels=1)",
    )


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    d = ClassifyConfig()
    p.add_argument("--data", required=True, help="preset (fashion_mnist_lt, digits_lt, ...) or source name")
    add_data_arguments(p, positional=False)
    _add_data_overrides(p)
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
    p.add_argument("--split-seed", type=int, help="seed of the validation split (default: each run's seed)")
    p.add_argument("--la-tau", type=float, default=d.la_tau, help="la: logit adjustment tau (default 1)")
    p.add_argument(
        "--synthetic",
        default=d.synthetic,
        help="gan/folder: how many synthetic images: 'fill' (to the largest class, default), 'ratio:R' "
        "(to R x the largest), 'target:N' or 'target:N0,N1,...' (to N per class), 'add:N' (N per class)",
    )
    p.add_argument(
        "--synthetic-classes",
        default=d.synthetic_classes,
        help="which classes get synthetic images: 'all' (default), 'below:N' (fewer than N real images) "
        "or class indices such as 5,7,9",
    )
    p.add_argument(
        "--synthetic-weight",
        type=float,
        default=d.synthetic_weight,
        help="a synthetic image counts as this many images in the loss (default 1)",
    )
    p.add_argument(
        "--filter",
        type=float,
        metavar="T",
        help="keep a synthetic image only if a classifier trained on the real training images gives its "
        "class probability >= T (e.g. 0.9); the acceptance rate per class is reported",
    )
    p.add_argument(
        "--reference",
        default=d.reference,
        help=f"strategy of that classifier (default {d.reference}; trained on the real training part only)",
    )
    p.add_argument(
        "--no-guard",
        dest="guard",
        action="store_false",
        help="use synthetic images even when the real-data classifier rarely recognises them",
    )
    p.add_argument(
        "--guard-warn",
        type=float,
        default=d.guard_warn,
        help=f"warn when generated images are recognised less often than this (default {d.guard_warn})",
    )
    p.add_argument(
        "--guard-refuse",
        type=float,
        default=d.guard_refuse,
        help=f"refuse below this recognition rate (default {d.guard_refuse})",
    )
    p.add_argument(
        "--finetune",
        default=d.finetune,
        choices=("none", "all", "head"),
        help="two-stage training: after real + synthetic, fine-tune on real images only (all layers or the head)",
    )
    p.add_argument(
        "--finetune-fraction",
        type=float,
        default=d.finetune_fraction,
        help=f"share of the step budget for the real-only stage (default {d.finetune_fraction})",
    )
    p.add_argument("--finetune-lr", type=float, help="learning rate of the real-only stage (default lr / 10)")
    p.add_argument("--checkpoint", default="last", help="generator checkpoint: last, best or a path")
    p.add_argument("--synthetic-dir", help="folder of synthetic images (strategy 'folder')")
    p.add_argument(
        "--source",
        help="original/finetune/delta/dfg: the source network, a weights file or a dataset to pre-train it on "
        "(e.g. mnist: MNIST stands in for DFG's EMNIST offline; cached under $TAILGAN_CACHE)",
    )
    p.add_argument("--source-root", help="folder holding the source dataset (default: --root)")
    p.add_argument(
        "--precision",
        default=d.precision,
        choices=("auto", "fp32", "bf16"),
        help="auto (default): bf16 autocast + channels-last where the CPU/GPU has native bf16; fp32: exact",
    )
    p.add_argument(
        "--compile",
        default=d.compile,
        choices=("auto", "on", "off"),
        help="torch.compile the classifier's training step; auto (default): on the CPU for resnet32 runs of "
        ">= 2,000 steps (measured 1.41x after ~1 min of compiling; LeNet-5 gets slower), else off",
    )
    p.add_argument(
        "--pair",
        metavar="A,B",
        help="a binary task: keep classes A and B of the data (relabelled 0 and 1), e.g. --pair 7,9",
    )
    p.add_argument("--pair-counts", metavar="NA,NB", help="training images kept of A and B (seeded choice)")
    p.add_argument("--pair-seed", type=int, default=0, help="seed of the --pair-counts choice (default 0)")
    p.add_argument(
        "--joint-gan-steps",
        type=int,
        default=d.joint_gan_steps,
        help=f"cyclegan-aug/alt: CycleGAN updates before the classifier trains (default {d.joint_gan_steps})",
    )
    p.add_argument(
        "--joint-batch-size",
        type=int,
        default=d.joint_batch_size,
        help=f"cyclegan-aug/alt: real images per class in each update (default {d.joint_batch_size})",
    )
    p.add_argument(
        "--joint-cls-batch",
        choices=("classifier", "translator"),
        default=d.joint_cls_batch,
        help="joint strategies: the classifier's update sees --batch-size real images and their translations "
        "(classifier, default) or the translator's --joint-batch-size per class at a scaled-down lr (translator)",
    )
    p.add_argument(
        "--joint-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="cyclegan-aug/alt: a cyclegan-cls override, e.g. options.ngf=16 (repeatable)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise TailganError(f"{flag} {text!r}: give integers separated by commas, e.g. 7,9") from None


def _config(args: argparse.Namespace) -> ClassifyConfig:
    if args.seeds < 1:
        raise TailganError(f"--seeds {args.seeds}: give at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ClassifyConfig(
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
        split_seed=args.split_seed,
        la_tau=args.la_tau,
        synthetic=args.synthetic,
        synthetic_classes=args.synthetic_classes,
        synthetic_weight=args.synthetic_weight,
        filter=args.filter,
        reference=args.reference,
        guard=args.guard,
        guard_warn=args.guard_warn,
        guard_refuse=args.guard_refuse,
        finetune=args.finetune,
        finetune_fraction=args.finetune_fraction,
        finetune_lr=args.finetune_lr,
        precision=args.precision,
        compile=args.compile,
        joint_gan_steps=args.joint_gan_steps,
        joint_batch_size=args.joint_batch_size,
        joint_cls_batch=args.joint_cls_batch,
        joint_options=tuple(args.joint_option),
        source=args.source,
        source_root=args.source_root,
        transfer_dir=str(Path(args.out) / "transfer_runs"),
    )
    cfg.check()
    return cfg


def _load_data(args: argparse.Namespace) -> LongTailedData:
    data = load_data(data_config_from_args(args.data, args, getattr(args, "overrides", None)))
    pair = _int_list(getattr(args, "pair", None), "--pair")
    counts = _int_list(getattr(args, "pair_counts", None), "--pair-counts")
    if counts is not None and pair is None:
        raise TailganError("--pair-counts needs --pair A,B (the two classes it counts)")
    return binary_pair(data, pair, counts, getattr(args, "pair_seed", 0)) if pair is not None else data


def _prepare_out(args: argparse.Namespace, data: LongTailedData, runs: list[str]) -> Path:
    out = Path(args.out)
    user_root = data.config.root if data.config.source in ("folder", "places_lt") else None
    check_not_inside(out, [user_root, *runs, getattr(args, "synthetic_dir", None)])
    check_output_dir(out, args.overwrite)
    args.out_lock = FolderLock(out, "output folder", beside=True)  # one writer; released when the process ends
    return out


def _load_generator(run: str, checkpoint: str, device: str):
    return load_generator(run, checkpoint=checkpoint, device=device)


def cmd_classify(args: argparse.Namespace) -> int:
    strategy = parse_strategy(args.strategy, beta=args.beta)
    cfg = _config(args)
    data = _load_data(args)
    runs = [args.generator] if args.generator else []
    out = _prepare_out(args, data, runs)
    generator = None
    if strategy.synthetic == "gan":
        if not args.generator:
            raise TailganError(f"strategy {strategy.name!r} needs --generator RUN (a tailgan training run folder)")
        generator = _load_generator(args.generator, args.checkpoint, args.device)
    result = classify_seeds(
        data,
        args.strategy,
        range(args.seeds),
        cfg,
        generator=generator,
        synthetic_dir=args.synthetic_dir,
        device=args.device,
        save_models=out,
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
    names = expand_strategies(args.strategies)
    gan_strategies = [s for s in names if parse_strategy(s).synthetic == "gan"]
    strategies = [s for s in names if s not in gan_strategies]
    gen_runs = _parse_generators(args.generator)
    if gan_strategies and not gen_runs:
        raise TailganError(
            f"{', '.join(gan_strategies)} need generators: give --generator [LABEL=]RUN (one row per generator "
            "and gan strategy)"
        )
    cfg = _config(args)
    data = _load_data(args)
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
        gan_strategies=gan_strategies or ["gan"],
        synthetic_dir=args.synthetic_dir,
        device=args.device,
        header=header,
    )
    print(f"wrote {out / 'bench.md'}, {out / 'bench.json'} and {out / 'bench_recall.png'}")
    print(f"report: {build_report([out], out / 'report.html', title='tailgan bench classify', overwrite=True)}")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    check_not_inside(args.out, [args.run])
    with FolderLock(args.out, "output folder", beside=True):
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
        help=f"one of {', '.join(STRATEGIES)}; cbl variants take ':beta' (e.g. cbl:0.99); gan+S and "
        f"folder+S combine synthetic images with S in {', '.join(COMBINABLE)} (e.g. gan+la)",
    )
    p.add_argument("--generator", help="strategies gan, gan+S: a tailgan training run folder")
    _add_training_arguments(p)
    p.set_defaults(func=cmd_classify)

    b = _bench_subparsers(sub).add_parser("classify", help="every strategy x seeds: a table of mean ± std")
    b.add_argument(
        "--strategies",
        default="all",
        help=f"'all' ({', '.join(CLASSICAL_STRATEGIES)}) or a comma-separated list; gan / gan+S entries "
        "give one row per --generator",
    )
    b.add_argument(
        "--generator",
        action="append",
        metavar="[LABEL=]RUN",
        help="add a 'gan' row (and one per gan+S strategy) with this run's generator (repeatable)",
    )
    _add_training_arguments(b)
    b.set_defaults(func=cmd_bench_classify)

    a = sub.add_parser("augment", help="write the long-tailed images plus the synthetic ones that balance them")
    a.add_argument("run", help="a tailgan training run folder")
    a.add_argument("--data", required=True, help="the preset the run was trained on")
    add_data_arguments(a, positional=False)
    _add_data_overrides(a)
    a.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    a.add_argument(
        "--synthetic", default="fill", help="'fill' (every class to the largest), 'ratio:R', 'target:N' or 'add:N'"
    )
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--checkpoint", default="last", help="generator checkpoint: last, best or a path")
    a.add_argument("--device", default="cpu")
    a.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    a.set_defaults(func=cmd_augment)
