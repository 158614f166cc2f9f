"""Class-conditional contrastive losses on a discriminator's embedding: ECO, 2C and D2D-CE.

All three take the same inputs, as a discriminator with a ``"proxy"`` head produces them:

* ``embed`` (B, d): the embedding f_i of each sample;
* ``proxy`` (B, d): the class proxy p_{y_i} of each sample's label, one row per sample (so a proxy
  appears once per sample of its class);
* ``labels`` (B,): integer class labels.

Similarities are cosines (both inputs are L2-normalised here again, as the original code does with
``nn.CosineSimilarity``), so un-normalised inputs are fine too. Everything is vectorised: the per-anchor
sums of the papers are masked log-sum-exps over B x B similarity matrices.

Formulas, test vectors and the original code they reproduce: /work/shared/specs/ecogan-2c-d2dce.md
(sections 2, 4, 5).

Multi-process training: with ``gather=True`` and an initialised ``torch.distributed`` process group of
world size > 1, the embeddings, proxies and labels of all ranks are concatenated (rank order) before the
loss, as StudioGAN does, so every rank computes the same loss over the global batch. ``gather_grad``
decides what gradient the local slice receives:

* ``"sum"`` (default, sound): the sum over ranks of d(loss on that rank)/d(local slice), i.e.
  world_size x d(global loss)/d(local slice). After DDP averages parameter gradients over ranks the
  result is exactly the single-process gradient of the loss on the concatenated batch. Every rank must
  run backward through the loss, because the backward pass is a collective (an all-reduce).
* ``"local"`` (faithful to StudioGAN's ``GatherLayer`` and ECOGAN's fork): only d(global loss)/d(local
  slice) from the rank's own copy of the loss. After DDP's averaging the contrastive gradient is
  1/world_size of the single-process one, i.e. the loss weight is silently divided by the number of
  processes.

Local batches must have the same size on every rank (checked).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

GatherGrad = Literal["sum", "local"]

# torch.nn.CosineSimilarity's eps, which the original losses use.
_COS_EPS = 1e-8


def _check_inputs(embed: Tensor, proxy: Tensor, labels: Tensor, temperature: float) -> None:
    """Raise a ValueError naming the offending input and the fix."""
    if embed.dim() != 2:
        raise ValueError(f"embed must be (batch, dim), got shape {tuple(embed.shape)}; flatten it first")
    if proxy.shape != embed.shape:
        raise ValueError(
            f"proxy must have the shape of embed {tuple(embed.shape)} (one class proxy per sample), "
            f"got {tuple(proxy.shape)}; index the proxy table with the labels"
        )
    if labels.dim() != 1 or labels.shape[0] != embed.shape[0]:
        raise ValueError(f"labels must be (batch,) = ({embed.shape[0]},), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}; use labels.long()")
    if embed.shape[0] == 0:
        raise ValueError("the batch is empty; contrastive losses need at least one sample")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward hands each rank the gradient of its own slice.

    ``sum_grads=True`` all-reduces (sums) the incoming gradient over ranks first; False keeps the rank's
    own gradient only (StudioGAN's GatherLayer). See the module docstring.
    """

    @staticmethod
    def forward(ctx, x: Tensor, sum_grads: bool) -> Tensor:  # type: ignore[override]
        ctx.sum_grads = sum_grads
        ctx.rank = dist.get_rank()
        ctx.size = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()  # all_reduce works in place; never modify autograd's buffer
        if ctx.sum_grads:
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.size
        return grad[start : start + ctx.size], None


def _distributed_world() -> int:
    """World size of the default process group, or 1 when torch.distributed is not in use."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_batch(
    embed: Tensor, proxy: Tensor, labels: Tensor, gather_grad: GatherGrad = "sum"
) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate (embed, proxy, labels) of all ranks in rank order; a no-op without distributed.

    Gradients reach the local slices of ``embed`` and ``proxy`` as ``gather_grad`` says (module
    docstring). Raises ValueError when the local batch sizes differ between ranks.
    """
    if gather_grad not in ("sum", "local"):
        raise ValueError(f"gather_grad must be 'sum' or 'local', got {gather_grad!r}")
    world = _distributed_world()
    if world == 1:
        return embed, proxy, labels
    # One tiny collective so that unequal local batches give a clear error instead of a hang.
    size = torch.tensor([embed.shape[0]], device=embed.device, dtype=torch.long)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes_list = [int(s.item()) for s in sizes]
    if len(set(sizes_list)) != 1:
        raise ValueError(
            f"gather=True needs the same local batch size on every rank, got {sizes_list}; "
            "use drop_last=True in the data loader"
        )
    sum_grads = gather_grad == "sum"
    embed = _GatherWithGrad.apply(embed, sum_grads)
    proxy = _GatherWithGrad.apply(proxy, sum_grads)
    label_parts = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(label_parts, labels.contiguous())
    return embed, proxy, torch.cat(label_parts)


