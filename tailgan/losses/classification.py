"""Classification losses for long-tailed training data.

- Class-balanced loss (Cui et al., CVPR 2019): weights from the effective number of samples and the
  reduction of the official TensorFlow code (spec section 7), in softmax, sigmoid and focal forms.
- Cost-sensitive cross-entropy with inverse-frequency weights (the seeds' "CS").
- Softmax focal loss (Lin et al. 2017) as a multi-class baseline.
- LDAM loss with deferred re-weighting (Cao et al., NeurIPS 2019).

All losses take raw logits (N, C) and int64 labels (N,).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

CB_LOSS_TYPES = ("softmax", "sigmoid", "focal")


def _counts_tensor(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    n = torch.as_tensor(counts, dtype=torch.float64)
    if n.ndim != 1 or n.numel() < 2:
        raise ValueError(f"class counts must be a 1-D list of at least 2 counts, got {counts!r}")
    if bool((n <= 0).any()):
        empty = [i for i, v in enumerate(n.tolist()) if v <= 0]
        raise ValueError(
            f"class counts {n.long().tolist()} have no training images for class(es) {empty}; "
            "every class needs at least one image to get a weight"
        )
    return n


def class_balanced_weights(counts: Sequence[int] | torch.Tensor, beta: float) -> torch.Tensor:
    """Per-class weights w_c = (1 - beta) / (1 - beta^n_c), normalised to sum to the number of classes.

    1 / w_c is the "effective number of samples" (1 - beta^n) / (1 - beta). beta = 0 gives uniform
    weights; beta -> 1 approaches inverse-frequency weights. Returns float32 (C,).
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta={beta} is outside [0, 1); the paper uses 0.9, 0.99, 0.999 or 0.9999")
    n = _counts_tensor(counts)
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    return (w * len(n) / w.sum()).float()


def inverse_frequency_weights(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Per-class weights proportional to 1 / n_c, normalised to sum to the number of classes ("CS")."""
    n = _counts_tensor(counts)
    w = 1.0 / n
    return (w * len(n) / w.sum()).float()


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of w[y_i] * CE(z_i, y_i) (TensorFlow's SUM_BY_NONZERO_WEIGHTS reduction).

    This is what the class-balanced loss code computes. It is *not* ``F.cross_entropy(weight=w)``,
    whose mean divides by sum_i w[y_i] instead of the batch size.
    """
    ce = F.cross_entropy(logits, labels, reduction="none")
    return (weights.to(logits.device, logits.dtype)[labels] * ce).mean()


def _sigmoid_terms(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot targets and the element-wise one-vs-all binary cross-entropy (N, C)."""
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return onehot, F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")


def class_balanced_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    loss_type: str = "softmax",
    gamma: float = 1.0,
) -> torch.Tensor:
    """Class-balanced loss with the reduction of the official code (spec section 7).

    ``weights`` are per-class (C,), usually from :func:`class_balanced_weights`; sample i gets w[y_i].
    - ``softmax``: (1/B) sum_i w[y_i] CE(z_i, y_i).
    - ``sigmoid``: one-vs-all BCE over all C logits, every logit of sample i weighted by w[y_i], summed
      and divided by the number of positive labels (= B).
    - ``focal``: the sigmoid form times the modulator (1 - p_t)^gamma, computed as
      exp(-gamma * y * z - gamma * log(1 + exp(-z))) like the official code; same reduction.
    """
    if loss_type not in CB_LOSS_TYPES:
        raise ValueError(
            f"class-balanced loss type {loss_type!r} is unknown; use one of {', '.join(CB_LOSS_TYPES)}"
        )
    if loss_type == "softmax":
        return weighted_cross_entropy(logits, labels, weights)
    onehot, bce = _sigmoid_terms(logits, labels)
    if loss_type == "focal" and gamma != 0:
        # log(1 + exp(-z)) as softplus(-z): the official code's log1p(exp(-z)) overflows for z << 0
        modulator = torch.exp(-gamma * onehot * logits - gamma * F.softplus(-logits))
        bce = modulator * bce
    sample_w = weights.to(logits.device, logits.dtype)[labels].unsqueeze(1)
    return (sample_w * bce).sum() / onehot.sum()


def focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float = 1.0, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax focal loss: mean over the batch of w[y_i] (1 - p_{i,y_i})^gamma CE(z_i, y_i).

    The multi-class form used as the "Focal" baseline of the LDAM-DRW paper (gamma = 1 there).
    ``weights=None`` means no class weights.
    """
    if gamma < 0:
        raise ValueError(f"focal gamma={gamma} must be >= 0")
    ce = F.cross_entropy(logits, labels, reduction="none")
    p = torch.exp(-ce)
    loss = (1.0 - p) ** gamma * ce
    if weights is not None:
        loss = weights.to(logits.device, logits.dtype)[labels] * loss
    return loss.mean()


def ldam_margins(counts: Sequence[int] | torch.Tensor, max_margin: float = 0.5) -> torch.Tensor:
    """LDAM per-class margins m_c proportional to n_c^(-1/4), scaled so the largest is ``max_margin``."""
    if max_margin <= 0:
        raise ValueError(f"max_margin={max_margin} must be > 0 (the paper uses 0.5)")
    n = _counts_tensor(counts)
    m = n.pow(-0.25)
    return (m * (max_margin / m.max())).float()


def ldam_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    margins: torch.Tensor,
    scale: float = 30.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """LDAM loss: cross-entropy of s * (z - m_y 1_y), the true-class logit lowered by its class margin.

    ``logits`` are cosines (use a NormedLinear head), hence the scale s = 30 of the paper. Class
    ``weights`` (deferred re-weighting) are applied as the LDAM-DRW code does, with PyTorch's weighted
    mean ``F.cross_entropy(weight=w)`` (dividing by sum_i w[y_i]).
    """
    margins = margins.to(logits.device, logits.dtype)
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    adjusted = logits - onehot * margins[labels].unsqueeze(1)
    w = None if weights is None else weights.to(logits.device, logits.dtype)
    return F.cross_entropy(scale * adjusted, labels, weight=w)


def drw_weights(
    counts: Sequence[int] | torch.Tensor, progress: float, start: float = 0.8, beta: float = 0.9999
) -> torch.Tensor:
    """Deferred re-weighting: uniform weights until ``progress`` (0..1 of training) reaches ``start``,
    then class-balanced weights with ``beta``.

    The LDAM-DRW code switches at epoch 160 of 200 (start = 0.8) from beta = 0 to beta = 0.9999.
    """
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"DRW start={start} must be a fraction of training in [0, 1]")
    return class_balanced_weights(counts, beta if progress >= start else 0.0)
