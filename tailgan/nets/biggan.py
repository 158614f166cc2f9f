"""StudioGAN's ``big_resnet`` (BigGAN-style ResNet) at 32 x 32, as used by ContraGAN, ReACGAN and ECOGAN's
StudioGAN-fork runs (spec section 7.2).

With c = ``conv_dim`` (96 full width, 24 for ECOGAN's "div4" runs) and C image channels:

Generator, z in R^z_dim (80), split into 4 equal chunks z_0..z_3:
    SN-Linear(z_0 -> 4c*4*4)                                     -> 4c x 4 x 4
    3 GenBlocks 4c -> 4c (4 -> 8 -> 16 -> 32); block b is conditioned on concat(shared(y), z_b)
    self-attention after block 2 (16 x 16)
    BN (affine) -> ReLU -> SN-conv3x3(4c -> C) -> tanh
    GenBlock: cBN -> ReLU -> nearest x2 -> SN-conv3x3 -> cBN -> ReLU -> SN-conv3x3,
              plus the shortcut nearest x2 -> SN-conv1x1.
    cBN: BN(affine=False, eps 1e-4) * (1 + SN-Linear(a)) + SN-Linear(a), both linears bias-free;
    shared = plain nn.Embedding(K, shared_dim) (128 full, 32 for div4), not spectrally normalised.

Discriminator, every conv/linear/embedding spectrally normalised (eps 1e-6):
    OptBlock(C -> 2c, down) -> self-attention (16 x 16) -> DBlock(2c -> 2c, down)
    -> DBlock(2c -> 2c) -> DBlock(2c -> 2c) -> ReLU -> sum over H, W -> h (2c) -> head
    OptBlock: conv3x3 -> ReLU -> conv3x3 -> avg-pool, shortcut avg-pool -> conv1x1.
    DBlock: ReLU -> conv3x3 -> ReLU -> conv3x3 (-> avg-pool), shortcut conv1x1 (-> avg-pool) when the
    block down-samples or changes width, identity otherwise.

Both networks get orthogonal weights and zero biases (StudioGAN "ortho"); spectral norm is added after
the initialisation, with ``torch.nn.utils.parametrizations.spectral_norm``.

``attention=False`` removes the self-attention layers (ECOGAN's Lightning port of big_resnet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tailgan.nets.layers import (
    ConditionalBatchNorm2d,
    DiscriminatorHead,
    SelfAttention,
    orthogonal_init_,
    spectral_norm_,
)

NUM_G_BLOCKS = 3


def _check_common(num_classes: int, img_channels: int, img_size: int, conv_dim: int, attention: bool) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if img_channels not in (1, 3):
        raise ValueError(f"img_channels must be 1 or 3, got {img_channels}")
    if img_size != 32:
        raise ValueError(
            f"the BigGAN nets are built for img_size 32, got {img_size}; resize the images to 32"
        )
    if conv_dim < 1:
        raise ValueError(f"conv_dim must be >= 1, got {conv_dim}")
    if attention and conv_dim % 4 != 0:
        raise ValueError(
            f"with attention=True conv_dim must be a multiple of 4 (attention widths are channels/8), "
            f"got {conv_dim}"
        )


class GenBlock(nn.Module):
    """BigGAN generator residual block with class-conditional BN; doubles the resolution."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(in_channels, cond_dim)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(out_channels, cond_dim)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.conv_skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class BigGANGenerator(nn.Module):
    """StudioGAN big_resnet generator at 32 px: ``forward(z, labels)`` -> images in [-1, 1].

    Args:
        num_classes: K.
        img_channels: 1 or 3.
        img_size: must be 32.
        z_dim: latent size, a multiple of 4 (80 in StudioGAN).
        conv_dim: base width c; the blocks have 4c channels (96 full, 24 = ECOGAN "div4").
        shared_dim: width of the shared class embedding (128 full, 32 for div4).
        attention: self-attention after the second block.
    """

    def __init__(
        self,
        num_classes: int,
        img_channels: int = 3,
        img_size: int = 32,
        z_dim: int = 80,
        conv_dim: int = 96,
        shared_dim: int = 128,
        attention: bool = True,
    ) -> None:
        super().__init__()
        _check_common(num_classes, img_channels, img_size, conv_dim, attention)
        if z_dim < NUM_G_BLOCKS + 1 or z_dim % (NUM_G_BLOCKS + 1) != 0:
            raise ValueError(f"z_dim must be a positive multiple of {NUM_G_BLOCKS + 1}, got {z_dim}")
        if shared_dim < 1:
            raise ValueError(f"shared_dim must be >= 1, got {shared_dim}")
        self.num_classes = num_classes
        self.img_channels = img_channels
        self.img_size = img_size
        self.z_dim = z_dim
        self.chunk_size = z_dim // (NUM_G_BLOCKS + 1)
        width = 4 * conv_dim
        self.bottom_channels = width
        self.linear = nn.Linear(self.chunk_size, width * 4 * 4)
        self.shared = nn.Embedding(num_classes, shared_dim)
        self.blocks = nn.ModuleList(
            GenBlock(width, width, shared_dim + self.chunk_size) for _ in range(NUM_G_BLOCKS)
        )
        self.attention = SelfAttention(width) if attention else None
        self.bn_out = nn.BatchNorm2d(width, eps=1e-4, momentum=0.1)
        self.conv_out = nn.Conv2d(width, img_channels, 3, padding=1)
        orthogonal_init_(self)
        # The shared embedding stays a plain table, as in StudioGAN.
        spectral_norm_(self, (nn.Conv2d, nn.Linear))

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (batch, {self.z_dim}), got shape {tuple(z.shape)}")
        if labels.shape != (z.shape[0],):
            raise ValueError(f"labels must be ({z.shape[0]},) to match z, got shape {tuple(labels.shape)}")
        chunks = torch.split(z, self.chunk_size, dim=1)
        shared = self.shared(labels)
        h = self.linear(chunks[0]).view(z.shape[0], self.bottom_channels, 4, 4)
        for index, (block, chunk) in enumerate(zip(self.blocks, chunks[1:])):
            h = block(h, torch.cat([shared, chunk], dim=1))
            if index == 1 and self.attention is not None:  # after block 2, at 16 x 16
                h = self.attention(h)
        return torch.tanh(self.conv_out(F.relu(self.bn_out(h))))