def _cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """(B, B) matrix of cosines s(a_i, b_j)."""
    return F.normalize(a, dim=1, eps=_COS_EPS) @ F.normalize(b, dim=1, eps=_COS_EPS).T


def _cosine_rows(a: Tensor, b: Tensor) -> Tensor:
    """(B,) cosines s(a_i, b_i)."""
    return (F.normalize(a, dim=1, eps=_COS_EPS) * F.normalize(b, dim=1, eps=_COS_EPS)).sum(dim=1)


def _row_max_off_diagonal(x: Tensor, eye: Tensor) -> Tensor:
    """Detached max over j != i of each row, (B, 1); 0 for a row with no off-diagonal entry (B = 1)."""
    m = x.detach().masked_fill(eye, float("-inf")).amax(dim=1, keepdim=True)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _log_ratio(logits: Tensor, positive: Tensor) -> Tensor:
    """Per-row log(sum over all of exp(logits)) - log(sum over positives of exp(logits)).

    Entries of ``logits`` that are -inf take no part (removed diagonal).
    """
    return torch.logsumexp(logits, dim=1) - torch.logsumexp(
        logits.masked_fill(~positive, float("-inf")), dim=1
    )


def eco_loss(
    embed: Tensor,
    proxy: Tensor,
    labels: Tensor,
    temperature: float = 1.0,
    max_shift: bool = True,
    gather: bool = False,
    gather_grad: GatherGrad = "sum",
) -> Tensor:
    """ECOGAN's Exhaustive COntrastive (ECO) loss, a scalar (spec section 2).

    For every anchor i, with S_ij = s(f_i, f_j) (j != i) and Q_ik = s(f_i, p_{y_k}) (k = 1..B, k = i
    included):

        num_i = sum_{j!=i} [y_j = y_i] exp((S_ij - M_i)/tau) + sum_k [y_k = y_i] exp((Q_ik - M'_i)/tau)
        den_i = sum_{j!=i}             exp((S_ij - M_i)/tau) + sum_k             exp((Q_ik - M'_i)/tau)
        loss  = -mean_i log(num_i / den_i)

    The positives are the other same-label samples and the anchor's own proxy (counted n_{y_i} times);
    the negatives are the other-label samples and the proxies of the other labels present in the batch,
    each counted with its in-batch multiplicity.

    ``max_shift=True`` (default) reproduces ECOGAN's code exactly: M_i = max_{j!=i} S_ij and
    M'_i = max_k Q_ik are detached (no gradient flows through them) and, because the two blocks are
    shifted by different amounts, they change the loss value, not only its numerics.
    ``max_shift=False`` is the "clean" variant written in the formula without the shifts (M = M' = 0),
    which is the plain supervised-contrastive form. Either way the computation is stable (log-sum-exp).

    Args:
        embed: (B, d) sample embeddings.
        proxy: (B, d) class proxy of each sample's label.
        labels: (B,) integer labels.
        temperature: tau > 0 (ECOGAN uses 1.0 everywhere).
        max_shift: keep the original detached per-block row-max shifts (see above).
        gather: all-gather the inputs over distributed ranks first (module docstring).
        gather_grad: "sum" (sound) or "local" (StudioGAN); only used with ``gather``.
    """
    _check_inputs(embed, proxy, labels, temperature)
    if gather:
        embed, proxy, labels = gather_batch(embed, proxy, labels, gather_grad)
    n = embed.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=embed.device)
    same = labels[:, None] == labels[None, :]
    sim = _cosine_matrix(embed, embed)
    sim_proxy = _cosine_matrix(embed, proxy)  # column k holds the proxy of sample k's label
    if max_shift:
        shift = _row_max_off_diagonal(sim, eye)
        shift_proxy = sim_proxy.detach().amax(dim=1, keepdim=True)
    else:
        shift = shift_proxy = 0.0
    logits = torch.cat(
        [
            ((sim - shift) / temperature).masked_fill(eye, float("-inf")),
            (sim_proxy - shift_proxy) / temperature,
        ],
        dim=1,
    )
    positive = torch.cat([same & ~eye, same], dim=1)
    return _log_ratio(logits, positive).mean()


