"""BAGAN-GP (Huang & Jafari, "Improved / Enhanced Balancing GAN"), which ECOGAN's README calls "EBGAN".

Spec ``bagan-ebgan-idagan-dfg-cyclegan-cbl.md`` section 3 (and ``ecogan-2c-d2dce.md`` 7.3, 8, 11). "EBGAN"
there is this method, not the energy-based GAN.

1. Pre-training (``options.pretrain``, on by default): a *supervised* autoencoder
   x^ = G.decoder(E(x) * G.embedding(y)), E = conv trunk -> flatten -> Linear -> LeakyReLU(0.2), trained for
   ``options.pretrain_epochs`` (30) epochs with the mean absolute (``options.ae_loss=l1``, the authors'
   Keras code) or squared (``mse``, ECOGAN's port) error. G is the label embedding and the decoder of this
   autoencoder, so G(z, y) = decoder(z * embedding(y)) with z ~ N(0, I): no per-class Gaussians.
   D's image trunk starts from the encoder's when ``options.d_init_from_encoder`` (ECOGAN's port); the
   authors' code leaves D freshly initialised (their paper: it "does not need to inherit the weights").
2. Adversarial training with a conditional D(x, y) = w^T h + b, h = flatten(trunk(x)) * LReLU(W Emb(y)),
   with ``options.d_hidden`` = 512 a linear layer before the logit (Keras) or 0 none (ECOGAN's port).
   Per generator update, ``optim.d_steps`` (5) D steps, each on the same real batch (x, y)
   (``options.same_real_batch``, Keras) or on a fresh one (ECOGAN's port), with sigma the logistic function:

       L_D = -mean log s(D(x, y)) - mean log(1 - s(D(G(z, y_f), y_f))) - mean log(1 - s(D(x, y_w)))
             + gp_weight * mean (||grad D(x^, y)|| - 1)^2,   x^ = x + a (G(z, y_f) - x)
       L_G = -mean log s(D(G(z, y_f), y_f))

   y_f: uniform labels (``d_fake_labels=uniform``, Keras) or the real batch's labels (``real``, the port);
   either way each fake is scored with the label it was generated with. ECOGAN's port generates the D-step
   fakes with the real labels but scores them with freshly drawn ones (a bug, not reproduced).
   y_w ("wrong labels"): by default drawn uniformly from the classes other than y
   (``options.wrong_labels=exclude_true``); both published codes draw them from all classes, so a tenth of
   the "wrong" pairs are right (``wrong_labels=any`` reproduces that). The gradient penalty pairs the
   interpolates with the real labels, as both codes do; its factor a is U(0, 1) (``loss.gp_alpha=uniform``,
   the paper's Eq. 8) or N(0, 1) (``normal``, both codes).

Presets:

- ``bagan-gp``: the authors' Keras code: L1 autoencoder, D not initialised from the encoder, Dense 512 before
  the logit, uniform fake labels, the same real batch for the 5 D steps, Adam 2e-4 (0.5, 0.9, eps 1e-7).
- ``ebgan``: ECOGAN's port: MSE autoencoder, D trunk from the encoder, no Dense 512, D-step fakes made for
  the real labels, a fresh real batch per D step, Adam 2e-4 (0.5, 0.9, eps 1e-8).

Both train at the data's resolution (32 px by default; the originals resize to 64 px, ``data.resolution=64``)
with ``options.pretrain=false`` giving ECOGAN's "Pre-trained FALSE" rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
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
    reconstruction_loss,
    refresh_ema,
)
from tailgan.methods.base import AdversarialMethod, Batch, Batches, DLoss
from tailgan.methods.regularized import Regularized
from tailgan.nets.autoencoder import Encoder, FlatProjectionDiscriminator
from tailgan.nets.dcgan import DCGANGenerator


def bagan_gp_d_loss(real_logits: Tensor, fake_logits: Tensor, wrong_logits: Tensor) -> Tensor:
    """BCE(D(x, y), 1) + BCE(D(G(z, y_f), y_f), 0) + BCE(D(x, y_w), 0), each a batch mean (no penalty)."""
    return (
        F.softplus(-real_logits.float()).mean()
        + F.softplus(fake_logits.float()).mean()
        + F.softplus(wrong_logits.float()).mean()
    )


def bagan_gp_g_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss BCE(D(G(z, y), y), 1)."""
    return F.softplus(-fake_logits.float()).mean()


@dataclass
class BAGANGPOptions(PretrainOptions):
    ae_loss: Literal["mse", "l1"] = "l1"
    d_hidden: int = 512  # linear layer between the label product and the logit (0: none, ECOGAN's port)
    d_init_from_encoder: bool = False  # D's image trunk starts from the pre-trained encoder's
    same_real_batch: bool = True  # the D steps of one G update reuse one real batch (Keras) or draw new ones
    wrong_labels: Literal["exclude_true", "any"] = "exclude_true"  # "any": the published codes


