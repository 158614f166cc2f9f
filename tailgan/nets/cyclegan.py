"""Image-to-image translation networks: CycleGAN's ResNet generator and PatchGAN discriminator, and the
StarGAN-style class-conditional translator and discriminator (spec section 6.2).

CycleGAN (Zhu et al. 2017, the code base of the joint CycleGAN + classifier method), with g = ``ngf``,
d = ``ndf`` and C image channels:

ResNet generator (any square side divisible by 4)::

    ReflectionPad(3), Conv 7x7 C -> g, InstanceNorm, ReLU            "c7s1-g"
    Conv 3x3 s2 g -> 2g, IN, ReLU;  Conv 3x3 s2 2g -> 4g, IN, ReLU    two downsamplings (H/4)
    n_blocks x [ReflectionPad(1), Conv 3x3, IN, ReLU, ReflectionPad(1), Conv 3x3, IN] + skip
    ConvT 3x3 s2 4g -> 2g, IN, ReLU;  ConvT 3x3 s2 2g -> g, IN, ReLU  two upsamplings (H)
    ReflectionPad(3), Conv 7x7 g -> C, tanh                          "c7s1-C"

6 residual blocks is CycleGAN's choice for images up to 128 px (9 above). InstanceNorm has no affine
parameters and the convolutions keep their bias, as in the CycleGAN code.

PatchGAN discriminator (``n_layers=3``: the "70 x 70" one)::

    Conv 4x4 C -> d, LeakyReLU(0.2)
    Conv 4x4 d -> 2d, IN, LReLU;  Conv 4x4 2d -> 4d, IN, LReLU
    Conv 4x4 s1 4d -> 8d, IN, LReLU
    Conv 4x4 s1 8d -> 1                                               one raw score per patch

All paddings are 1. In CycleGAN the first three convolutions have stride 2, which on 256 px images gives
a 30 x 30 map of 70 x 70 px patches but on 32 px only 2 x 2 and on 28 px a single score (no patch map
at all). Here the number of stride-2 convolutions is the largest (at most ``n_layers``) that leaves a
map of at least ``min_patches`` x ``min_patches`` (default 4); the others get stride 1. That keeps the
original network at 64 px and above (6 x 6 at 64 px, 30 x 30 at 256 px) and gives 4 x 4 at 28 px, 5 x 5
at 32 px (strides 2, 2, 1: 46 x 46 px receptive fields) and 4 x 4 at 8 px. ``strides=`` sets them
explicitly.

StarGAN (Choi et al. 2018) for the K-class variant: the translator is the same ResNet generator with the
target class's one-hot maps (K constant planes) concatenated to the input image and affine instance
norm; the discriminator is a stack of 4x4 stride-2 convolutions with LeakyReLU(0.01) and no norm, then
an adversarial head (Conv 3x3 -> a patch map) and a class head (a convolution covering the whole last
map -> K logits). StarGAN uses 6 stride-2 layers at 128 px (a 2 x 2 map); here the number is the
largest (at most ``repeat_num``) leaving a map of at least 2 x 2 (3 at 28 px: 3 x 3; 4 at 32 px: 2 x 2).

Initialisation: every convolution N(0, 0.02) with zero bias, norm scales N(1, 0.02) with zero shift,
as CycleGAN's ``init_weights(init_type="normal", gain=0.02)`` does (StarGAN's own code kept PyTorch
defaults; one rule for both families here). Widths default to the papers' 64; on a CPU 16-32 is the
practical range (the parameter count grows with the square of the width).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def init_normal_(module: nn.Module, std: float = 0.02) -> None:
    """CycleGAN's "normal" init: conv/linear weights N(0, std), biases 0, norm scales N(1, std)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


