"""The ``tailgan`` command line. Each feature module adds its sub-commands with ``register``.

Start-up stays light: ``tailgan --help`` and ``--version`` import no feature module, and ``tailgan SUB ...``
imports only the module that defines SUB (whose heavy imports, torch included, wait for the command to
run; the arguments of the top-level modules ``train``, ``sample``, ``augment`` and ``demo`` are defined here).
``COMMANDS`` lists every sub-command with the help line its module registers (a test keeps them equal).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tailgan.errors import TailganError
from tailgan.version import __version__

# sub-command: (module that registers it, its help line); a feature missing from an install is not offered
COMMANDS = {
    "data": ("tailgan.data.cli", "inspect or export long-tailed datasets"),
    "train": ("tailgan.train", "train a recipe (GAN, ...) on a long-tailed dataset"),
    "sample": ("tailgan.sample", "write generated images of a run as PNGs (OUT/train/cls<c>/...)"),
    "eval": (
        "tailgan.metrics.cli",
        "evaluate a run's generator (FID, KID, IS, PRDC, intra-class FID, MS-SSIM, "
        "label accuracy) or compare two image folders",
    ),
    "evaluator": ("tailgan.metrics.cli", "the classifier behind --feature evaluator"),
    "classify": ("tailgan.classify_cli", "train a classifier on long-tailed data with a rebalancing strategy"),
    "bench": ("tailgan.classify_cli", "benchmarks"),
    "augment": ("tailgan.augment", "write the long-tailed images plus the synthetic ones that balance them"),
    "demo": ("tailgan.demo", "long-tailed digits: data, BAGAN-GP, evaluation, classifiers, report (CPU minutes)"),
    "report": (
        "tailgan.report.cli",
        "one self-contained HTML page from training runs, classify / bench outputs and evaluations",
    ),
    "explain": ("tailgan.explain.cli", "heat maps and t-SNE of what trained classifiers look at"),
}
COMMAND_MODULES = list(dict.fromkeys(module for module, _ in COMMANDS.values()))


def deferred(module: str, function: str):
    """``module.function(args)``, the module imported when the command runs (not when the parser is built)."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), function)(args)

    return run


# the top-level modules' commands: their arguments are here, their code (and heavy imports) in the module
def register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=COMMANDS["train"][1])
    p.add_argument(
        "--method", help="method (ecogan, contragan, reacgan, cgan, acgan, ...) or preset (ecogan-dcgan, ...)"
    )
    p.add_argument("--data", help="dataset preset or source (default: digits_lt)")
    p.add_argument("--root", help="data folder (default: $TAILGAN_DATA)")
    p.add_argument("--steps", type=int, help="steps of the recipe's main phase (generator updates for a GAN)")
    p.add_argument("--out", help="run folder to create")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint")
    p.add_argument(
        "--allow-data-change", action="store_true",
        help="with --resume: continue even though the dataset changed since the run started (counts, images)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice, every core)")
    p.add_argument(
        "overrides", nargs="*", help="key=value config overrides, e.g. optim.batch_size=32 sampling=balanced"
    )
    p.set_defaults(func=deferred("tailgan.train", "cmd_train"))


def register_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help=COMMANDS["sample"][1])
    p.add_argument("run", help="run folder written by tailgan train")
    p.add_argument("--class", dest="cls", type=int, help="class index to generate")
    p.add_argument("--source", help="translating runs: a folder of images to translate (any layout, any size)")
    p.add_argument("--to", type=int, help="translating runs: the class to translate the --source images into")
    p.add_argument("--n", type=int, default=64, help="images to generate for --class")
    p.add_argument("--balance-to", help="'max' (or a number): for every class, as many images as it lacks")
    p.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--checkpoint", default="last", help="last | best | step number | file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=deferred("tailgan.sample", "cmd_sample"))


def register_augment(sub: argparse._SubParsersAction) -> None:
    from tailgan.data.cli import add_data_arguments  # light (no torch); imported only when augment is parsed

    p = sub.add_parser("augment", help=COMMANDS["augment"][1])
    p.add_argument("run", help="a tailgan training run folder")
    p.add_argument("--data", required=True, help="the preset the run was trained on")
    add_data_arguments(p, positional=False)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="data config overrides (e.g. resolution=32)")
    p.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    p.add_argument(
        "--synthetic", default="fill", help="'fill' (every class to the largest), 'ratio:R', 'target:N' or 'add:N'"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="last", help="generator checkpoint: last, best or a path")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=deferred("tailgan.augment", "cmd_augment"))


def register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=COMMANDS["demo"][1])
    p.add_argument("--out", default="tailgan-demo", help="output folder (a previous demo folder is replaced)")
    p.add_argument("--steps", type=int, default=600, help="BAGAN-GP generator steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny networks and few steps (a smoke test)")
    p.set_defaults(func=deferred("tailgan.demo", "cmd_demo"))


FRONT_ENDS = {
    "tailgan.train": register_train,
    "tailgan.sample": register_sample,
    "tailgan.augment": register_augment,
    "tailgan.demo": register_demo,
}


def _register(sub: argparse._SubParsersAction, module_name: str) -> None:
    if module_name in FRONT_ENDS:
        FRONT_ENDS[module_name](sub)
        return
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:  # a real missing dependency inside the module: show it
            raise
        return
    module.register(sub)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every sub-command's arguments (``command=None``), or only ``command``'s (the others are
    listed by name and help line, their modules not imported; ``command=""``: none)."""
    parser = argparse.ArgumentParser(prog="tailgan", description="Long-tailed image data and generative models.")
    parser.add_argument("--version", action="version", version=f"tailgan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = COMMAND_MODULES if command is None else [COMMANDS[command][0]] if command in COMMANDS else []
    for name, (module_name, help_line) in COMMANDS.items():
        if name in sub.choices:
            continue
        if module_name in wanted:
            _register(sub, module_name)  # may add several commands, e.g. eval and evaluator
        if name not in sub.choices and command is not None:
            sub.add_parser(name, help=help_line)
    return parser


def command_of(argv: list[str]) -> str:
    """The sub-command named on the command line ("" when there is none before the first option)."""
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return ""
    return ""


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, taking ``key=value`` overrides in any position (``data info SPEC --root R recipe=exp``).

    argparse binds a trailing ``nargs="*"`` positional once, where it first meets it; overrides after an
    option are then "unrecognized". They are collected here and added to the command's ``overrides``.
    """
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    rest = [a for a in extra if a not in overrides]
    if rest or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(rest or overrides)}")
    if overrides:
        args.overrides = list(args.overrides or []) + overrides
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_of(argv))
    args = parse_args(parser, argv)
    try:
        return int(args.func(args) or 0)
    except TailganError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)  # Interrupted: 128 + the signal, the shell's convention
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
