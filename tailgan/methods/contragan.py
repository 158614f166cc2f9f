"""ContraGAN (Kang & Park 2020): the 2C conditional contrastive loss on D's embedding and class proxies."""

from tailgan.losses import contrastive_2c_loss
from tailgan.methods.conditional import ProxyContrastiveGAN


class ContraGAN(ProxyContrastiveGAN):
    name = "contragan"
    contrastive = staticmethod(contrastive_2c_loss)


# StudioGAN's CIFAR10/ContraGAN.yaml: hinge, tau 1, lambda 1, batch 64, Adam 2e-4 (0.5, 0.999) eps 1e-6,
# 5 D steps, EMA 0.9999 from step 1000, random flips
PRESETS = {
    "contragan": {
        "method": "contragan",
        "model": {"arch": "biggan"},
        "loss": {"adv": "hinge", "cond_lambda": 1.0, "temperature": 1.0},
        "ema": True,
        "flip": True,
    },
}
FAITHFUL = {"contragan": {"model": {"shortcut_after_relu": True}, "loss": {"gather_grad": "local"}}}
DEFAULT_PRESET = "contragan"
