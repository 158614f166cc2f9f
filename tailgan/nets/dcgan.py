"""DCGAN-like generator and discriminator of ECOGAN's Lightning pipeline (spec section 7.1).

At 64 px, with c = ``conv_dim`` (64 in ECOGAN) and C image channels:

Generator, z in R^z_dim (128):
    h = z * Embedding(K, z_dim)[y]                 multiplicative label conditioning, N(0, 1) table
    Linear(z_dim -> 4c*4*4) + LeakyReLU(0.2)       -> 4c x 4 x 4     (weights N(0, 0.02))
    ConvT(4c -> 2c, k4 s2 p1) + BN + LeakyReLU     -> 2c x 8 x 8
    ConvT(2c -> 2c) + BN + LeakyReLU               -> 2c x 16 x 16
    ConvT(2c -> c) + BN + LeakyReLU                -> c x 32 x 32
    ConvT(c -> C) + tanh                           -> C x 64 x 64

Discriminator (no spectral norm, no batch norm):
    Conv(C -> c, k4 s2 p1) + LeakyReLU(0.2)        -> c x 32 x 32
    Conv(c -> 2c) + LeakyReLU                      -> 2c x 16 x 16
    Conv(2c -> 2c) + LeakyReLU                     -> 2c x 8 x 8
    Conv(2c -> 4c) + LeakyReLU                     -> 4c x 4 x 4
    global sum pooling -> h (4c)                   then a :class:`DiscriminatorHead`

At 32 px the middle 2c -> 2c stage is dropped on both sides (generator 8 -> 16 -> 32 via
4c -> 2c -> c -> C; discriminator 32 -> 16 -> 8 -> 4 via C -> c -> 2c -> 4c), so the 4 x 4 bottleneck,
the pooled width 4c and the heads are the same as at 64 px.

Initialisation follows ECOGAN's trained code: the generator's Linear weights N(0, 0.02) (its init helper
only matches ``nn.Conv2d``, so the transposed convs keep PyTorch defaults, as do all biases); the
label-embedding table keeps ``nn.Embedding``'s N(0, 1); the discriminator keeps PyTorch defaults (its
init helper is never called). ECOGAN's encoder also holds a Linear(4096 -> 128) that the discriminator
never uses; it is left out here.

The decoder and encoder are separate modules so that autoencoder pre-training (BAGAN, EBGAN) can reuse
them: ``DCGANGenerator.decoder`` maps a latent to an image, ``DCGANDiscriminator.encoder`` maps an image
to the 4c x 4 x 4 feature map.
"""

from __future__ import annotations

from torch import Tensor, nn

from tailgan.nets.layers import DiscriminatorHead

IMG_SIZES = (32, 64)


def _check_common(num_classes: int, img_channels: int, img_size: int, conv_dim: int) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if img_channels not in (1, 3):
        raise ValueError(f"img_channels must be 1 or 3, got {img_channels}")
    if img_size not in IMG_SIZES:
        raise ValueError(f"the DCGAN nets support img_size 32 or 64, got {img_size}; resize the images")
    if conv_dim < 1:
        raise ValueError(f"conv_dim must be >= 1, got {conv_dim}")


def _widths(img_size: int, conv_dim: int) -> list[int]:
    """Channel widths from the 4 x 4 bottleneck outwards (generator order)."""
    c = conv_dim
    return [4 * c, 2 * c, 2 * c, c] if img_size == 64 else [4 * c, 2 * c, c]


class DCGANDecoder(nn.Module):
    """Latent (B, z_dim) -> image (B, C, S, S) in [-1, 1]; the generator without its label embedding."""

    def __init__(self, z_dim: int, img_channels: int = 3, img_size: int = 64, conv_dim: int = 64) -> None:
        super().__init__()
        widths = _widths(img_size, conv_dim)
        self.bottom_channels = widths[0]
        self.linear = nn.Sequential(nn.Linear(z_dim, widths[0] * 4 * 4), nn.LeakyReLU(0.2, inplace=True))
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1),
                nn.BatchNorm2d(w_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], img_channels, 4, stride=2, padding=1), nn.Tanh()]
        self.deconvs = nn.Sequential(*layers)
        nn.init.normal_(self.linear[0].weight, 0.0, 0.02)

    def forward(self, h: Tensor) -> Tensor:
        x = self.linear(h).view(h.shape[0], self.bottom_channels, 4, 4)
        return self.deconvs(x)


