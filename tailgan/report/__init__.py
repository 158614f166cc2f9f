"""``tailgan report``: one self-contained HTML page from training runs, classifier benchmarks and evaluations."""

from tailgan.report.build import build_report, render_report
from tailgan.report.inputs import collect

__all__ = ["build_report", "collect", "render_report"]
