"""M2m (Kim et al., CVPR 2020): minority images made from majority ones by a classifier's gradient, no GAN.

For a target class k lacking images, seeds x0 are drawn from the training set (so a class k0 comes up in
proportion to its size) and a seed of class k0 is accepted with probability ``1 - beta ** (n_k0 - n_k)``
(never from a class no larger than k). Each accepted seed is moved by ``steps`` L2-normalised gradient steps of
size ``step_size`` on ``CE(g(x), k) + lam * g(x)[k0]`` (towards k, away from k0), where g is a classifier
trained on the imbalanced real data, and kept when g gives k a probability >= ``gamma``. It keeps the head
image's context and changes its content. Where too few are kept, the rest of class k's share is real images
of k drawn again (the paper's fallback); the report counts both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class M2mConfig:
    beta: float = 0.999
    steps: int = 10
    step_size: float = 0.1
    lam: float = 0.5
    gamma: float = 0.9
    batch_size: int = 128
    max_rounds: int = 20  # seed batches tried per class before the fallback (at least 2 x the images needed)


def acceptance_probability(n_seed: torch.Tensor, n_target: int, beta: float) -> torch.Tensor:
    """``1 - beta ** (n_k0 - n_k)`` for seed classes larger than the target, else 0."""
    gap = (n_seed - n_target).double()
    return torch.where(gap > 0, 1 - beta**gap, torch.zeros_like(gap))


def translate(classifier: nn.Module, x0: torch.Tensor, k0: torch.Tensor, k: int, cfg: M2mConfig) -> torch.Tensor:
    """``cfg.steps`` L2-normalised gradient steps of each seed image towards class ``k``, clamped to [-1, 1]."""
    x = x0.clone()
    target = torch.full((len(x),), k, dtype=torch.long, device=x.device)
    for _ in range(cfg.steps):
        x.requires_grad_(True)
        logits = classifier(x)
        loss = F.cross_entropy(logits, target, reduction="sum") + cfg.lam * logits.gather(1, k0[:, None]).sum()
        (grad,) = torch.autograd.grad(loss, x)
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        x = (x.detach() - cfg.step_size * grad / norm).clamp(-1, 1)
    return x.detach()


@torch.no_grad()
def _confidence(classifier: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    return F.softmax(classifier(x).float(), dim=1)[:, k]


def m2m_images(
    classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, add: list[int], cfg: M2mConfig | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:  # fmt: skip
    """``add[k]`` images of each class k (floats in [-1, 1]) translated from larger classes, and a report
    ``{k: {"translated": n, "fallback": n, "tried": n}}``; ``classifier`` is put in eval mode."""
    cfg = cfg or M2mConfig()
    generator = generator or torch.Generator().manual_seed(0)
    classifier.eval()
    counts = torch.bincount(labels, minlength=len(add))
    device = next(classifier.parameters()).device
    out_x, out_y, report = [], [], {}
    for k, need in enumerate(add):
        if need <= 0:
            continue
        kept, tried = [], 0
        for _ in range(max(cfg.max_rounds, -(-2 * need // cfg.batch_size))):
            if sum(len(t) for t in kept) >= need:
                break
            idx = torch.randint(0, len(images), (cfg.batch_size,), generator=generator)
            p = acceptance_probability(counts[labels[idx]], int(counts[k]), cfg.beta)
            idx = idx[torch.rand(len(idx), generator=generator, dtype=torch.double) < p]
            if not len(idx):
                continue
            tried += len(idx)
            x = translate(classifier, images[idx].to(device), labels[idx].to(device), k, cfg)
            kept.append(x[_confidence(classifier, x, k) >= cfg.gamma].cpu())
        made = torch.cat(kept)[:need] if kept else images[:0]
        own = torch.where(labels == k)[0]
        refill = own[torch.randint(0, len(own), (need - len(made),), generator=generator)]
        out_x += [made, images[refill]]
        out_y.append(torch.full((need,), k, dtype=torch.long))
        report[k] = {"translated": len(made), "fallback": need - len(made), "tried": tried}
    if not out_y:
        return images[:0], labels[:0], report
    return torch.cat(out_x), torch.cat(out_y), report