class DCGANEncoder(nn.Module):
    """Image (B, C, S, S) -> feature map (B, 4c, 4, 4): the discriminator trunk."""

    def __init__(self, img_channels: int = 3, img_size: int = 64, conv_dim: int = 64) -> None:
        super().__init__()
        widths = [img_channels] + _widths(img_size, conv_dim)[::-1]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x)


class DCGANGenerator(nn.Module):
    """ECOGAN's DCGAN-like conditional generator: ``forward(z, labels)`` -> images in [-1, 1].

    Args:
        num_classes: K, the number of classes.
        img_channels: 1 or 3.
        img_size: 32 or 64 (64 in ECOGAN; 32 drops one up-sampling stage, see the module docstring).
        z_dim: latent size (128 in ECOGAN).
        conv_dim: base width c (64 in ECOGAN).
    """

    def __init__(
        self,
        num_classes: int,
        img_channels: int = 3,
        img_size: int = 64,
        z_dim: int = 128,
        conv_dim: int = 64,
    ) -> None:
        super().__init__()
        _check_common(num_classes, img_channels, img_size, conv_dim)
        if z_dim < 1:
            raise ValueError(f"z_dim must be >= 1, got {z_dim}")
        self.num_classes = num_classes
        self.img_channels = img_channels
        self.img_size = img_size
        self.z_dim = z_dim
        self.embedding = nn.Embedding(num_classes, z_dim)
        self.decoder = DCGANDecoder(z_dim, img_channels, img_size, conv_dim)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (batch, {self.z_dim}), got shape {tuple(z.shape)}")
        if labels.shape != (z.shape[0],):
            raise ValueError(f"labels must be ({z.shape[0]},) to match z, got shape {tuple(labels.shape)}")
        return self.decoder(z * self.embedding(labels))


class DCGANDiscriminator(nn.Module):
    """ECOGAN's DCGAN-like discriminator: ``forward(x, labels)`` -> dict (see :class:`DiscriminatorHead`).

    ``features(x)`` is the sum-pooled trunk output h (B, 4c), which the heads read.

    Args:
        num_classes: K, the number of classes.
        img_channels: 1 or 3.
        img_size: 32 or 64.
        conv_dim: base width c (64 in ECOGAN; the pooled feature has 4c = 256 entries).
        head: "uncond", "projection", "acgan" or "proxy" (ECOGAN: "proxy").
        embed_dim: embedding width of the "proxy" head (512 in ECOGAN).
        num_cls_outputs: outputs of the "acgan" head (default K; K + 1 for BAGAN-style heads).
    """

    def __init__(
        self,
        num_classes: int,
        img_channels: int = 3,
        img_size: int = 64,
        conv_dim: int = 64,
        head: str = "proxy",
        embed_dim: int = 512,
        num_cls_outputs: int | None = None,
    ) -> None:
        super().__init__()
        _check_common(num_classes, img_channels, img_size, conv_dim)
        self.num_classes = num_classes
        self.img_channels = img_channels
        self.img_size = img_size
        self.encoder = DCGANEncoder(img_channels, img_size, conv_dim)
        self.head = DiscriminatorHead(
            self.encoder.out_channels, num_classes, head, embed_dim, num_cls_outputs
        )

    def features(self, x: Tensor) -> Tensor:
        """Globally sum-pooled trunk features h, (B, 4c)."""
        expected = (self.img_channels, self.img_size, self.img_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must be (batch, {', '.join(map(str, expected))}), got shape {tuple(x.shape)}"
            )
        return self.encoder(x).sum(dim=(2, 3))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        return self.head(self.features(x), labels)
