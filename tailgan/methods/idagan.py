"""IDA-GAN (Yang & Zhou): VAE pre-training and a discriminator whose output is split into two (K+1)-way heads.

**Partly reconstructed.** Neither the IDA-GAN paper text nor its code was available (spec
``bagan-ebgan-idagan-dfg-cyclegan-cbl.md`` section 4). Verified from ECOGAN's README and schematic:
pre-training uses a *variational* autoencoder instead of BAGAN's plain one, and D's single output is split
into two classifier heads on one shared trunk: head A with classes (C_1..C_K, C_fake) and head B with classes
(C_1..C_K, C_real). Everything else below is [INFERRED] and follows BAGAN (:mod:`tailgan.methods.bagan`)
wherever the spec says so; confirm against the paper before claiming faithfulness.

- [INFERRED] VAE: encoder -> (mu(x), log sigma^2(x)); z = mu + sigma * eps; x^ = G.decoder(z);
  L_VAE = mean over pixels of (x^ - x)^2 (``options.ae_loss``) + ``options.vae_beta`` * KL(q(z|x) || N(0, I))
  / (C H W) (the KL summed over latent dimensions, averaged over the batch and put on the per-pixel scale of
  the reconstruction term). G starts from the VAE decoder, D's trunk from the VAE encoder's trunk.
- [INFERRED] Class-conditional latents as in BAGAN: one Gaussian per class fitted on mu(x) of the class's
  training images; G(z, y) = decoder(mu_y + A_y z).
- [INFERRED] D's targets. Head A (last output = "fake"): real -> its class, fake -> C_fake (BAGAN's D loss).
  Head B (last output = "real"): real -> C_real, fake -> the class it was generated for. L_D is the sum of
  the two cross-entropies, each a mean over the concatenated batch of B reals and m fakes.
- [INFERRED] G's targets are the configurable "head semantics":
  ``options.g_head_a``: "class" (default; G wants head A to call G(z_c) class c, BAGAN's G loss) or "none";
  ``options.g_head_b``: "real" (default; G wants head B to call G(z_c) real) or "class" (G wants head B to
  call it class c, the literal reading of the spec's reconstruction) or "none".
  The defaults make both heads adversarial: head A separates real classes from fakes, head B fake classes
  from reals, and G must fool both. Note that ``g_head_b=class`` agrees with D's own head-B target, so on
  its own (``g_head_a=none g_head_b=class``) it gives G no adversarial signal at all.

Fake-label counts and class ratios, networks and the ``idagan`` preset's optimiser settings are BAGAN's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from tailgan.errors import TailganError
from tailgan.methods.autoencoder import reconstruction_loss, vae_kl
from tailgan.methods.bagan import BAGAN, BAGANOptions
from tailgan.nets.autoencoder import VariationalEncoder

HEAD_A, HEAD_B = "head_fake", "head_real"  # (C_1..C_K, C_fake) and (C_1..C_K, C_real)


def idagan_d_loss(
    real_a: Tensor, fake_a: Tensor, real_b: Tensor, fake_b: Tensor, real_labels: Tensor, fake_labels: Tensor
) -> Tensor:
    """CE_A(reals -> class, fakes -> K) + CE_B(reals -> K, fakes -> their class), each a mean over B + m."""
    k = real_a.shape[1] - 1
    extra_r, extra_f = real_labels.new_full((len(real_a),), k), fake_labels.new_full((len(fake_a),), k)
    loss_a = F.cross_entropy(torch.cat([real_a, fake_a]).float(), torch.cat([real_labels, extra_f]))
    loss_b = F.cross_entropy(torch.cat([real_b, fake_b]).float(), torch.cat([extra_r, fake_labels]))
    return loss_a + loss_b


def idagan_g_loss(
    fake_a: Tensor, fake_b: Tensor, labels: Tensor, head_a: str = "class", head_b: str = "real"
) -> Tensor:
    """G's loss on the two heads of D(G(z_c)): CE_A(-> c) if head_a="class"; CE_B(-> K or -> c) by head_b."""
    if head_a not in ("class", "none") or head_b not in ("real", "class", "none"):
        raise ValueError(f"head_a must be class|none and head_b real|class|none, got {head_a!r}, {head_b!r}")
    if head_a == "none" and head_b == "none":
        raise ValueError("at least one head must give the generator a target")
    loss = fake_a.new_zeros((), dtype=torch.float32)
    if head_a == "class":
        loss = loss + F.cross_entropy(fake_a.float(), labels)
    if head_b != "none":
        target = labels.new_full((len(labels),), fake_b.shape[1] - 1) if head_b == "real" else labels
        loss = loss + F.cross_entropy(fake_b.float(), target)
    return loss


