"""``tailgan report``: one self-contained HTML page from training runs, classifier benchmarks and evaluations."""

from typing import TYPE_CHECKING

from tailgan.lazy import lazy_names

if TYPE_CHECKING:  # imported on first use (tailgan.lazy): `tailgan SUB --help` needs no torch
    from tailgan.report.build import build_report, render_report
    from tailgan.report.inputs import collect

__all__ = ["build_report", "collect", "render_report"]

__getattr__, __dir__ = lazy_names(__name__)
