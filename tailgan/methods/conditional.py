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

from tailgan.losses import ADV_LOSSES, gradient_penalty
from tailgan.methods.base import Batches, Method
from tailgan.methods.build import build_discriminator, build_generator
from tailgan.methods.regularized import Regularized


class ConditionalGAN(Regularized, Method):
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
        o = cfg.optim
        self.optimizers["G"] = self.make_adam(self.nets["G"].parameters(), o.g_lr, o.betas, o.eps)
        self.optimizers["D"] = self.make_adam(self.nets["D"].parameters(), o.d_lr, o.betas, o.eps)
        if cfg.ema:
            self.add_ema("G")
        self.d_adv, self.g_adv = ADV_LOSSES[cfg.loss.adv]
        self.setup_regularizers()

    def train_step(self, batches: Batches, step: int) -> dict[str, torch.Tensor]:
        cfg, G, D = self.cfg, self.nets["G"], self.nets["D"]
        logs: dict[str, torch.Tensor] = {}
        for d_step in range(cfg.optim.d_steps):
            x_r, y_r = batches.next("real")
            y_f = y_r if cfg.d_fake_labels == "real" else self.uniform_labels(len(y_r))
            with torch.no_grad(), self.autocast():
                x_f = G(self.noise(len(y_f), G.z_dim), y_f).float()
            with self.autocast():
                out_r, out_f = D(self.augment(x_r), y_r), D(self.augment(x_f), y_f)
                d_adv = self.d_adv(out_r["adv"].float(), out_f["adv"].float())
                loss = d_adv
                cond = self.cond_loss(out_r, y_r)
                if cond is not None:
                    loss = loss + cfg.loss.cond_lambda * cond
            lecam = self.lecam_term(out_r["adv"], out_f["adv"])
            if lecam is not None:
                loss = loss + lecam
                logs["d_lecam"] = lecam.detach()
            gp_weight = self.penalty_weight(step, d_step)
            if gp_weight > 0:
                critic = lambda x, y=y_r: D(self.augment(x), y)["adv"]  # noqa: E731
                with self.penalty_autocast():
                    gp = gradient_penalty(critic, x_r, x_f, alpha=cfg.loss.gp_alpha, generator=self.gen)
                loss = loss + gp_weight * gp
                logs["d_gp"] = gp.detach()
            self.update("D", loss, ["D"])
        logs["d_adv"] = d_adv.detach()
        logs["d_loss"] = loss.detach()
        if cond is not None:
            logs["d_cond"] = cond.detach()

        D.requires_grad_(False)  # G step: no gradients for D's weights
        y = self.uniform_labels(cfg.optim.batch_size)
        with self.autocast():
            out = D(self.augment(G(self.noise(len(y), G.z_dim), y)), y)
            g_adv = self.g_adv(out["adv"].float())
            loss = g_adv
            cond = self.cond_loss(out, y)
            if cond is not None:
                loss = loss + cfg.loss.cond_lambda * cond
        gsr = self.gsr_term()
        if gsr is not None:
            loss = loss + gsr
            logs["g_gsr"] = gsr.detach()
        self.update("G", loss, ["G"])
        D.requires_grad_(True)
        logs["g_adv"] = g_adv.detach()
        logs["g_loss"] = loss.detach()
        if cond is not None:
            logs["g_cond"] = cond.detach()
        return logs


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
