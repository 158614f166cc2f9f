"""Per-class classification metrics (scikit-learn) and their plots.

ACSA, the "average class-specific accuracy" of the seeds, is (1/K) sum_k correct_k / N_k, i.e.
scikit-learn's balanced accuracy (the mean per-class recall).
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
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

from tailgan.io import atomic_write


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
        "acsa": float(balanced_accuracy_score(y_true, y_pred)),
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


def _save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Save a figure as PNG through a temp file (tailgan.io), so a crash never leaves half an image."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Write the confusion matrix, rows normalised to recall, as a PNG (matplotlib, no display needed)."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(4.0, 0.55 * len(classes) + 2)
    # a bare Figure (not pyplot): no global backend or figure registry, so nothing to close or leak
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ConfusionMatrixDisplay(norm, display_labels=list(classes)).plot(
        ax=ax, values_format=".2f", cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title(title or "confusion matrix (rows: true class, normalised)")
    _save_figure(fig, path)


def plot_recall_bars(
    recalls: dict[str, Sequence[float]], classes: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Grouped bar chart of per-class recall, one bar colour per strategy, classes on the x axis."""
    names = list(recalls)
    x = np.arange(len(classes))
    width = 0.8 / max(len(names), 1)
    fig = Figure(figsize=(max(6.0, 0.9 * len(classes) + 0.05 * len(classes) * len(names)), 4.5))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab20"]
    for i, name in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, recalls[name], width, label=name, color=cmap(i % 20))
    ax.set_xticks(x, list(classes), rotation=45, ha="right")
    ax.set_ylabel("recall (test)")
    ax.set_ylim(0, 1)
    ax.set_title(title or "per-class recall")
    ax.legend(fontsize="small", ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    _save_figure(fig, path)
