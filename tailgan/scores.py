"""The figures every layer shares: ACSA (balanced accuracy), which way each figure is better, and a classifier's
per-class test metrics (scikit-learn).

Low in the layer contract, so a GAN recipe's model selection (``tailgan.methods.dfg``), the classifiers
(``tailgan.classify``), the transfer and joint baselines (``tailgan.baselines``), the metrics and the report all
read the same definition. ACSA, the "average class-specific accuracy" of the seeds, is (1/K) sum_k correct_k / N_k,
i.e. scikit-learn's balanced accuracy (the mean per-class recall).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# figures where a larger value is better; every other figure (FID, KID, intra-class FID, MS-SSIM, losses) is
# lower-better
HIGHER_IS_BETTER = frozenset({
    "is", "labelacc", "precision", "recall", "density", "coverage",  # generator metrics (tailgan.metrics)
    "acsa", "accuracy", "macro_f1", "tail_recall", "auc_ovr_macro", "minority_f1",  # classifiers
})  # fmt: skip


def higher_is_better(name: str) -> bool:
    """The direction of a figure: True for IS, label accuracy, PRDC and classifier scores, False for distances."""
    return name in HIGHER_IS_BETTER


def balanced_accuracy(
    y_true: torch.Tensor | np.ndarray | Sequence[int], y_pred: torch.Tensor | np.ndarray | Sequence[int]
) -> float:
    """ACSA, the seeds' "average class-specific accuracy": the mean recall over the classes present in
    ``y_true`` (scikit-learn's ``balanced_accuracy_score``)."""
    y_true = torch.as_tensor(y_true).long().flatten()
    y_pred = torch.as_tensor(y_pred).long().flatten().to(y_true.device)
    if len(y_true) == 0:
        raise ValueError("balanced_accuracy of no labels")
    classes, inverse, counts = torch.unique(y_true, return_inverse=True, return_counts=True)
    hits = torch.zeros(len(classes), dtype=torch.float64, device=y_true.device)
    hits.index_add_(0, inverse, (y_pred == y_true).double())
    return float((hits / counts).mean())


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
    # imported here: scikit-learn (and SciPy behind it) cost about a second that `tailgan report` and the GAN
    # recipes, which read this module for ACSA, never need
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score

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
