"""BAGAN (Mariani et al. 2018): autoencoder initialisation, per-class latent Gaussians, a (K+1)-way D.

Three phases (spec ``bagan-ebgan-idagan-dfg-cyclegan-cbl.md`` section 2):

1. Pre-training (``options.pretrain``, on by default): a plain autoencoder x -> G.decoder(E(x)) trained with
   the mean squared error for ``options.pretrain_epochs`` epochs (150 in ECOGAN's port; the Keras original
   uses as many epochs as the GAN), Adam with the GAN's settings unless ``options.pretrain_lr`` /
   ``options.pretrain_betas`` say otherwise. Encoder and decoder are both trained. ECOGAN's port builds
   its optimiser from a dict with a duplicated ``params`` key and so trains only the decoder (a bug);
   ``options.pretrain_decoder_only=true`` reproduces it.
2. Initialisation: G is the decoder; D's conv trunk is copied from the encoder's
   (``options.d_init_from_encoder``); one Gaussian N(mu_c, Sigma_c) per class is fitted on the encoder codes
   of that class's training images (mean and ``np.cov``). A class with no more images than latent dimensions
   has a singular covariance and gets ``options.cov_jitter`` times the mean variance added to its diagonal,
   with a warning. The Gaussians are frozen buffers of G: G(z, y) = decoder(mu_y + A_y z), z ~ N(0, I),
   A_y A_y^T = Sigma_y, so sampling any class needs nothing but G. Without pre-training the Gaussians
   are fitted on the codes of the untrained encoder.
3. Adversarial training. Per generator update, ``optim.d_steps`` times (1 in BAGAN) a D step on a real
   batch (x, y) of size B and m fakes x~ = G(z, c), c ~ q^D:

       L_D = CE over the concatenated batch, target y for the reals and K ("fake") for the fakes
       L_G = CE(D(G(z, c)), c) over B + m fakes (B with ``fake_batch=b``), c ~ q^G

   m = ceil(B / K) (``options.fake_batch=ceil_b_over_k``, the original: fakes are about 1/(K+1) of D's
   batch) or B (``b``, ECOGAN's port). The class distribution q of the fake labels is uniform (default) or
   the original's "rebalance" q_c = max(2/K - p_c, 0), renormalised, with p_c the training frequency of
   class c (``options.class_ratios_d`` for D steps, ``options.class_ratios_g`` for G steps).

Networks are those of ECOGAN's PyTorch port (spec 2.7), which produced the published table 3 numbers: the
DCGAN decoder of :mod:`tailgan.nets.dcgan`, an encoder with a linear code head, and D = the encoder's conv
trunk, flattened, + Linear(F -> K + 1). The Keras original's networks (dense 1024 decoder with up-sampling,
LeakyReLU 0.3 + dropout 0.3 trunk) are not implemented. Preset ``bagan``: the port's settings (Adam 5e-5,
betas (0.5, 0.999), batch 128, latent 128, one D step per G step, 150 autoencoder epochs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from tailgan.errors import TailganError
from tailgan.methods.autoencoder import (
    AutoencoderPretraining,
    PretrainOptions,
    check_pretrain_options,
    dcgan_dims,
    encode_all,
    fit_class_gaussians,
    gaussian_factors,
    reconstruction_loss,
    refresh_ema,
)
from tailgan.methods.base import AdversarialMethod, DLoss
from tailgan.nets.autoencoder import ClassGaussianGenerator, ClassifierDiscriminator, Encoder
from tailgan.nets.dcgan import DCGANDecoder


def bagan_d_loss(real_logits: Tensor, real_labels: Tensor, fake_logits: Tensor) -> Tensor:
    """BAGAN's discriminator loss: one cross-entropy mean over reals (target: their class) and fakes (target K).

    ``real_logits`` (B, K + 1), ``fake_logits`` (m, K + 1); the last output is the "fake" class.
    """
    fake_class = real_logits.shape[1] - 1
    logits = torch.cat([real_logits, fake_logits]).float()
    targets = torch.cat([real_labels, real_labels.new_full((len(fake_logits),), fake_class)])
    return F.cross_entropy(logits, targets)


def bagan_g_loss(fake_logits: Tensor, labels: Tensor) -> Tensor:
    """BAGAN's generator loss: cross-entropy of D's (K + 1)-way output on G(z_c) against the class c."""
    return F.cross_entropy(fake_logits.float(), labels)


def rebalance_ratios(counts: Tensor) -> Tensor:
    """The original's "rebalance" class distribution: q_c = max(2/K - p_c, 0) / sum, p_c = n_c / N."""
    p = counts.double() / counts.sum()
    q = (2.0 / len(counts) - p).clamp_min(0)
    return (q / q.sum()).float()


@dataclass
class BAGANOptions(PretrainOptions):
    pretrain_epochs: int = 150
    pretrain_decoder_only: bool = False  # true: ECOGAN's port's bug (only the decoder learns)
    d_init_from_encoder: bool = True  # D's conv trunk starts from the pre-trained encoder's
    fake_batch: Literal["ceil_b_over_k", "b"] = "ceil_b_over_k"  # fakes per D step: ceil(B/K) or B
    class_ratios_d: Literal["uniform", "rebalance"] = "uniform"  # class distribution of D-step fakes
    class_ratios_g: Literal["uniform", "rebalance"] = "uniform"  # ... and of G-step fakes
    cov_jitter: float = 1e-3  # diagonal jitter (x mean variance) for classes with n_c <= latent dims


