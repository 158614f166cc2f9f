"""The ``tailgan`` command line. Each feature module adds its sub-commands with ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys

from tailgan import __version__
from tailgan.errors import TailganError

# modules that define register(subparsers); a feature missing from an install is simply not offered
COMMAND_MODULES = [
    "tailgan.data.cli",
    "tailgan.train",
    "tailgan.sample",
    "tailgan.metrics.cli",
    "tailgan.classify.cli",
    "tailgan.demo",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