@dataclass
class IDAGANOptions(BAGANOptions):
    vae_beta: float = 1.0  # weight of the KL term (on the per-pixel scale, see the module docstring)
    g_head_a: Literal["class", "none"] = "class"
    g_head_b: Literal["real", "class", "none"] = "real"


class IDAGAN(BAGAN):
    """IDA-GAN as reconstructed in the module docstring (VAE pre-training, two (K+1)-way D heads)."""

    name = "idagan"
    Options = IDAGANOptions
    heads = (HEAD_A, HEAD_B)

    def check_options(self) -> None:
        super().check_options()
        o = self.options
        if o.g_head_a == "none" and o.g_head_b == "none":
            raise TailganError("options.g_head_a and options.g_head_b are both 'none': G would have no loss")
        if not o.vae_beta >= 0:
            raise TailganError(f"options.vae_beta must be >= 0, got {o.vae_beta}")

    def make_encoder(self, z_dim: int, conv_dim: int) -> torch.nn.Module:
        return VariationalEncoder(z_dim, self.img_channels, self.img_size, conv_dim)

    def codes(self, x: Tensor) -> Tensor:
        return self.encoder(x)[0]  # the posterior means

    def ae_loss(self, x: Tensor, y: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        mean, logvar = self.encoder(x)
        z = mean
        if generator is not None:  # None: a deterministic pass (validation), decode the mean
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + (0.5 * logvar).exp() * eps
        recon = reconstruction_loss(self.nets["G"].decoder(z), x, self.options.ae_loss)
        kl = vae_kl(mean, logvar)
        loss = recon + self.options.vae_beta * kl / x[0].numel()
        return {"loss": loss, "recon": recon, "kl": kl}

    def pretrain_key_extra(self) -> dict:
        return {**super().pretrain_key_extra(), "vae_beta": self.options.vae_beta}

    def pretrain_begin(self, data: Any) -> bool:
        warnings.warn(
            "idagan is a reconstruction: the IDA-GAN paper and code were not available, see "
            "tailgan.methods.idagan for which details are inferred",
            stacklevel=2,
        )
        return super().pretrain_begin(data)

    def heads_d_loss(self, out: dict[str, Tensor], n_real: int, real_labels: Tensor, fake_labels: Tensor) -> Tensor:
        a, b = out[HEAD_A], out[HEAD_B]
        return idagan_d_loss(a[:n_real], a[n_real:], b[:n_real], b[n_real:], real_labels, fake_labels)

    def heads_g_loss(self, out: dict[str, Tensor], labels: Tensor) -> Tensor:
        return idagan_g_loss(out[HEAD_A], out[HEAD_B], labels, self.options.g_head_a, self.options.g_head_b)


PRESETS = {
    "idagan": {
        "method": "idagan",
        "model": {"arch": "dcgan", "z_dim": 128},
        "optim": {"batch_size": 128, "g_lr": 5e-5, "d_lr": 5e-5, "betas": [0.5, 0.999], "eps": 1e-8, "d_steps": 1},
        "ema": False,
        "flip": False,
        "options": {"pretrain_epochs": 150, "ae_loss": "mse"},
    },
}
DEFAULT_PRESET = "idagan"
