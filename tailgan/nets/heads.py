"""Classifier heads of decoupled learning (Kang et al., ICLR 2020), where only the classifier changes after the
representation was trained: tau-normalised (``tau-norm``) or scaled per class (``lws``); ``crt`` trains a fresh
linear layer (:mod:`tailgan.classify.decoupled`). Class-balanced batches come from
:class:`tailgan.data.samplers.BatchStream` (``balanced=True``)."""

from __future__ import annotations

import copy

import torch
from torch import nn

TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))  # 0, 0.1, ..., 2.0: tau-norm's candidates on validation


def tau_normalized(linear: nn.Linear, tau: float) -> nn.Linear:
    """A copy of ``linear`` whose class weight vectors are divided by their L2 norm to the power ``tau``."""
    out = copy.deepcopy(linear)
    with torch.no_grad():
        norms = linear.weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
        out.weight.copy_(linear.weight / norms.pow(tau))
    return out


class ScaledHead(nn.Module):
    """LWS: a frozen linear classifier whose logits are multiplied by learnable per-class scales (init 1)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear.requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(linear.out_features, device=linear.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scales
