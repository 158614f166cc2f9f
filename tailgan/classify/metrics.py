"""Per-class classification metrics (scikit-learn) and their plots.

ACSA, the "average class-specific accuracy" of the seeds, is (1/K) sum_k correct_k / N_k, i.e.
scikit-learn's balanced accuracy (the mean per-class recall): :func:`tailgan.scores.balanced_accuracy`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

from tailgan.io import atomic_write
from tailgan.scores import balanced_accuracy


def _np(x: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def classification_metrics(
    y_true: torch.Tensor | np.ndarray,
    y_pred: torch.Tensor | np.ndarray,
    probs: torch.Tensor | np.ndarray | None,
    num_classes: int,
    minority_class: int | None = None,
) -> dict:
    """Accuracy, ACSA, macro-F1, per-class F1 and recall, macro one-vs-rest AUC and the confusion matrix.

    ``probs`` (N, C) rows must sum to 1 (needed for the multi-class AUC); ``None`` skips the AUC.
    The AUC is ``None`` when it is undefined (a class absent from ``y_true``). For two classes the
    result also holds ``minority_f1``, the F1 of ``minority_class`` (the rarer training class).
    Returns plain Python numbers and lists (JSON-ready).
    """
    y_true, y_pred = _np(y_true).astype(np.int64), _np(y_pred).astype(np.int64)
    labels = list(range(num_classes))
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "acsa": balanced_accuracy(y_true, y_pred),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_per_class": f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0).tolist(),
        "recall_per_class": recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0).tolist(),
        "auc_ovr_macro": None,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if probs is not None and len(np.unique(y_true)) == num_classes:
        p = _np(probs).astype(np.float64)
        if num_classes == 2:
            out["auc_ovr_macro"] = float(roc_auc_score(y_true, p[:, 1]))
        else:
            out["auc_ovr_macro"] = float(roc_auc_score(y_true, p, multi_class="ovr", average="macro", labels=labels))
    if num_classes == 2:
        if minority_class is None:
            raise ValueError("a binary task needs minority_class (the rarer training class) for minority_f1")
        out["minority_f1"] = float(
            f1_score(y_true, y_pred, labels=labels, pos_label=minority_class, average="binary", zero_division=0)
        )
    return out


def tail_classes(counts: Sequence[int], k: int = 3) -> list[int]:
    """The ``min(k, C - 1)`` classes with the fewest training images (ties: lower class index first)."""
    return sorted(range(len(counts)), key=lambda c: (counts[c], c))[: min(k, len(counts) - 1)]


def score_test_set(
    labels: torch.Tensor, probs: torch.Tensor, num_classes: int, train_counts: Sequence[int], k: int = 3
) -> dict:
    """:func:`classification_metrics` of test predictions ``probs`` plus the rarest ``k`` training classes'
    mean recall (``tail_classes``, ``tail_recall``); ``train_counts`` are the real training part's counts."""
    metrics = classification_metrics(labels, probs.argmax(1), probs, num_classes, int(np.argmin(train_counts)))
    metrics["tail_classes"] = tail = tail_classes(train_counts, k)
    metrics["tail_recall"] = float(np.mean([metrics["recall_per_class"][c] for c in tail]))
    return metrics


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
