"""ACGAN (Odena et al. 2017): D also classifies; cross-entropy on real images in the D step, on fakes in G."""

from tailgan.methods.conditional import ConditionalGAN, acgan_cond


class ACGAN(ConditionalGAN):
    name = "acgan"
    head = "acgan"

    def cond_loss(self, out, labels):
        return acgan_cond(out, labels)


PRESETS = {
    "acgan": {
        "method": "acgan",
        "model": {"arch": "biggan"},
        "loss": {"adv": "hinge", "cond_lambda": 1.0},
        "ema": True,
        "flip": True,
    },
}
FAITHFUL = {"acgan": {"model": {"shortcut_after_relu": True}}}  # StudioGAN's in-place ReLU
DEFAULT_PRESET = "acgan"
