"""``tailgan report PATH... --out report.html``."""

from __future__ import annotations

import argparse


def cmd_report(args: argparse.Namespace) -> int:
    from tailgan.report.build import build_report  # matplotlib and jinja2 load when a report is built

    out = build_report(args.paths, args.out, title=args.title, overwrite=args.overwrite)
    print(f"report written to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report`` to the tailgan command line."""
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page from training runs, classify / bench outputs and evaluations",
        description="Build one HTML file (images embedded, no network needed, printable) from any mix of "
        "training run folders, tailgan classify / bench classify folders and evaluation JSON files. A folder "
        "that is none of these (e.g. a demo folder) is searched one level down.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="run folder, classify / bench folder or eval JSON")
    p.add_argument("--out", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--title", help="page title (default: the inputs' names)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file that is not a tailgan report")
    p.set_defaults(func=cmd_report)
