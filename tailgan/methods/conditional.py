"""The class-conditional GAN step shared by cGAN, ACGAN, ContraGAN, ReACGAN and ECOGAN.

D step (``optim.d_steps`` times, each on a fresh real batch):
    L_D = adv_D(D(x_r), D(G(z, y_f))) + gp_weight * GP + cond_lambda * cond(real)
    where y_f = the real batch's labels (``d_fake_labels: real``, ECOGAN's Lightning code) or uniform labels.
G step: y ~ uniform over all classes, L_G = adv_G(D(G(z, y))) + cond_lambda * cond(fake).
What "cond" is depends on the recipe (``cond_loss``); the discriminator head follows from it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from tailgan.losses import ADV_LOSSES
from tailgan.methods.base import AdversarialMethod, DLoss
from tailgan.methods.build import build_discriminator, build_generator
from tailgan.methods.regularized import Regularized


class ConditionalGAN(Regularized, AdversarialMethod):
    """A conditional GAN whose discriminator head is ``head`` and whose conditional loss is ``cond_loss``."""

    head = "projection"  # "projection" | "acgan" | "proxy"

    def cond_loss(self, out: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor | None:
        """The recipe's conditional loss on one D output (None: the recipe has none)."""
        return None

    def build(self) -> None:
        cfg = self.cfg
        self.nets["G"] = build_generator(cfg.model, self.num_classes, self.img_channels, self.img_size)
        self.nets["D"] = build_discriminator(
            cfg.model, self.num_classes, self.img_channels, self.img_size, head=self.head
        )
        self.add_gan_optimizers()
        self.d_adv, self.g_adv = ADV_LOSSES[cfg.loss.adv]
        self.setup_regularizers()

    def d_loss(self, x_r: torch.Tensor, y_r: torch.Tensor, x_f: torch.Tensor, *labels: torch.Tensor) -> DLoss:
        D, y_f = self.nets["D"], labels[0]
        out_r, out_f = D(self.augment(x_r), y_r), D(self.augment(x_f), y_f)
        loss, logs = self.with_cond("d", self.d_adv(out_r["adv"].float(), out_f["adv"].float()), out_r, y_r)
        return DLoss(loss, logs, out_r["adv"], out_f["adv"])

    def g_loss(self, x_f: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.nets["D"](self.augment(x_f), labels)
        return self.with_cond("g", self.g_adv(out["adv"].float()), out, labels)

    def with_cond(
        self, side: str, adv: torch.Tensor, out: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """adv + cond_lambda x cond on D's output ``out`` and the log entries ``{side}_adv``, ``{side}_cond``."""
        logs = {f"{side}_adv": adv.detach()}
        cond = self.cond_loss(out, labels)
        if cond is None:
            return adv, logs
        logs[f"{side}_cond"] = cond.detach()
        return adv + self.cfg.loss.cond_lambda * cond, logs


class ProxyContrastiveGAN(ConditionalGAN):
    """Discriminator with an unconditional adversarial head + a normalised embedding and class proxies."""

    head = "proxy"
    contrastive: Callable[..., torch.Tensor]

    def contrastive_kwargs(self) -> dict:
        return {"temperature": self.cfg.loss.temperature}

    def cond_loss(self, out, labels):
        gather = self.cfg.loss.gather and self.world_size > 1
        return type(self).contrastive(
            out["embed"].float(), out["proxy"].float(), labels, gather=gather,
            gather_grad=self.cfg.loss.gather_grad, **self.contrastive_kwargs(),
        )  # fmt: skip


def acgan_cond(out: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out["cls_logits"].float(), labels)
