"""Network pieces of the autoencoder-initialised balancing GANs (BAGAN, BAGAN-GP / "EBGAN", IDA-GAN).

All of them reuse the DCGAN conv stacks of :mod:`tailgan.nets.dcgan` (ECOGAN's PyTorch port of BAGAN
and BAGAN-GP uses the same blocks, spec ``bagan-ebgan-idagan...`` sections 2.7 and 3.4), with c = ``conv_dim``
and F = 4c * 4 * 4 the flattened trunk output (4096 for c = 64):

* :class:`Encoder`: conv trunk -> flatten -> Linear(F -> latent) [-> LeakyReLU(0.2) for BAGAN-GP, whose
  encoder puts an activation on the latent].
* :class:`VariationalEncoder`: conv trunk -> flatten -> two Linear(F -> latent) heads, mean and log-variance.
* :class:`ClassGaussianGenerator`: BAGAN's generator. A decoder fed with class-conditional latents
  N(mu_c, Sigma_c); ``forward(z, labels)`` takes standard-normal z and maps it to mu_y + A_y z with
  A_y A_y^T = Sigma_y, so any code that samples ``G(randn, labels)`` samples the class Gaussians.
* :class:`ClassifierDiscriminator`: conv trunk -> flatten -> one or more Linear(F -> K + 1) heads (BAGAN's
  (K+1)-way D whose last class is "fake"; IDA-GAN's two heads).
* :class:`FlatProjectionDiscriminator`: BAGAN-GP's conditional D. Image branch trunk -> flatten (F), label
  branch Embedding(K, E) -> Linear(E -> F) -> LeakyReLU(0.2), their element-wise product -> [Linear(F -> H)]
  -> Linear(-> 1). ``hidden=512`` is the authors' Keras "cWGAN" D; ``hidden=0`` the ECOGAN port's.

Layers keep PyTorch's default initialisation except where :class:`~tailgan.nets.dcgan.DCGANDecoder` sets
its own (the Keras original draws conv kernels from N(0, 0.02); the ECOGAN port does not).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tailgan.nets.dcgan import DCGANEncoder, _check_common


def _flat_features(trunk: DCGANEncoder) -> int:
    return trunk.out_channels * 4 * 4


def _check_images(x: Tensor, img_channels: int, img_size: int) -> None:
    expected = (img_channels, img_size, img_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"x must be (batch, {', '.join(map(str, expected))}), got shape {tuple(x.shape)}")


class Encoder(nn.Module):
    """Image (B, C, S, S) -> latent code (B, latent_dim): DCGAN conv trunk, flatten, linear.

    Args:
        latent_dim: code size (128 in the ECOGAN port and BAGAN-GP, 100 in the Keras BAGAN).
        img_channels, img_size, conv_dim: as :class:`~tailgan.nets.dcgan.DCGANEncoder`.
        activation: LeakyReLU(0.2) on the code (BAGAN-GP's encoder); BAGAN's is linear.
    """

    def __init__(
        self, latent_dim: int, img_channels: int = 3, img_size: int = 64, conv_dim: int = 64, activation: bool = False
    ) -> None:
        super().__init__()
        _check_common(1, img_channels, img_size, conv_dim)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.img_channels, self.img_size, self.latent_dim = img_channels, img_size, latent_dim
        self.trunk = DCGANEncoder(img_channels, img_size, conv_dim)
        self.linear = nn.Linear(_flat_features(self.trunk), latent_dim)
        self.activation = nn.LeakyReLU(0.2) if activation else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        _check_images(x, self.img_channels, self.img_size)
        return self.activation(self.linear(self.trunk(x).flatten(1)))


class VariationalEncoder(nn.Module):
    """Image -> (mean, log-variance) of the diagonal Gaussian posterior q(z | x), each (B, latent_dim)."""

    def __init__(self, latent_dim: int, img_channels: int = 3, img_size: int = 64, conv_dim: int = 64) -> None:
        super().__init__()
        _check_common(1, img_channels, img_size, conv_dim)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.img_channels, self.img_size, self.latent_dim = img_channels, img_size, latent_dim
        self.trunk = DCGANEncoder(img_channels, img_size, conv_dim)
        self.mean = nn.Linear(_flat_features(self.trunk), latent_dim)
        self.logvar = nn.Linear(_flat_features(self.trunk), latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_images(x, self.img_channels, self.img_size)
        h = self.trunk(x).flatten(1)
        return self.mean(h), self.logvar(h)


class ClassGaussianGenerator(nn.Module):
    """BAGAN's generator: a decoder whose latent is drawn from a per-class Gaussian N(mu_c, Sigma_c).

    ``forward(z, labels)`` maps standard-normal noise z (B, z_dim) to the class latent
    mu_y + A_y z (A_y A_y^T = Sigma_y) and decodes it. The means, factors A and the number of images each
    Gaussian was fitted on are buffers, so they are saved in checkpoints and follow ``.to(device)``; until
    :meth:`set_class_gaussians` is called they are N(0, I).

    Args:
        decoder: latent (B, z_dim) -> image; e.g. :class:`~tailgan.nets.dcgan.DCGANDecoder`.
        num_classes: K.
        z_dim: latent size.
        img_channels, img_size: the decoder's output shape (for callers that read them).
    """

    def __init__(self, decoder: nn.Module, num_classes: int, z_dim: int, img_channels: int, img_size: int) -> None:
        super().__init__()
        if num_classes < 1 or z_dim < 1:
            raise ValueError(f"num_classes and z_dim must be >= 1, got {num_classes} and {z_dim}")
        self.decoder = decoder
        self.num_classes, self.z_dim, self.img_channels, self.img_size = num_classes, z_dim, img_channels, img_size
        self.register_buffer("class_mean", torch.zeros(num_classes, z_dim))
        self.register_buffer("class_scale", torch.eye(z_dim).repeat(num_classes, 1, 1))
        self.register_buffer("class_counts", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def set_class_gaussians(self, mean: Tensor, scale: Tensor, counts: Tensor) -> None:
        """Install per-class means (K, d), factors A (K, d, d) with A A^T = Sigma, and image counts (K,)."""
        k, d = self.num_classes, self.z_dim
        if mean.shape != (k, d) or scale.shape != (k, d, d) or counts.shape != (k,):
            raise ValueError(
                f"expected mean ({k}, {d}), scale ({k}, {d}, {d}), counts ({k},); got "
                f"{tuple(mean.shape)}, {tuple(scale.shape)}, {tuple(counts.shape)}"
            )
        self.class_mean.copy_(mean)
        self.class_scale.copy_(scale)
        self.class_counts.copy_(counts)

    def latent(self, z: Tensor, labels: Tensor) -> Tensor:
        """The class latents mu_y + A_y z for standard-normal z."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (batch, {self.z_dim}), got shape {tuple(z.shape)}")
        if labels.shape != (z.shape[0],):
            raise ValueError(f"labels must be ({z.shape[0]},) to match z, got shape {tuple(labels.shape)}")
        return self.class_mean[labels] + torch.einsum("bij,bj->bi", self.class_scale[labels], z)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.decoder(self.latent(z, labels))