class ResnetBlock(nn.Module):
    """x + [pad, conv 3x3, IN, ReLU, pad, conv 3x3, IN](x) with reflection padding."""

    def __init__(self, channels: int, affine: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=affine),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=affine),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator: c7s1-g, two stride-2 downsamplings, ``n_blocks`` residual blocks,
    two upsamplings, c7s1-C + tanh. Maps (N, in_channels, H, W) in [-1, 1] to (N, out_channels, H, W)
    for H, W divisible by 4 (and at least 8)."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        ngf: int = 64,
        n_blocks: int = 6,
        affine_norm: bool = False,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7),
            nn.InstanceNorm2d(ngf, affine=affine_norm),
            nn.ReLU(True),
        ]
        for i in range(2):  # downsampling: g -> 2g -> 4g
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c, affine=affine_norm)]
            layers.append(nn.ReLU(True))
        layers += [ResnetBlock(4 * ngf, affine_norm) for _ in range(n_blocks)]
        for i in range(2):  # upsampling: 4g -> 2g -> g
            c = ngf * 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(c // 2, affine=affine_norm),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_normal_(self)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4 or min(h, w) < 8:
            # two stride-2 convolutions and two x2 transposed ones only give back H x W when 4 | H, W
            raise ValueError(f"ResnetGenerator needs sides divisible by 4 and >= 8, got {h} x {w}; resize or pad")
        return self.model(x)


def _patch_map_side(size: int, strides: tuple[int, ...]) -> int:
    """Output side of a chain of 4x4 convolutions with padding 1 and the given strides."""
    for s in strides:
        size = (size + 2 - 4) // s + 1
    return size


def patchgan_strides(img_size: int, n_layers: int = 3, min_patches: int = 4) -> tuple[int, ...]:
    """Strides of the PatchGAN's ``n_layers + 2`` convolutions: the first ``k`` are 2, the rest 1, with ``k``
    the largest number (<= ``n_layers``) leaving a patch map of at least ``min_patches`` per side."""
    for k in range(n_layers, -1, -1):
        strides = (2,) * k + (1,) * (n_layers + 2 - k)
        if _patch_map_side(img_size, strides) >= min_patches:
            return strides
    raise ValueError(f"a {img_size} px image is too small for a PatchGAN with a {min_patches} x {min_patches} map")


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: (N, C, H, W) -> (N, 1, h, w) raw scores, one per overlapping patch.

    ``strides`` defaults to :func:`patchgan_strides` for ``img_size`` (the original 2, 2, 2, 1, 1 from
    64 px up; 2, 2, 1, 1, 1 at 28-32 px).
    """

    def __init__(
        self,
        in_channels: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        img_size: int = 256,
        strides: tuple[int, ...] | None = None,
        min_patches: int = 4,
    ) -> None:
        super().__init__()
        strides = tuple(strides) if strides is not None else patchgan_strides(img_size, n_layers, min_patches)
        if len(strides) != n_layers + 2:
            raise ValueError(f"strides {strides} must have n_layers + 2 = {n_layers + 2} entries")
        self.strides = strides
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, strides[0], 1), nn.LeakyReLU(0.2, True)]
        c = ndf
        for i in range(1, n_layers + 1):  # widths 2d, 4d, 8d (capped at 8d as in CycleGAN)
            c_out = ndf * min(2**i, 8)
            layers += [nn.Conv2d(c, c_out, 4, strides[i], 1), nn.InstanceNorm2d(c_out), nn.LeakyReLU(0.2, True)]
            c = c_out
        layers.append(nn.Conv2d(c, 1, 4, strides[-1], 1))
        self.model = nn.Sequential(*layers)
        init_normal_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def class_maps(labels: Tensor, num_classes: int, height: int, width: int) -> Tensor:
    """One-hot class maps (N, K, H, W): plane ``labels[i]`` of sample i is 1, the others 0."""
    onehot = F.one_hot(labels.long(), num_classes).float()
    return onehot[:, :, None, None].expand(-1, -1, height, width)


class ConditionalResnetGenerator(nn.Module):
    """StarGAN-style translator G(x, c): the ResNet generator applied to the image concatenated with the
    one-hot maps of the target class ``c`` (affine instance norm, as StarGAN)."""

    def __init__(self, img_channels: int, num_classes: int, ngf: int = 64, n_blocks: int = 6) -> None:
        super().__init__()
        self.img_channels, self.num_classes = img_channels, num_classes
        self.net = ResnetGenerator(img_channels + num_classes, img_channels, ngf, n_blocks, affine_norm=True)

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        if target.shape != (x.shape[0],):
            raise ValueError(f"target must be one class index per image ({x.shape[0]},), got {tuple(target.shape)}")
        return self.net(torch.cat([x, class_maps(target, self.num_classes, *x.shape[-2:]).to(x)], dim=1))


def stargan_num_downsamplings(img_size: int, repeat_num: int = 6, min_map: int = 2) -> int:
    """Largest number (<= ``repeat_num``) of 4x4 stride-2 convolutions leaving a map of >= ``min_map``."""
    for k in range(repeat_num, 0, -1):
        if _patch_map_side(img_size, (2,) * k) >= min_map:
            return k
    raise ValueError(f"a {img_size} px image is too small for the StarGAN discriminator")


class ConditionalPatchDiscriminator(nn.Module):
    """StarGAN-style discriminator: ``forward(x)`` returns ``{"adv": (N, 1, h, w) patch scores,
    "cls_logits": (N, K)}``; the class head sees the whole last feature map."""

    def __init__(
        self, img_channels: int, num_classes: int, img_size: int, ndf: int = 64, repeat_num: int = 6
    ) -> None:
        super().__init__()
        k = stargan_num_downsamplings(img_size, repeat_num)
        layers: list[nn.Module] = []
        c_in, c = img_channels, ndf
        for _ in range(k):
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.01, True)]
            c_in, c = c, 2 * c
        self.trunk = nn.Sequential(*layers)
        side = _patch_map_side(img_size, (2,) * k)
        self.adv = nn.Conv2d(c_in, 1, 3, 1, 1)
        self.cls = nn.Conv2d(c_in, num_classes, side)  # one output position: logits over K classes
        self.img_size, self.num_classes = img_size, num_classes
        init_normal_(self)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            raise ValueError(f"this discriminator was built for {self.img_size} px images, got {tuple(x.shape[-2:])}")
        h = self.trunk(x)
        return {"adv": self.adv(h), "cls_logits": self.cls(h).flatten(1)}
