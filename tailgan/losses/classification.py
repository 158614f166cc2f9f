"""Classification losses for long-tailed training data.

- Class-balanced loss (Cui et al., CVPR 2019): weights from the effective number of samples and the
  reduction of the official TensorFlow code (spec section 7), in softmax, sigmoid and focal forms.
- Cost-sensitive cross-entropy with inverse-frequency weights (the seeds' "CS").
- Softmax focal loss (Lin et al. 2017) as a multi-class baseline.
- LDAM loss with deferred re-weighting (Cao et al., NeurIPS 2019), and plain cross-entropy with the same
  deferred re-weighting ("CE-DRW").
- Logit-adjusted loss (Menon et al., ICLR 2021) and Balanced Softmax (Ren et al., NeurIPS 2020).

All losses take raw logits (N, C) and int64 labels (N,). Each takes optional per-sample weights
``sample_weight`` (N,): a sample of weight s counts as s copies of itself, i.e. its term is multiplied
by s and the batch normaliser counts it s times (``sum_i s_i t_i / sum_i s_i d_i``, where t_i is the
sample's term and d_i its share of the normaliser: 1, or w[y_i] for the weighted means). With all
weights 1 (or ``None``) every loss is exactly its unweighted form.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

CB_LOSS_TYPES = ("softmax", "sigmoid", "focal")


def _reduce(terms: torch.Tensor, sample_weight: torch.Tensor | None, norm: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i s_i t_i / sum_i s_i d_i, with d_i = ``norm`` (default 1) and s_i = ``sample_weight`` (default 1)."""
    d = torch.ones_like(terms) if norm is None else norm
    if sample_weight is None:
        return terms.sum() / d.sum()
    s = sample_weight.to(terms.device, terms.dtype)
    if s.shape != terms.shape:
        raise ValueError(f"sample_weight must have shape {tuple(terms.shape)}, got {tuple(s.shape)}")
    return (s * terms).sum() / (s * d).sum()


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


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, sample_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Plain cross-entropy, mean over the batch (with optional per-sample weights)."""
    return _reduce(F.cross_entropy(logits, labels, reduction="none"), sample_weight)


def weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, sample_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the batch of w[y_i] * CE(z_i, y_i) (TensorFlow's SUM_BY_NONZERO_WEIGHTS reduction).

    This is what the class-balanced loss code computes. It is *not* ``F.cross_entropy(weight=w)``,
    whose mean divides by sum_i w[y_i] instead of the batch size.
    """
    ce = F.cross_entropy(logits, labels, reduction="none")
    return _reduce(weights.to(logits.device, logits.dtype)[labels] * ce, sample_weight)


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
    sample_weight: torch.Tensor | None = None,
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
        return weighted_cross_entropy(logits, labels, weights, sample_weight)
    onehot, bce = _sigmoid_terms(logits, labels)
    if loss_type == "focal" and gamma != 0:
        # log(1 + exp(-z)) as softplus(-z): the official code's log1p(exp(-z)) overflows for z << 0
        modulator = torch.exp(-gamma * onehot * logits - gamma * F.softplus(-logits))
        bce = modulator * bce
    class_w = weights.to(logits.device, logits.dtype)[labels]
    # the normaliser is the number of positive labels: one per sample
    return _reduce(class_w * bce.sum(dim=1), sample_weight, onehot.sum(dim=1))


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 1.0,
    weights: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
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
    return _reduce(loss, sample_weight)


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
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """LDAM loss: cross-entropy of s * (z - m_y 1_y), the true-class logit lowered by its class margin.

    ``logits`` are cosines (use a NormedLinear head), hence the scale s = 30 of the paper. Class
    ``weights`` (deferred re-weighting) are applied as the LDAM-DRW code does, with PyTorch's weighted
    mean ``F.cross_entropy(weight=w)`` (dividing by sum_i w[y_i]).
    """
    margins = margins.to(logits.device, logits.dtype)
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    adjusted = logits - onehot * margins[labels].unsqueeze(1)
    return _weighted_mean_ce(scale * adjusted, labels, weights, sample_weight)


def _weighted_mean_ce(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, sample_weight: torch.Tensor | None
) -> torch.Tensor:
    """PyTorch's ``F.cross_entropy(weight=w)``: sum_i w[y_i] CE_i / sum_i w[y_i] (with sample weights)."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    if weights is None:
        return _reduce(ce, sample_weight)
    w = weights.to(logits.device, logits.dtype)[labels]
    return _reduce(w * ce, sample_weight, w)


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


def drw_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    counts: Sequence[int] | torch.Tensor,
    progress: float,
    start: float = 0.8,
    beta: float = 0.9999,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """CE-DRW: cross-entropy, re-weighted with :func:`drw_weights` once ``progress`` reaches ``start``.

    The "CE + DRW" row of the LDAM-DRW paper: the same schedule and the same weighted mean
    (``F.cross_entropy(weight=w)``) as LDAM-DRW, on plain logits.
    """
    return _weighted_mean_ce(logits, labels, drw_weights(counts, progress, start, beta), sample_weight)


def log_priors(counts: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """log(n_c / sum n) as float32 (C,): the log class priors of the training data."""
    n = _counts_tensor(counts)
    return torch.log(n / n.sum()).float()


def logit_adjusted_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    counts: Sequence[float] | torch.Tensor,
    tau: float = 1.0,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logit-adjusted loss (Menon et al. 2021, eq. 10): CE(z_i + tau * log pi, y_i), mean over the batch.

    pi are the training priors n_c / N. The network's own logits z are then the balanced scores: predict
    with argmax z (no adjustment at test time).
    """
    if tau < 0:
        raise ValueError(f"logit adjustment tau={tau} must be >= 0 (the paper uses 1)")
    adjusted = logits + tau * log_priors(counts).to(logits.device, logits.dtype)
    return _reduce(F.cross_entropy(adjusted, labels, reduction="none"), sample_weight)


def balanced_softmax_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    counts: Sequence[float] | torch.Tensor,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Balanced Softmax (Ren et al. 2020, eq. 4): CE of the softmax n_y exp(z_y) / sum_j n_j exp(z_j).

    That is CE(z_i + log n, y_i); it equals the logit-adjusted loss with tau = 1 (log n and log pi
    differ by a constant, which softmax ignores). Predict with argmax z.
    """
    log_n = torch.log(_counts_tensor(counts)).to(logits.device, logits.dtype)
    return _reduce(F.cross_entropy(logits + log_n, labels, reduction="none"), sample_weight)