class ClassifierDiscriminator(nn.Module):
    """Conv trunk -> flatten -> named linear heads of K + 1 outputs each; ``forward(x)`` -> {name: logits}.

    BAGAN uses one head ``"cls_logits"`` whose last output means "fake"; IDA-GAN two (see its docstring).
    """

    def __init__(
        self,
        num_classes: int,
        img_channels: int = 3,
        img_size: int = 64,
        conv_dim: int = 64,
        heads: tuple[str, ...] = ("cls_logits",),
    ) -> None:
        super().__init__()
        _check_common(num_classes, img_channels, img_size, conv_dim)
        if not heads:
            raise ValueError("heads must name at least one output head")
        self.num_classes, self.img_channels, self.img_size = num_classes, img_channels, img_size
        self.trunk = DCGANEncoder(img_channels, img_size, conv_dim)
        self.heads = nn.ModuleDict({name: nn.Linear(_flat_features(self.trunk), num_classes + 1) for name in heads})

    def forward(self, x: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        _check_images(x, self.img_channels, self.img_size)
        h = self.trunk(x).flatten(1)
        return {name: head(h) for name, head in self.heads.items()}


class FlatProjectionDiscriminator(nn.Module):
    """BAGAN-GP's conditional discriminator: one logit for (image, label); ``forward(x, y)`` -> {"adv": (B,)}.

    Args:
        num_classes: K.
        img_channels, img_size, conv_dim: the image trunk (:class:`~tailgan.nets.dcgan.DCGANEncoder`).
        embed_dim: label embedding width E (512 in both implementations).
        hidden: width of the linear layer between the product and the logit (512 in the authors' Keras
            code; 0 = none, the ECOGAN port).
    """

    def __init__(
        self,
        num_classes: int,
        img_channels: int = 3,
        img_size: int = 64,
        conv_dim: int = 64,
        embed_dim: int = 512,
        hidden: int = 512,
    ) -> None:
        super().__init__()
        _check_common(num_classes, img_channels, img_size, conv_dim)
        if embed_dim < 1 or hidden < 0:
            raise ValueError(f"embed_dim must be >= 1 and hidden >= 0, got {embed_dim} and {hidden}")
        self.num_classes, self.img_channels, self.img_size = num_classes, img_channels, img_size
        self.trunk = DCGANEncoder(img_channels, img_size, conv_dim)
        features = _flat_features(self.trunk)
        self.label_branch = nn.Sequential(
            nn.Embedding(num_classes, embed_dim), nn.Linear(embed_dim, features), nn.LeakyReLU(0.2)
        )
        layers: list[nn.Module] = (
            [nn.Linear(features, hidden), nn.Linear(hidden, 1)] if hidden else [nn.Linear(features, 1)]
        )
        self.out = nn.Sequential(*layers)

    def forward(self, x: Tensor, labels: Tensor) -> dict[str, Tensor]:
        _check_images(x, self.img_channels, self.img_size)
        if labels is None or labels.shape != (x.shape[0],):
            raise ValueError(f"labels must be ({x.shape[0]},) class indices for this conditional discriminator")
        h = self.trunk(x).flatten(1) * self.label_branch(labels)
        return {"adv": self.out(h).squeeze(1)}


__all__ = [
    "ClassGaussianGenerator",
    "ClassifierDiscriminator",
    "Encoder",
    "FlatProjectionDiscriminator",
    "VariationalEncoder",
]
