"""ReACGAN (Kang et al. 2021): the D2D-CE loss (margins m_p and m_n = 1 - m_p, false negatives removed)."""

from tailgan.losses import d2dce_loss
from tailgan.methods.conditional import ProxyContrastiveGAN


class ReACGAN(ProxyContrastiveGAN):
    name = "reacgan"
    contrastive = staticmethod(d2dce_loss)

    def contrastive_kwargs(self) -> dict:
        loss = self.cfg.loss
        return {"temperature": loss.temperature, "m_p": loss.m_p, "max_shift": loss.max_shift}


# StudioGAN's CIFAR10/ReACGAN.yaml: hinge, tau 0.5, m_p 0.98, lambda 0.5, batch 128, lr 2.8284271e-4
PRESETS = {
    "reacgan": {
        "method": "reacgan",
        "model": {"arch": "biggan"},
        "loss": {"adv": "hinge", "cond_lambda": 0.5, "temperature": 0.5, "m_p": 0.98},
        "optim": {"batch_size": 128, "g_lr": 2.8284271e-4, "d_lr": 2.8284271e-4},
        "ema": True,
        "flip": True,
    },
}
FAITHFUL = {"reacgan": {"model": {"shortcut_after_relu": True}, "loss": {"gather_grad": "local"}}}
DEFAULT_PRESET = "reacgan"