def contrastive_2c_loss(
    embed: Tensor,
    proxy: Tensor,
    labels: Tensor,
    temperature: float = 1.0,
    gather: bool = False,
    gather_grad: GatherGrad = "sum",
) -> Tensor:
    """ContraGAN's conditional contrastive (2C) loss, a scalar (spec section 4).

    For every anchor i, with e_i = exp(s(f_i, p_{y_i})/tau):

        num_i = e_i + sum_{j!=i} [y_j = y_i] exp(S_ij/tau)
        den_i = e_i + sum_{j!=i}             exp(S_ij/tau)
        loss  = -mean_i log(num_i / den_i)

    Only the anchor's own proxy appears, once; there is no max shift in the original (StudioGAN's
    ``ConditionalContrastiveLoss``), and computing it with log-sum-exp does not change the value.

    Args:
        embed, proxy, labels: as in :func:`eco_loss`.
        temperature: tau > 0 (StudioGAN's CIFAR10 config: 1.0).
        gather, gather_grad: distributed gathering, see the module docstring.
    """
    _check_inputs(embed, proxy, labels, temperature)
    if gather:
        embed, proxy, labels = gather_batch(embed, proxy, labels, gather_grad)
    n = embed.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=embed.device)
    same = labels[:, None] == labels[None, :]
    sim = _cosine_matrix(embed, embed)
    own_proxy = _cosine_rows(embed, proxy)
    logits = torch.cat(
        [(sim / temperature).masked_fill(eye, float("-inf")), own_proxy[:, None] / temperature], dim=1
    )
    positive = torch.cat([same & ~eye, torch.ones_like(same[:, :1])], dim=1)
    return _log_ratio(logits, positive).mean()


def d2dce_loss(
    embed: Tensor,
    proxy: Tensor,
    labels: Tensor,
    temperature: float = 0.5,
    m_p: float = 0.98,
    max_shift: bool = True,
    gather: bool = False,
    gather_grad: GatherGrad = "sum",
) -> Tensor:
    """ReACGAN's data-to-data cross-entropy (D2D-CE) loss, a scalar (spec section 5).

    The negative margin is m_n = 1 - m_p (the original has no separate knob). For every anchor i:

        T_ij     = (S_ij - m_n)/tau                  for j != i
        M_i      = max_{j!=i} T_ij                   (detached, taken before the ReLU)
        negsum_i = sum_{j!=i, y_j != y_i} exp(max(T_ij, 0) - M_i)
        a_i      = max((m_p - s(f_i, p_{y_i}))/tau, 0)
        l_i      = a_i + log(exp(-a_i) + negsum_i)
        loss     = mean_i l_i

    Same-label samples are removed from the negatives ("false-negative removal"); an anchor without
    negatives contributes 0.

    ``max_shift=True`` (default) reproduces StudioGAN's ``Data2DataCrossEntropyLoss`` exactly: the shift
    -M_i is applied to the negatives only, so it changes the value (and, M_i being a pre-ReLU maximum
    that can be negative, it can inflate the negatives). ``max_shift=False`` is the paper's unshifted
    form (M_i = 0). The computation is stable either way (log-sum-exp).

    Args:
        embed, proxy, labels: as in :func:`eco_loss`.
        temperature: tau > 0 (ReACGAN's CIFAR10 config: 0.5).
        m_p: positive margin (0.98 in ReACGAN; m_n = 1 - m_p).
        max_shift: keep the original detached shift of the negatives (see above).
        gather, gather_grad: distributed gathering, see the module docstring.
    """
    _check_inputs(embed, proxy, labels, temperature)
    if gather:
        embed, proxy, labels = gather_batch(embed, proxy, labels, gather_grad)
    n = embed.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=embed.device)
    negative = labels[:, None] != labels[None, :]  # the diagonal is never a negative
    t = (_cosine_matrix(embed, embed) - (1.0 - m_p)) / temperature
    shift = _row_max_off_diagonal(t, eye) if max_shift else 0.0
    negative_logits = (F.relu(t) - shift).masked_fill(~negative, float("-inf"))
    attraction = F.relu((m_p - _cosine_rows(embed, proxy)) / temperature)
    logits = torch.cat([-attraction[:, None], negative_logits], dim=1)
    return (attraction + torch.logsumexp(logits, dim=1)).mean()