class BAGANGP(AutoencoderPretraining, Regularized, AdversarialMethod):
    """BAGAN-GP / EBGAN; see the module docstring. ``nets``: G (:class:`DCGANGenerator`), D (flat projection)."""

    name = "bagan-gp"
    Options = BAGANGPOptions

    def build(self) -> None:
        cfg, o = self.cfg, self.options
        check_pretrain_options(o)
        if cfg.loss.adv != "bce":
            raise TailganError(f"bagan-gp uses the sigmoid cross-entropy loss; set loss.adv=bce (got {cfg.loss.adv})")
        if o.d_hidden < 0:
            raise TailganError(f"options.d_hidden must be >= 0, got {o.d_hidden}")
        if o.wrong_labels == "exclude_true" and self.num_classes < 2:
            raise TailganError("options.wrong_labels=exclude_true needs at least 2 classes; use wrong_labels=any")
        z_dim, conv_dim = dcgan_dims(cfg.model, self.img_size)
        c, s, k = self.img_channels, self.img_size, self.num_classes
        # G and the encoder before D, so that the pre-training does not depend on D's settings
        self.nets["G"] = DCGANGenerator(k, c, s, z_dim=z_dim, conv_dim=conv_dim)
        self.encoder = Encoder(z_dim, c, s, conv_dim, activation=True).to(self.device)
        self.nets["D"] = FlatProjectionDiscriminator(
            k, c, s, conv_dim, embed_dim=cfg.model.embed_dim, hidden=o.d_hidden
        )
        self.add_gan_optimizers()
        self.build_pretraining()
        self.setup_regularizers()

    # -- pre-training ----------------------------------------------------------------------------------------
    def ae_loss(self, x: Tensor, y: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        G = self.nets["G"]
        recon = reconstruction_loss(G.decoder(self.encoder(x) * G.embedding(y)), x, self.options.ae_loss)
        return {"loss": recon, "recon": recon}

    def pretrain_modules(self) -> tuple[dict[str, torch.nn.Module], list[torch.nn.Parameter]]:
        G = self.nets["G"]
        modules = {"encoder": self.encoder, "embedding": G.embedding, "decoder": G.decoder}
        return modules, [p for m in modules.values() for p in m.parameters()]

    def pretrain_key_extra(self) -> dict:
        return {}

    def after_pretrain(self, data: Any) -> None:
        if self.options.pretrain and self.options.d_init_from_encoder:
            self.nets["D"].trunk.load_state_dict(self.encoder.trunk.state_dict())
        refresh_ema(self)

    # -- adversarial training --------------------------------------------------------------------------------
    def wrong_labels(self, labels: Tensor) -> Tensor:
        if self.options.wrong_labels == "any":
            return self.uniform_labels(len(labels))
        shift = torch.randint(1, self.num_classes, labels.shape, generator=self.gen, device=self.device)
        return (labels + shift) % self.num_classes  # uniform over the other classes

    def d_batches(self, batches: Batches) -> Iterator[Batch]:
        if self.options.same_real_batch:  # Keras: one real batch for all D steps of a G update
            yield from itertools.repeat(batches.next("real"), self.cfg.optim.d_steps)
        else:
            yield from super().d_batches(batches)

    def d_labels(self, real_labels: Tensor) -> tuple[Tensor, ...]:
        return (*super().d_labels(real_labels), self.wrong_labels(real_labels))  # y_f, then y_w

    def d_loss(self, x_r: Tensor, y_r: Tensor, x_f: Tensor, *labels: Tensor) -> DLoss:
        D, (y_f, y_w) = self.nets["D"], labels
        real, fake = D(self.augment(x_r), y_r)["adv"], D(self.augment(x_f), y_f)["adv"]
        adv = bagan_gp_d_loss(real, fake, D(self.augment(x_r), y_w)["adv"])
        return DLoss(adv, {"d_adv": adv.detach()}, real, fake)

    def g_loss(self, x_f: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return bagan_gp_g_loss(self.nets["D"](self.augment(x_f), labels)["adv"]), {}


_COMMON = {
    "method": "bagan-gp",
    "model": {"arch": "dcgan", "z_dim": 128, "embed_dim": 512},
    "loss": {"adv": "bce", "gp_weight": 10.0, "gp_alpha": "uniform"},
    "ema": False,
    "flip": False,
}
PRESETS = {
    "bagan-gp": {
        **_COMMON,
        "optim": {"batch_size": 128, "g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.5, 0.9], "eps": 1e-7, "d_steps": 5},
        "d_fake_labels": "uniform",
        "options": {
            "pretrain_epochs": 30,
            "ae_loss": "l1",
            "d_hidden": 512,
            "d_init_from_encoder": False,
            "same_real_batch": True,
        },
    },
    "ebgan": {
        **_COMMON,
        "optim": {"batch_size": 128, "g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.5, 0.9], "eps": 1e-8, "d_steps": 5},
        "d_fake_labels": "real",
        "options": {
            "pretrain_epochs": 30,
            "ae_loss": "mse",
            "d_hidden": 0,
            "d_init_from_encoder": True,
            "same_real_batch": False,
        },
    },
}
DEFAULT_PRESET = "bagan-gp"

# the published codes' behaviour (README's table), switched on by faithful=true
FAITHFUL = {
    "bagan-gp": {"loss": {"gp_alpha": "normal"}, "options": {"wrong_labels": "any"}},
    "ebgan": {"loss": {"gp_alpha": "normal"}, "options": {"wrong_labels": "any"}},
}
