"""The figures every layer shares: ACSA (balanced accuracy) and which way each figure is better.

Low in the layer contract, so a GAN recipe's model selection (``tailgan.methods.dfg``), the classifiers
(``tailgan.classify``), the metrics and the report all read the same definition.
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