class BAGAN(AutoencoderPretraining, AdversarialMethod):
    """BAGAN; see the module docstring. ``nets``: G (:class:`ClassGaussianGenerator`), D (one K+1 head)."""

    name = "bagan"
    Options = BAGANOptions
    heads: tuple[str, ...] = ("cls_logits",)

    def build(self) -> None:
        cfg, o = self.cfg, self.options
        check_pretrain_options(o)
        self.check_options()
        z_dim, conv_dim = dcgan_dims(cfg.model, self.img_size)
        c, s, k = self.img_channels, self.img_size, self.num_classes
        # G and the encoder are built before D so that their initial weights (and so the pre-training)
        # do not depend on D's settings
        self.nets["G"] = ClassGaussianGenerator(DCGANDecoder(z_dim, c, s, conv_dim), k, z_dim, c, s)
        self.encoder = self.make_encoder(z_dim, conv_dim).to(self.device)
        self.nets["D"] = ClassifierDiscriminator(k, c, s, conv_dim, heads=self.heads)
        self.add_gan_optimizers()
        self.build_pretraining()

    def check_options(self) -> None:
        if not self.options.cov_jitter >= 0:
            raise TailganError(f"options.cov_jitter must be >= 0, got {self.options.cov_jitter}")

    def make_encoder(self, z_dim: int, conv_dim: int) -> torch.nn.Module:
        return Encoder(z_dim, self.img_channels, self.img_size, conv_dim)

    # -- pre-training ----------------------------------------------------------------------------------------
    def codes(self, x: Tensor) -> Tensor:
        """The encoder codes the class Gaussians are fitted on."""
        return self.encoder(x)

    def ae_loss(self, x: Tensor, y: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        recon = reconstruction_loss(self.nets["G"].decoder(self.encoder(x)), x, self.options.ae_loss)
        return {"loss": recon, "recon": recon}

    def pretrain_key_extra(self) -> dict:
        return {"decoder_only": self.options.pretrain_decoder_only}

    def pretrain_modules(self) -> tuple[dict[str, torch.nn.Module], list[torch.nn.Parameter]]:
        G = self.nets["G"]
        params = list(G.decoder.parameters())
        if not self.options.pretrain_decoder_only:
            params += list(self.encoder.parameters())
        return {"encoder": self.encoder, "decoder": G.decoder}, params

    def after_pretrain(self, data: Any) -> None:
        if self.options.pretrain and self.options.d_init_from_encoder:
            self.nets["D"].trunk.load_state_dict(self.encoder.trunk.state_dict())
        self.fit_latents(data)
        refresh_ema(self)

    def fit_latents(self, data: Any) -> None:
        """Fit the per-class Gaussians on the encoder codes of the training images and install them in G."""
        was = self.encoder.training
        self.encoder.eval()
        codes = encode_all(self.codes, data.train.images, self.device)
        self.encoder.train(was)
        mean, cov, counts = fit_class_gaussians(codes, data.train.labels.to(self.device), self.num_classes)
        scale = gaussian_factors(cov, counts, self.options.cov_jitter, list(data.classes))
        self.nets["G"].set_class_gaussians(mean.float(), scale.float(), counts.to(self.device))

    # -- adversarial training --------------------------------------------------------------------------------
    def num_fakes(self, batch: int) -> int:
        return math.ceil(batch / self.num_classes) if self.options.fake_batch == "ceil_b_over_k" else batch

    def fake_labels(self, n: int, ratios: str) -> Tensor:
        if ratios == "uniform":
            return self.uniform_labels(n)
        counts = self.nets["G"].class_counts
        if counts.sum() == 0:
            raise TailganError("class_ratios=rebalance needs the class counts, which the pretrain phase sets first")
        q = rebalance_ratios(counts).to(self.device)
        return torch.multinomial(q, n, replacement=True, generator=self.gen)

    def d_labels(self, real_labels: Tensor) -> tuple[Tensor, ...]:
        return (self.fake_labels(self.num_fakes(len(real_labels)), self.options.class_ratios_d),)

    def d_loss(self, x_r: Tensor, y_r: Tensor, x_f: Tensor, *labels: Tensor) -> DLoss:
        # one pass over the concatenated batch, as the original trains D (D has no batch norm)
        return DLoss(self.heads_d_loss(self.nets["D"](torch.cat([x_r, x_f])), len(y_r), y_r, labels[0]), {})

    def g_labels(self) -> Tensor:
        b, o = self.cfg.optim.batch_size, self.options
        return self.fake_labels(b + self.num_fakes(b) if o.fake_batch == "ceil_b_over_k" else b, o.class_ratios_g)

    def g_loss(self, x_f: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.heads_g_loss(self.nets["D"](x_f), labels), {}

    def heads_d_loss(self, out: dict[str, Tensor], n_real: int, real_labels: Tensor, fake_labels: Tensor) -> Tensor:
        """D's loss on its (K+1)-way head(s) over the concatenated batch (``n_real`` reals first)."""
        logits = out["cls_logits"]
        return bagan_d_loss(logits[:n_real], real_labels, logits[n_real:])

    def heads_g_loss(self, out: dict[str, Tensor], labels: Tensor) -> Tensor:
        """G's loss on D's head(s) for fakes of ``labels``."""
        return bagan_g_loss(out["cls_logits"], labels)


PRESETS = {
    "bagan": {
        "method": "bagan",
        "model": {"arch": "dcgan", "z_dim": 128},
        "optim": {"batch_size": 128, "g_lr": 5e-5, "d_lr": 5e-5, "betas": [0.5, 0.999], "eps": 1e-8, "d_steps": 1},
        "ema": False,
        "flip": False,
        "options": {"pretrain_epochs": 150, "ae_loss": "mse"},
    },
}
DEFAULT_PRESET = "bagan"

# ECOGAN's port of BAGAN (README's table), switched on by faithful=true: B fakes per D step, and only the
# decoder learns in pre-training
FAITHFUL = {"bagan": {"options": {"fake_batch": "b", "pretrain_decoder_only": True}}}
