"""The one batched inference helper: a network's logits for a stack of images, a batch at a time."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tailgan.data import to_float


@torch.no_grad()
def predict(
    net: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    device: str | torch.device = "cpu",
    batch_size: int = 1000,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Outputs (N, C), fp32 on the CPU, of ``net`` for ``images`` (uint8, or floats in [-1, 1]), ``batch_size``
    at a time. A module runs in eval mode (its mode is restored afterwards). ``transform`` turns a slice of
    ``images`` into the network's input instead of the default (to floats on ``device``)."""
    was = net.training if isinstance(net, nn.Module) else None
    if was is not None:
        net.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        if transform is not None:
            x = transform(x)
        else:
            x = (to_float(x) if x.dtype == torch.uint8 else x.float()).to(device)
        out.append(net(x).float().cpu())
    if was:
        net.train()
    return torch.cat(out) if out else torch.zeros(0, 0)
