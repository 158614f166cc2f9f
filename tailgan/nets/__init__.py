"""GAN generators and discriminators, one file per architecture.

Generators: ``forward(z, labels) -> images in [-1, 1]`` with attributes ``z_dim``, ``num_classes``,
``img_channels``, ``img_size``. Discriminators: ``forward(x, labels) -> dict`` with ``"adv"`` (B,) and,
depending on ``head``, ``"embed"``/``"proxy"`` or ``"cls_logits"``; ``features(x)`` gives the pooled
trunk features (see :class:`~tailgan.nets.layers.DiscriminatorHead`).
"""

from tailgan.nets.biggan import BigGANDiscriminator, BigGANGenerator
from tailgan.nets.dcgan import DCGANDecoder, DCGANDiscriminator, DCGANEncoder, DCGANGenerator
from tailgan.nets.layers import HEADS, DiscriminatorHead

__all__ = [
    "HEADS",
    "BigGANDiscriminator",
    "BigGANGenerator",
    "DCGANDecoder",
    "DCGANDiscriminator",
    "DCGANEncoder",
    "DCGANGenerator",
    "DiscriminatorHead",
]