class DiscOptBlock(nn.Module):
    """First discriminator block (no leading activation): conv-ReLU-conv-pool plus pool-conv1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.conv_skip(F.avg_pool2d(x, 2))


class DiscBlock(nn.Module):
    """Pre-activation discriminator residual block, optionally halving the resolution.

    ``shortcut_after_relu=True`` feeds relu(x) instead of x to the shortcut. StudioGAN does this without
    meaning to: its ``nn.ReLU(inplace=True)`` overwrites the block input that the shortcut reads.
    """

    def __init__(
        self, in_channels: int, out_channels: int, downsample: bool, shortcut_after_relu: bool
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.shortcut_after_relu = shortcut_after_relu
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_skip = (
            nn.Conv2d(in_channels, out_channels, 1) if downsample or in_channels != out_channels else None
        )

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(x)
        h = self.conv2(F.relu(self.conv1(a)))
        skip = a if self.shortcut_after_relu else x
        if self.conv_skip is not None:
            skip = self.conv_skip(skip)
        if self.downsample:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return h + skip


class BigGANDiscriminator(nn.Module):
    """StudioGAN big_resnet discriminator at 32 px: ``forward(x, labels)`` -> dict (see
    :class:`~tailgan.nets.layers.DiscriminatorHead`); ``features(x)`` is the pooled h (B, 2c).

    Args:
        num_classes: K.
        img_channels: 1 or 3.
        img_size: must be 32.
        conv_dim: base width c; the blocks have 2c channels (96 full, 24 = ECOGAN "div4").
        head: "uncond", "projection", "acgan" or "proxy" (2C / D2D-CE / ECO: "proxy").
        embed_dim: embedding width of the "proxy" head (512).
        num_cls_outputs: outputs of the "acgan" head (default K).
        attention: self-attention after the first block.
        shortcut_after_relu: False (default) is the BigGAN design, where each residual block's shortcut
            carries its input x. True reproduces StudioGAN's code (and so ECOGAN's/ContraGAN's/ReACGAN's
            runs): its in-place ReLU rewrites the input, so the shortcut carries relu(x).
    """

    def __init__(
        self,
        num_classes: int,
        img_channels: int = 3,
        img_size: int = 32,
        conv_dim: int = 96,
        head: str = "proxy",
        embed_dim: int = 512,
        num_cls_outputs: int | None = None,
        attention: bool = True,
        shortcut_after_relu: bool = False,
    ) -> None:
        super().__init__()
        _check_common(num_classes, img_channels, img_size, conv_dim, attention)
        self.num_classes = num_classes
        self.img_channels = img_channels
        self.img_size = img_size
        width = 2 * conv_dim
        self.block1 = DiscOptBlock(img_channels, width)
        self.attention = SelfAttention(width) if attention else None
        self.blocks = nn.ModuleList(
            DiscBlock(width, width, downsample=down, shortcut_after_relu=shortcut_after_relu)
            for down in (True, False, False)
        )
        self.head = DiscriminatorHead(width, num_classes, head, embed_dim, num_cls_outputs)
        orthogonal_init_(self)
        spectral_norm_(self, (nn.Conv2d, nn.Linear, nn.Embedding))

    def features(self, x: Tensor) -> Tensor:
        """ReLU then sum over H and W of the last block's output, (B, 2c)."""
        expected = (self.img_channels, self.img_size, self.img_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must be (batch, {', '.join(map(str, expected))}), got shape {tuple(x.shape)}"
            )
        h = self.block1(x)
        if self.attention is not None:
            h = self.attention(h)
        for block in self.blocks:
            h = block(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        return self.head(self.features(x), labels)
