"""``tailgan classify`` and ``tailgan bench classify``: the command line of :mod:`tailgan.classify`, a top-level
command module as ``tailgan.train`` is.

Every classify setting is a field of :class:`tailgan.classify.runconfig.ClassifyRunConfig`, settable as
``key=value`` in any position (data fields as ``data.key=value``) or from ``--config FILE.yaml``; the flags
below are shorthands that map onto fields of the same name. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailgan.classify.config import RunFields
from tailgan.data.cli import add_data_arguments
from tailgan.errors import TailganError
from tailgan.outputs import claim_output

if TYPE_CHECKING:
    from tailgan.classify.runconfig import ClassifyRunConfig
    from tailgan.data import LongTailedData

# the flags kept for what people type daily; each sets the config field of its name (--batch-size: batch_size)
FLAG_FIELDS = (
    "seeds", "arch", "epochs", "steps", "batch_size", "optimizer", "lr", "weight_decay", "beta", "valid_fraction",
    "select", "split_seed", "la_tau", "synthetic", "synthetic_classes", "synthetic_weight", "filter", "reference",
    "guard_warn", "guard_refuse", "finetune", "finetune_fraction", "finetune_lr", "precision", "compile", "source",
    "source_root", "joint_gan_steps", "joint_batch_size", "joint_cls_batch", "checkpoint", "synthetic_dir",
    "pair_seed", "device",
)  # fmt: skip


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give integers separated by commas, e.g. 7,9") from None


def _flag(p: argparse.ArgumentParser, name: str) -> None:
    """``--name`` for config field ``name``, its type and choices read from the dataclass."""
    hint = typing.get_type_hints(RunFields)[name]
    default = next(f.default for f in dataclasses.fields(RunFields) if f.name == name)
    if typing.get_origin(hint) is typing.Literal:
        kind: dict[str, Any] = {"choices": typing.get_args(hint)}
    else:  # int, float, str, or one of them | None
        inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kind = {"type": inner[0]} if inner[0] in (int, float, str) else {}
    choices = f"; one of {', '.join(kind['choices'])}" if "choices" in kind else ""
    p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS, metavar=name.upper(),
                   help=f"config key {name} (default {default}{choices})", **kind)  # fmt: skip


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="preset (fashion_mnist_lt, digits_lt, ...) or source name")
    add_data_arguments(p, positional=False)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="any config key (focal_gamma=2, optimizer=adam), data keys as data.KEY (data.resolution=16)")
    p.add_argument("--config", metavar="FILE.yaml", help="a config file (e.g. an earlier output's config.yaml)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--resume", action="store_true", help="continue the unfinished output --out (finished seeds kept)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    for name in FLAG_FIELDS:
        _flag(p, name)
    p.add_argument("--no-guard", dest="guard", action="store_false", default=argparse.SUPPRESS,
                   help="use synthetic images even when the real-data classifier rarely recognises them")
    p.add_argument("--pair", type=_int_list, default=argparse.SUPPRESS, metavar="A,B",
                   help="a binary task: keep classes A and B (relabelled 0 and 1)")
    p.add_argument("--pair-counts", dest="pair_counts", type=_int_list, default=argparse.SUPPRESS,
                   metavar="NA,NB", help="training images kept of A and B (seeded choice)")
    p.add_argument("--joint-option", dest="joint_options", action="append", default=argparse.SUPPRESS,
                   metavar="KEY=VALUE", help="cyclegan-/stargan-*: a recipe override, e.g. options.ngf=16")
    p.add_argument("--generator", action="append", default=argparse.SUPPRESS, metavar="[LABEL=]RUN",
                   help="gan strategies: a tailgan training run folder (bench: repeatable, one row each)")  # fmt: skip


def resolve_config(args: argparse.Namespace, command: str) -> ClassifyRunConfig:
    """The run config of ``args``; with ``--resume``, OUT/config.yaml is the base and nothing may change."""
    from tailgan.classify.runconfig import make_classify_config, read_config

    config_file = args.config
    if args.resume and config_file is None:
        if not (Path(args.out) / "config.yaml").is_file():
            raise TailganError(f"--resume: {args.out} holds no config.yaml; it is not a classify output to continue")
        config_file = str(Path(args.out) / "config.yaml")
    names = (*FLAG_FIELDS, "strategy", "guard", "pair", "pair_counts", "joint_options", "generator")
    flags = {k: getattr(args, k) for k in names if hasattr(args, k)}
    cfg = make_classify_config(command, config_file, args.data, args.root, args.overrides,
                               download=args.download, skip_bad=args.skip_bad, **flags)  # fmt: skip
    cfg.transfer_dir = str(Path(args.out) / "transfer_runs")
    if args.resume:
        old = read_config(args.out)
        changed = [f.name for f in dataclasses.fields(cfg) if f.name not in ("seeds", "device")
                   and getattr(old, f.name) != getattr(cfg, f.name)]  # fmt: skip
        if changed:
            raise TailganError(f"--resume: {', '.join(changed)} differ from {args.out}/config.yaml; leave them "
                               "as they were or write to a new --out")  # fmt: skip
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return cfg


def _load_run_data(cfg: ClassifyRunConfig) -> LongTailedData:
    from tailgan.baselines.joint import binary_pair
    from tailgan.data import load_data

    data = load_data(cfg.data)
    if cfg.pair_counts is not None and cfg.pair is None:
        raise TailganError("pair_counts (--pair-counts) needs pair=[A,B] (--pair A,B: the two classes it counts)")
    return binary_pair(data, cfg.pair, cfg.pair_counts, cfg.pair_seed) if cfg.pair is not None else data


def _prepare_out(args: argparse.Namespace, data: LongTailedData, runs: list[str]) -> Path:
    """The one output check (tailgan.outputs.claim_output) and lock of a classify / bench output; the lock is
    released when the process ends, and ``args.out_lock.finish()`` marks the output complete."""
    out = Path(args.out)
    user_root = data.config.root if data.config.source in ("folder", "places_lt") else None
    resume = bool(getattr(args, "resume", False))
    kind = "bench" if getattr(args, "command", None) == "bench" else "classify"
    protected = [user_root, *runs, getattr(args, "synthetic_dir", None)]
    args.out_lock = claim_output(out, kind, args.overwrite and not resume, protected, resume=resume)
    return out


def _start_output(args: argparse.Namespace, cfg: ClassifyRunConfig, data: LongTailedData, runs: list[str]) -> Path:
    """Check and lock --out (``_prepare_out``; --resume writes into its own output), then write config.yaml."""
    from tailgan.classify.runconfig import write_config

    args.synthetic_dir = cfg.synthetic_dir
    out = _prepare_out(args, data, runs)
    write_config(cfg, out)
    return out


def _load_generator(run: str, checkpoint: str, device: str):
    from tailgan.engine import load_generator

    return load_generator(run, checkpoint=checkpoint, device=device)


def _finished_runs(out: Path, resume: bool, seeds: range) -> list[dict]:
    """The seeds an unfinished output already holds (``--resume``), in seed order."""
    path = out / "metrics.json"
    if not resume or not path.is_file():
        return []
    return [r for r in json.loads(path.read_text()).get("runs", []) if r.get("seed") in seeds]


def cmd_classify(args: argparse.Namespace) -> int:
    from tailgan.classify.bench import classify_seeds
    from tailgan.classify.runconfig import reproduce_command
    from tailgan.classify.strategies import parse_strategy
    from tailgan.report.classify_tables import write_classify_report

    cfg = resolve_config(args, "classify")
    if cfg.strategy == "all" or "," in cfg.strategy:
        raise TailganError(f"classify runs one strategy (got {cfg.strategy!r}); give --strategy NAME, or use "
                           "tailgan bench classify for several")  # fmt: skip
    strategy = parse_strategy(cfg.strategy, beta=cfg.beta)
    if len(cfg.generator) > 1:
        raise TailganError("classify takes one --generator RUN; tailgan bench classify compares several")
    run = cfg.generator[0].partition("=")[2] or cfg.generator[0] if cfg.generator else None
    data = _load_run_data(cfg)
    out = _start_output(args, cfg, data, [run] if run else [])
    generator = None
    if strategy.synthetic == "gan":
        if not run:
            raise TailganError(f"strategy {strategy.name!r} needs --generator RUN (a tailgan training run folder)")
        generator = _load_generator(run, cfg.checkpoint, cfg.device)
    seeds = range(cfg.first_seed, cfg.first_seed + cfg.seeds)
    extra = {"generator": run, "checkpoint": cfg.checkpoint} if generator is not None else {}
    extra["reproduce"] = reproduce_command(cfg)
    result = classify_seeds(
        data, strategy, seeds, cfg, generator=generator, synthetic_dir=cfg.synthetic_dir, device=cfg.device,
        save_models=out, done=_finished_runs(out, args.resume, seeds),
        on_seed=lambda partial: write_classify_report(partial, data, out, {**extra, "complete": False}, plot=False),
    )  # fmt: skip
    path = write_classify_report(result, data, out, {**extra, "complete": True})
    s = result["summary"]
    print(
        f"{result['strategy']}: ACSA {s['acsa']['mean']:.4f} ± {s['acsa']['std']:.4f}, "
        f"macro-F1 {s['macro_f1']['mean']:.4f} ± {s['macro_f1']['std']:.4f} over {cfg.seeds} seed(s)"
    )
    args.out_lock.finish()
    print(f"wrote {path}, {out / 'config.yaml'} and {out / 'confusion.png'}")
    print(f"reproduce: {extra['reproduce']}")
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
    from tailgan.classify.bench import load_json, run_bench
    from tailgan.classify.strategies import expand_strategies, parse_strategy
    from tailgan.report.build import build_report

    cfg = resolve_config(args, "bench classify")
    names = expand_strategies(cfg.strategy)
    gan_strategies = [s for s in names if parse_strategy(s).synthetic == "gan"]
    strategies = [s for s in names if s not in gan_strategies]
    gen_runs = _parse_generators(cfg.generator)
    if gan_strategies and not gen_runs:
        raise TailganError(
            f"{', '.join(gan_strategies)} need generators: give --generator [LABEL=]RUN (one row per generator "
            "and gan strategy)"
        )
    data = _load_run_data(cfg)
    out = _start_output(args, cfg, data, list(gen_runs.values()))
    previous = load_json(out / "bench.json") if args.resume and (out / "bench.json").is_file() else None
    generators = {label: _load_generator(run, cfg.checkpoint, cfg.device) for label, run in gen_runs.items()}
    header = {"command": "tailgan bench classify", "data": cfg.data.preset or cfg.data.source,
              "generators": gen_runs or "none"}  # fmt: skip
    run_bench(
        data, strategies, range(cfg.first_seed, cfg.first_seed + cfg.seeds), cfg, out, generators=generators,
        gan_strategies=gan_strategies or ["gan"], synthetic_dir=cfg.synthetic_dir, device=cfg.device, header=header,
        previous=previous, resume=args.resume, run_config=cfg,
    )  # fmt: skip
    print(f"wrote {out / 'bench.md'}, {out / 'bench.json'}, {out / 'config.yaml'} and {out / 'bench_recall.png'}")
    print(f"report: {build_report([out], out / 'report.html', title='tailgan bench classify', overwrite=True)}")
    args.out_lock.finish()
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
    """Add ``classify`` and ``bench classify`` to the tailgan command line."""
    p = sub.add_parser("classify", help="train a classifier on long-tailed data with a rebalancing strategy")
    p.add_argument("--strategy", default=argparse.SUPPRESS,
                   help="vanilla, ts, cs, us, os, us+cs, os+cs, smote, cbl[:beta], cbl-sigmoid, cbl-focal, focal, "
                   "ldam-drw, la, la-posthoc, balanced-softmax, ce-drw; gan+S / folder+S (e.g. gan+la); "
                   "cyclegan-aug/alt, stargan-aug/alt; original, finetune, delta, dfg")  # fmt: skip
    _add_arguments(p)
    p.set_defaults(func=cmd_classify)

    b = _bench_subparsers(sub).add_parser("classify", help="every strategy x seeds: a table of mean ± std")
    b.add_argument("--strategies", dest="strategy", default=argparse.SUPPRESS,
                   help="'all' (the classical strategies, default) or a comma-separated list; gan / gan+S entries "
                   "give one row per --generator")  # fmt: skip
    _add_arguments(b)
    b.set_defaults(func=cmd_bench_classify)
