"""ECOGAN: the exhaustive contrastive (ECO) loss over all data-data and data-proxy pairs of a batch.

ECO is applied to real images in the D step and to generated images (with the labels they were made
for) in the G step. The discriminator's adversarial head is unconditional; labels reach D only through
the class proxies. Two published settings:

- ``ecogan-dcgan``: ECOGAN's Lightning pipeline (README table 3): DCGAN-like nets, non-saturating BCE +
  gradient penalty 10, 5 D steps per G step, Adam 2e-4 (0.5, 0.9), tau 1, lambda 1, no EMA; the D-step
  fakes use the real batch's labels, so ``sampling: balanced`` balances them too. The original draws the
  GP interpolation factor from N(0, 1) (``loss.gp_alpha=normal``); the default here is WGAN-GP's U(0, 1).
  The original trains at 64 px in RGB with batch 128 per process; tailgan's preset trains at the data's
  resolution (32 px by default) and channels.
- ``ecogan-biggan``: the StudioGAN fork (README table 1): BigGAN ResNet, hinge, spectral norm, EMA 0.9999
  from step 1000, uniform fake labels, random flips; ``model.conv_dim=24 model.shared_dim=32`` is the
  "div4" width of its imbalanced runs.
"""

from tailgan.losses import eco_loss
from tailgan.methods.conditional import ProxyContrastiveGAN


class ECOGAN(ProxyContrastiveGAN):
    name = "ecogan"
    contrastive = staticmethod(eco_loss)

    def contrastive_kwargs(self) -> dict:
        return {"temperature": self.cfg.loss.temperature, "max_shift": self.cfg.loss.max_shift}


PRESETS = {
    "ecogan-dcgan": {
        "method": "ecogan",
        "model": {"arch": "dcgan", "z_dim": 128},
        "loss": {"adv": "bce", "gp_weight": 10.0, "cond_lambda": 1.0, "temperature": 1.0},
        "optim": {"batch_size": 128, "g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.5, 0.9], "eps": 1e-8, "d_steps": 5},
        "d_fake_labels": "real",
        "ema": False,
        "flip": False,
    },
    "ecogan-biggan": {
        "method": "ecogan",
        "model": {"arch": "biggan"},
        "loss": {"adv": "hinge", "cond_lambda": 1.0, "temperature": 1.0},
        "ema": True,
        "flip": True,
    },
}
# for augmentation: ecogan-dcgan plus the regularisers that measured best on FMNIST-LT's long-tailed training
# images at 3,000 G steps (benchmarks/results/gan_regularizers.md: DiffAugment + LeCam 0.3); a classifier
# trained on its images was not better than on ecogan-dcgan's (synthetic_protocol.md), which the README says
PRESETS["ecogan-dcgan-aug"] = {
    **PRESETS["ecogan-dcgan"],
    "loss": {**PRESETS["ecogan-dcgan"]["loss"], "diffaug": "color,translation,cutout", "lecam_weight": 0.3},
}
DEFAULT_PRESET = "ecogan-dcgan"

# the original code's behaviour (README: "Where the original code has a bug"), switched on by faithful=true
FAITHFUL = {
    # ECOGAN's Lightning code: GP factor N(0, 1), each rank's gradient of the gathered ECO only, 64 px
    "ecogan-dcgan": {"loss": {"gp_alpha": "normal", "gather_grad": "local"}, "data": {"resolution": 64}},
    # the StudioGAN fork: its in-place ReLU feeds relu(x) to D's shortcut, per-rank gathered gradients
    "ecogan-biggan": {"model": {"shortcut_after_relu": True}, "loss": {"gather_grad": "local"}},
}
