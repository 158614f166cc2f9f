"""Adversarial GAN losses on raw discriminator logits, the gradient penalty and the ACGAN class loss.

Logits may be (B,) or (B, 1); every loss is a mean over the batch. ``ADV_LOSSES`` maps a name to the
(discriminator loss, generator loss) pair:

* ``"hinge"``: D = mean relu(1 - D(x_r)) + mean relu(1 + D(x_f)); G = -mean D(x_f) (StudioGAN's
  ``d_hinge``/``g_hinge``, ECOGAN's StudioGAN-fork runs).
* ``"bce"``: the non-saturating loss, BCE-with-logits written with softplus:
  D = mean softplus(-D(x_r)) + mean softplus(D(x_f)); G = mean softplus(-D(x_f)) (ECOGAN's Lightning
  pipeline, StudioGAN's ``vanilla``).
* ``"wasserstein"``: D = mean D(x_f) - mean D(x_r); G = -mean D(x_f) (use with :func:`gradient_penalty`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def d_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge discriminator loss: mean relu(1 - real) + mean relu(1 + fake)."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge(fake_logits: Tensor) -> Tensor:
    """Hinge generator loss: -mean fake."""
    return -fake_logits.mean()


def d_nonsaturating(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """BCE discriminator loss, BCE(real, 1) + BCE(fake, 0) = mean softplus(-real) + mean softplus(fake)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss, BCE(fake, 1) = mean softplus(-fake)."""
    return F.softplus(-fake_logits).mean()


def d_wasserstein(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Wasserstein critic loss: mean fake - mean real."""
    return fake_logits.mean() - real_logits.mean()


def g_wasserstein(fake_logits: Tensor) -> Tensor:
    """Wasserstein generator loss: -mean fake."""
    return -fake_logits.mean()


ADV_LOSSES: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "hinge": (d_hinge, g_hinge),
    "bce": (d_nonsaturating, g_nonsaturating),
    "wasserstein": (d_wasserstein, g_wasserstein),
}


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    alpha: Literal["uniform", "normal"] = "uniform",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Two-sided gradient penalty mean_i (||grad_x D(x_hat_i)||_2 - 1)^2 at x_hat = real + a (fake - real).

    One coefficient a is drawn per sample:

    * ``"uniform"`` (default): a ~ U(0, 1), WGAN-GP's interpolation between a real and a fake sample.
    * ``"normal"``: a ~ N(0, 1), faithful to ECOGAN's ``compute_gradient_penalty`` (and BAGAN-GP), which
      draws ``torch.randn`` and so also extrapolates beyond the segment.

    The graph is kept (``create_graph=True``) so the penalty can be back-propagated into the critic.
    ``real`` and ``fake`` are detached here: the penalty trains the critic only.

    Args:
        critic: maps a batch x (B, ...) to one score per sample, (B,) or (B, 1); the samples must not
            interact (no batch norm in train mode), e.g. ``lambda x: D(x, y)["adv"]``.
        real, fake: batches of the same shape (B, ...).
        alpha: "uniform" or "normal", see above.
        generator: optional torch.Generator (on ``real``'s device) for the coefficients.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if real.dim() < 1 or real.shape[0] == 0:
        raise ValueError(f"real must be a non-empty batch (B, ...), got shape {tuple(real.shape)}")
    if alpha not in ("uniform", "normal"):
        raise ValueError(f"alpha must be 'uniform' or 'normal', got {alpha!r}")
    draw = torch.rand if alpha == "uniform" else torch.randn
    coeff_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    a = draw(coeff_shape, generator=generator, device=real.device, dtype=real.dtype)
    real, fake = real.detach(), fake.detach()
    x_hat = (real + a * (fake - real)).requires_grad_(True)
    scores = critic(x_hat)
    if scores.shape not in ((real.shape[0],), (real.shape[0], 1)):
        raise ValueError(f"critic must return (B,) or (B, 1) scores, got shape {tuple(scores.shape)}")
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def acgan_aux_loss(class_logits: Tensor, labels: Tensor) -> Tensor:
    """ACGAN auxiliary classification loss: cross-entropy of (B, K') logits against (B,) labels."""
    return F.cross_entropy(class_logits, labels)
