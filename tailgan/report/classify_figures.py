"""The figures a ``tailgan classify`` / ``tailgan bench classify`` output holds beside its results, as PNG files:
the confusion matrix summed over seeds (``confusion.png``) and per-class recall bars (``<stem>_recall.png``).

Drawn on bare matplotlib ``Figure`` objects (not pyplot), so no backend or global figure registry is involved.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay

from tailgan.io import atomic_write


def _save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Save a figure as PNG through a temp file (tailgan.io), so a crash never leaves half an image."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


MAX_MATRIX_CLASSES = 30  # above this, the figure shows the most-confused block: size and memory stay bounded
MAX_CELL_TEXT = 20  # above this many classes, cells carry no printed value


def most_confused(norm: np.ndarray, k: int) -> np.ndarray:
    """Indices (sorted) of the ``k`` classes with the most confusion mass (their row and column, off-diagonal)."""
    off = norm - np.diag(np.diag(norm))
    return np.sort(np.argsort(-(off.sum(axis=0) + off.sum(axis=1)), kind="stable")[:k])


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Write the confusion matrix, rows normalised to recall, as a PNG (matplotlib, no display needed). Beyond
    ``MAX_MATRIX_CLASSES`` classes only the most-confused block is drawn, so any class count stays small."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    title = title or "confusion matrix (rows: true class, normalised)"
    if len(classes) > MAX_MATRIX_CLASSES:
        keep = most_confused(norm, MAX_MATRIX_CLASSES)
        norm, classes = norm[np.ix_(keep, keep)], [classes[i] for i in keep]
        title += f"\nthe {len(keep)} most-confused of {len(rows)} classes"
    size = max(4.0, 0.55 * len(classes) + 2)
    # a bare Figure (not pyplot): no global backend or figure registry, so nothing to close or leak
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ConfusionMatrixDisplay(norm, display_labels=list(classes)).plot(
        ax=ax, values_format=".2f", cmap="Blues", colorbar=False, xticks_rotation=45,
        include_values=len(classes) <= MAX_CELL_TEXT,
    )  # fmt: skip
    ax.set_title(title)
    _save_figure(fig, path)


def plot_recall_bars(
    recalls: dict[str, Sequence[float]], classes: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Grouped bar chart of per-class recall, one bar colour per strategy, classes on the x axis."""
    names = list(recalls)
    x = np.arange(len(classes))
    width = 0.8 / max(len(names), 1)
    # at most 40 inches wide whatever the class count (a figure's memory grows with its area)
    fig = Figure(figsize=(min(max(6.0, 0.9 * len(classes) + 0.05 * len(classes) * len(names)), 40.0), 4.5))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab20"]
    for i, name in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, recalls[name], width, label=name, color=cmap(i % 20))
    ax.set_xticks(x, list(classes) if len(classes) <= 60 else [""] * len(classes), rotation=45, ha="right")
    ax.set_ylabel("recall (test)")
    ax.set_ylim(0, 1)
    ax.set_title(title or "per-class recall")
    ax.legend(fontsize="small", ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    _save_figure(fig, path)
