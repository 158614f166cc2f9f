"""Losses. GAN losses (adversarial, gradient penalty, class-conditional contrastive) are exported here."""

from tailgan.losses.adversarial import (
    ADV_LOSSES,
    acgan_aux_loss,
    d_hinge,
    d_nonsaturating,
    d_wasserstein,
    g_hinge,
    g_nonsaturating,
    g_wasserstein,
    gradient_penalty,
)
from tailgan.losses.classification import (
    CB_LOSS_TYPES,
    class_balanced_loss,
    class_balanced_weights,
    drw_weights,
    focal_loss,
    inverse_frequency_weights,
    ldam_loss,
    ldam_margins,
    weighted_cross_entropy,
)
from tailgan.losses.contrastive import contrastive_2c_loss, d2dce_loss, eco_loss, gather_batch

__all__ = [
    "CB_LOSS_TYPES",
    "class_balanced_loss",
    "class_balanced_weights",
    "drw_weights",
    "focal_loss",
    "inverse_frequency_weights",
    "ldam_loss",
    "ldam_margins",
    "weighted_cross_entropy",
    "ADV_LOSSES",
    "acgan_aux_loss",
    "contrastive_2c_loss",
    "d2dce_loss",
    "d_hinge",
    "d_nonsaturating",
    "d_wasserstein",
    "eco_loss",
    "g_hinge",
    "g_nonsaturating",
    "g_wasserstein",
    "gather_batch",
    "gradient_penalty",
]
