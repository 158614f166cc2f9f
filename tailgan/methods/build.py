"""Networks of a run, built from its ``model`` config section."""

from __future__ import annotations

from typing import Any

from torch import nn

from tailgan.errors import TailganError
from tailgan.nets import BigGANDiscriminator, BigGANGenerator, DCGANDiscriminator, DCGANGenerator

ARCH_DEFAULTS = {"dcgan": {"z_dim": 128, "conv_dim": 64}, "biggan": {"z_dim": 80, "conv_dim": 96}}


def _arch(model: Any, img_size: int) -> dict:
    if model.arch not in ARCH_DEFAULTS:
        raise TailganError(f"model.arch={model.arch!r} is unknown; use dcgan or biggan")
    if model.arch == "biggan" and img_size != 32:
        raise TailganError(f"the biggan networks are 32 px; set data.resolution=32 (got {img_size})")
    if model.arch == "dcgan" and img_size not in (32, 64):
        raise TailganError(f"the dcgan networks are 32 or 64 px; set data.resolution=32 or 64 (got {img_size})")
    d = ARCH_DEFAULTS[model.arch]
    return {"z_dim": model.z_dim or d["z_dim"], "conv_dim": model.conv_dim or d["conv_dim"]}


def build_generator(model: Any, num_classes: int, img_channels: int, img_size: int) -> nn.Module:
    a = _arch(model, img_size)
    if model.arch == "dcgan":
        return DCGANGenerator(num_classes, img_channels, img_size, z_dim=a["z_dim"], conv_dim=a["conv_dim"])
    return BigGANGenerator(
        num_classes,
        img_channels,
        img_size,
        z_dim=a["z_dim"],
        conv_dim=a["conv_dim"],
        shared_dim=model.shared_dim,
        attention=model.attention,
    )


def build_discriminator(
    model: Any, num_classes: int, img_channels: int, img_size: int, head: str, num_cls_outputs: int | None = None
) -> nn.Module:
    a = _arch(model, img_size)
    if model.arch == "dcgan":
        return DCGANDiscriminator(
            num_classes,
            img_channels,
            img_size,
            conv_dim=a["conv_dim"],
            head=head,
            embed_dim=model.embed_dim,
            num_cls_outputs=num_cls_outputs,
        )
    return BigGANDiscriminator(
        num_classes,
        img_channels,
        img_size,
        conv_dim=a["conv_dim"],
        head=head,
        embed_dim=model.embed_dim,
        num_cls_outputs=num_cls_outputs,
        attention=model.attention,
        shortcut_after_relu=getattr(model, "shortcut_after_relu", False),
    )
