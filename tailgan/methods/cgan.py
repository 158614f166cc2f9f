"""cGAN with a projection discriminator (Miyato & Koyama 2018), hinge loss: StudioGAN's BigGAN setting."""

from tailgan.methods.conditional import ConditionalGAN


class CGAN(ConditionalGAN):
    name = "cgan"
    head = "projection"  # the label enters D's logit as <embed(y), h>


PRESETS = {
    "cgan": {"method": "cgan", "model": {"arch": "biggan"}, "loss": {"adv": "hinge"}, "ema": True, "flip": True},
}
FAITHFUL = {"cgan": {"model": {"shortcut_after_relu": True}}}  # StudioGAN's in-place ReLU
DEFAULT_PRESET = "cgan"
