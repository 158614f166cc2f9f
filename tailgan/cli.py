"""The ``tailgan`` command line. Each feature module adds its sub-commands with ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys

from tailgan.errors import TailganError
from tailgan.version import __version__

# modules that define register(subparsers); a feature missing from an install is simply not offered
COMMAND_MODULES = [
    "tailgan.data.cli",
    "tailgan.train",
    "tailgan.sample",
    "tailgan.metrics.cli",
    "tailgan.classify.cli",
    "tailgan.demo",
    "tailgan.report.cli",
    "tailgan.explain.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailgan", description="Long-tailed image data and generative models.")
    parser.add_argument("--version", action="version", version=f"tailgan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # a real missing dependency inside the module: show it
                raise
            continue
        module.register(sub)
    return parser


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
    parser = build_parser()
    args = parse_args(parser, argv)
    try:
        return int(args.func(args) or 0)
    except TailganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
