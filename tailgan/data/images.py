"""In-memory image sets and the conversions between stored pixels and model inputs.

Images are held as one uint8 tensor (N, C, H, W): small datasets (MNIST, Fashion-MNIST, CIFAR,
digits) then cost a few tens of MB and a training step indexes a tensor instead of decoding PIL images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from tailgan.errors import TailganError

FIT_POLICIES = ("resize", "pad", "crop")


@dataclass
class ImageSet:
    """Images (uint8, N x C x H x W), integer labels (N,) and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"ImageSet.images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"ImageSet.labels must be ({self.images.shape[0]},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> list[int]:
        """Number of images of each class, in class order."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, indices: torch.Tensor) -> ImageSet:
        indices = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(self.images[indices], self.labels[indices], list(self.classes))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (what every tailgan network consumes)."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float images in [-1, 1] -> uint8, rounded to the nearest level and clamped."""
    return ((images.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """A batch (N, C, H, W), uint8 or float, to ``channels``: grey -> RGB replicates the grey channel, RGB -> grey
    takes ITU-R 601 luma (torchvision)."""
    c = images.shape[1]
    if c == channels:
        return images
    if channels == 3 and c == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and c == 3:
        return TF.rgb_to_grayscale(images, num_output_channels=1)
    raise TailganError(f"cannot convert {c}-channel images to {channels} channels")


def fit_images(images: torch.Tensor, resolution: int | None, channels: int | None, fit: str = "resize") -> torch.Tensor:
    """Bring a uint8 batch (N, C, H, W) to ``channels`` and a square ``resolution``.

    Policy (the same for every source):
    - channels: 1 -> 3 replicates the grey channel; 3 -> 1 takes ITU-R 601 luma (torchvision);
    - ``fit="resize"``: bilinear (antialiased) resize to resolution x resolution (aspect not kept);
    - ``fit="pad"``: centre the image on a black canvas (e.g. 28 -> 32 px); larger images are centre-cropped;
    - ``fit="crop"``: resize the shorter side to ``resolution``, then centre-crop the square.
    ``None`` keeps the native value.
    """
    if fit not in FIT_POLICIES:
        raise TailganError(f"fit policy {fit!r} is unknown; use one of {', '.join(FIT_POLICIES)}")
    if channels is not None and channels not in (1, 3):
        raise TailganError(f"channels={channels} is not supported; use 1 (grayscale) or 3 (RGB)")
    if channels is not None:
        images = convert_channels(images, channels)
    if resolution is None:
        return images
    h, w = images.shape[-2:]
    if (h, w) == (resolution, resolution):
        return images
    if fit == "resize":
        return TF.resize(images, [resolution, resolution], antialias=True)
    if fit == "crop":
        images = TF.resize(images, resolution, antialias=True)  # shorter side
        return TF.center_crop(images, [resolution, resolution])
    # pad: centre on a black canvas, cropping any side that is larger than the target
    pad_h, pad_w = max(resolution - h, 0), max(resolution - w, 0)
    if pad_h or pad_w:
        images = F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return TF.center_crop(images, [resolution, resolution])
