"""Training-time batch augmentation and mixing for classifiers: the long-tail field's standard recipe.

Everything works on a whole batch of float images in [-1, 1] (N, C, H, W) on its device, with one
``torch.Generator`` per augmenter, so the same seed gives the same batches:

- :class:`BatchAugment`: ``none`` | ``standard`` (pad-and-random-crop, ``pad = max(1, size // 8)``: 4 px at 32,
  3 at 28, and a horizontal flip where the data's classes are flip-invariant) | ``randaugment`` |
  ``trivialaugment`` (torchvision ``transforms.v2``, one draw per group of ``group`` images, after ``standard``).
  Crops and flips are drawn per image and applied by indexing, with no per-image Python loop.
- :func:`mixup`, :func:`cutmix`, :func:`cmo`: the mixed batch and its two label sets, ``(x, y_a, y_b, lam)``; a
  loss is then ``lam * L(y_a) + (1 - lam) * L(y_b)`` (:func:`mixed_loss`). ``transforms.v2.MixUp`` / ``CutMix``
  return soft labels instead, which losses with per-class margins or label-dependent weights (LDAM, focal,
  class-balanced) cannot take; the two-label form is the same for cross-entropy and combines with every loss.
  CMO (Park et al., CVPR 2022) pastes a CutMix box of a minority-sampled image into the instance-sampled one.

Validation and test images never pass through here: only the training batches of the supervised loop do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

AUGMENT_POLICIES = ("none", "standard", "randaugment", "trivialaugment")
# sources whose classes change under a horizontal flip (characters, digits); every other source is flipped
NEVER_FLIPPED = {"digits", "mnist", "kmnist", "emnist"}


def flips_by_default(source: str | None) -> bool:
    """Whether the standard recipe flips images of ``source`` (False for digits and characters)."""
    return (source or "").lower() not in NEVER_FLIPPED


def crop_padding(size: int) -> int:
    """The pad of pad-and-random-crop for ``size`` px images: 4 at 32, 3 at 28, 1 at 8."""
    return max(1, size // 8)


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator, fill: float = -1.0) -> torch.Tensor:
    """Each image padded by ``pad`` (with ``fill``: black in [-1, 1]) and cropped back at its own random offset."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), value=fill)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Each image flipped left-right with probability ``p``."""
    flip = torch.rand(len(x), generator=generator, device=generator.device).to(x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class BatchAugment:
    """``augment(x)``: a training batch (floats in [-1, 1]) augmented by ``policy``; see the module docstring."""

    def __init__(
        self,
        policy: Literal["none", "standard", "randaugment", "trivialaugment"] = "standard",
        flip: bool = True,
        seed: int = 0,
        device: str | torch.device = "cpu",
        group: int = 8,
    ) -> None:
        if policy not in AUGMENT_POLICIES:
            raise ValueError(f"augment={policy!r}: use one of {', '.join(AUGMENT_POLICIES)}")
        self.policy, self.flip, self.group = policy, flip, group
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.auto: Callable | None = None
        if policy in ("randaugment", "trivialaugment"):
            from torchvision.transforms import v2

            self.auto = v2.RandAugment() if policy == "randaugment" else v2.TrivialAugmentWide()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.policy == "none":
            return x
        out = random_crop(x, crop_padding(x.shape[-1]), self.generator)
        if self.flip:
            out = random_flip(out, self.generator)
        if self.auto is not None:
            out = self._auto_augment(out)
        return out

    def _auto_augment(self, x: torch.Tensor) -> torch.Tensor:
        """RandAugment / TrivialAugment on uint8 pixels, one random draw per group of images (v2 draws one set of
        parameters per call), seeded from this augmenter's generator."""
        pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            groups = [self.auto(chunk) for chunk in pixels.split(self.group)]
        return torch.cat(groups).to(x.dtype) / 127.5 - 1


# -- mixing ------------------------------------------------------------------------------------------------------------
def _beta(alpha: float, generator: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha), seeded from ``generator`` (torch's Beta takes no generator)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def random_box(h: int, w: int, lam: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """CutMix's box (y0, y1, x0, x1) of area ~(1 - lam) h w, centred uniformly, clipped to the image."""
    cut = (1.0 - lam) ** 0.5
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)


def paste_box(background: torch.Tensor, foreground: torch.Tensor, box: tuple[int, int, int, int]) -> tuple:
    """``background`` with ``foreground``'s box pasted in, and lambda = the share of the background kept."""
    y0, y1, x0, x1 = box
    out = background.clone()
    out[..., y0:y1, x0:x1] = foreground[..., y0:y1, x0:x1]
    h, w = background.shape[-2:]
    return out, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator) -> tuple:
    """Mixup: each image blended with a partner of a shuffled batch, lam ~ Beta(alpha, alpha)."""
    lam = _beta(alpha, generator)
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator) -> tuple:
    """CutMix: a box of a shuffled partner pasted in; lam from the box's area."""
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    box = random_box(x.shape[-2], x.shape[-1], _beta(alpha, generator), generator)
    mixed, lam = paste_box(x, x[perm], box)
    return mixed, y, y[perm], lam


def cmo(
    x: torch.Tensor, y: torch.Tensor, x_minor: torch.Tensor, y_minor: torch.Tensor, generator: torch.Generator,
    alpha: float = 1.0, prob: float = 0.5,
) -> tuple:  # fmt: skip
    """CMO: with probability ``prob`` per batch, a CutMix box of the minority-sampled images ``x_minor`` (drawn
    with weights proportional to 1 / n_c) pasted into the instance-sampled ``x``; loss lam L(y) + (1-lam) L(y_minor)."""
    if float(torch.rand(1, generator=generator)) >= prob:
        return x, y, y, 1.0
    box = random_box(x.shape[-2], x.shape[-1], _beta(alpha, generator), generator)
    mixed, lam = paste_box(x, x_minor, box)
    return mixed, y, y_minor, lam


def mixed_loss(loss: Callable[[torch.Tensor], torch.Tensor], y_a: torch.Tensor, y_b: torch.Tensor, lam: float):
    """``lam * loss(y_a) + (1 - lam) * loss(y_b)`` (one term when nothing was mixed)."""
    if lam >= 1.0:
        return loss(y_a)
    return lam * loss(y_a) + (1.0 - lam) * loss(y_b)
