"""The parts a classify strategy is made of, each kind in one registry (:class:`tailgan.registry.Registry`).

A strategy (:func:`tailgan.classify.strategies.parse_strategy`) is a training-set builder (the real data,
resampled by a ``SAMPLERS`` entry, and/or extended with synthetic images from a source,
``tailgan.classify.synthetic.SOURCES``) x a loss (``LOSSES``) x a prediction rule (``RULES``) x a trainer kind
(``tailgan.classify.train.TRAINERS``). ``CLASSICAL`` names the seeds' strategies by their parts.

Adding a loss is one function here, registered with ``@LOSSES.register("name")``: it becomes the strategy
``name`` too (``gan+name``, ``folder+name`` included), and its test goes in tests/test_classify_losses.py.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler

from tailgan.data.arrays import flatten_images, to_pixels
from tailgan.errors import TailganError
from tailgan.losses.classification import (
    balanced_softmax_loss,
    class_balanced_loss,
    class_balanced_weights,
    cross_entropy,
    drw_cross_entropy,
    drw_weights,
    focal_loss,
    inverse_frequency_weights,
    ldam_loss,
    ldam_margins,
    logit_adjusted_loss,
    weighted_cross_entropy,
)
from tailgan.registry import Registry

# loss(logits, labels, progress in [0, 1], sample_weight) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, float, Any], torch.Tensor]
# a loss part: (class counts it corrects for, the config, the strategy) -> LossFn
LOSSES: Registry[Callable[..., LossFn]] = Registry("loss")
# a prediction rule: (class counts, config) -> (priors divided out at prediction or None, candidate tau)
RULES: Registry[Callable[..., tuple[torch.Tensor | None, tuple[float, ...]]]] = Registry("prediction rule")
# a sampler: (images, labels, synthetic mask, config, seed) -> the three, resampled
SAMPLERS: Registry[Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = Registry("sampler")


@dataclass(frozen=True)
class Parts:
    sampler: str = "none"
    loss: str = "ce"
    cb_loss_type: str = "softmax"  # class-balanced loss form: softmax, sigmoid (one-vs-all) or focal
    adjust: str = "none"  # prediction rule


# The seeds' classical baselines plus focal, LDAM-DRW, LA, Balanced Softmax and CE-DRW, by their parts;
# a loss registered below without an entry here is a strategy of its own name (after these, in "all").
CLASSICAL = {
    "vanilla": Parts(),
    "ts": Parts(adjust="ts"),
    "cs": Parts(loss="cs"),
    "us": Parts(sampler="us"),
    "os": Parts(sampler="os"),
    "us+cs": Parts(sampler="us-half", loss="cs"),
    "os+cs": Parts(sampler="os-half", loss="cs"),
    "smote": Parts(sampler="smote"),
    "cbl": Parts(loss="cbl"),
    "cbl-sigmoid": Parts(loss="cbl", cb_loss_type="sigmoid"),
    "cbl-focal": Parts(loss="cbl", cb_loss_type="focal"),
    "focal": Parts(loss="focal"),
    "ldam-drw": Parts(loss="ldam-drw"),
    "la": Parts(loss="la"),
    "la-posthoc": Parts(adjust="la-posthoc"),
    "balanced-softmax": Parts(loss="balanced-softmax"),
    "ce-drw": Parts(loss="ce-drw"),
}


def classical_parts() -> dict[str, Parts]:
    """Every classical strategy: ``CLASSICAL`` and each registered loss not named there."""
    return {**CLASSICAL, **{n: Parts(loss=n) for n in LOSSES if n not in {p.loss for p in CLASSICAL.values()}}}


# -- losses --------------------------------------------------------------------------------------------------------
@LOSSES.register("ce")
def _ce(counts: list[float], cfg: Any, strategy: Any) -> LossFn:
    return lambda z, y, progress, w: cross_entropy(z, y, w)


@LOSSES.register("cs")
def _cs(counts: list[float], cfg: Any, strategy: Any) -> LossFn:
    weights = inverse_frequency_weights(counts)
    return lambda z, y, progress, w: weighted_cross_entropy(z, y, weights, w)


@LOSSES.register("cbl")
def _cbl(counts: list[float], cfg: Any, strategy: Any) -> LossFn:
    weights = class_balanced_weights(counts, strategy.beta)
    return lambda z, y, progress, w: class_balanced_loss(z, y, weights, strategy.cb_loss_type, cfg.focal_gamma, w)


@LOSSES.register("focal")
def _focal(counts: list[float], cfg: Any, strategy: Any) -> LossFn:
    return lambda z, y, progress, w: focal_loss(z, y, cfg.focal_gamma, sample_weight=w)


@LOSSES.register("ldam-drw")
def _ldam_drw(counts: list[float], cfg: Any, strategy: Any) -> LossFn:
    margins = ldam_margins(counts, cfg.ldam_max_margin)

    def loss(z: torch.Tensor, y: torch.Tensor, progress: float, w: Any) -> torch.Tensor:
        return ldam_loss(z, y, margins, cfg.ldam_scale, drw_weights(counts, progress, cfg.drw_start), w)

    return loss


@LOSSES.register("la")
def _la(counts: list[float], cfg: Any, strategy: Any) -> LossFn:
    return lambda z, y, progress, w: logit_adjusted_loss(z, y, counts, cfg.la_tau, w)


@LOSSES.register("balanced-softmax")
def _balanced_softmax(counts: list[float], cfg: Any, strategy: Any) -> LossFn:
    return lambda z, y, progress, w: balanced_softmax_loss(z, y, counts, w)


@LOSSES.register("ce-drw")
def _ce_drw(counts: list[float], cfg: Any, strategy: Any) -> LossFn:
    return lambda z, y, progress, w: drw_cross_entropy(z, y, counts, progress, cfg.drw_start, sample_weight=w)


# -- prediction rules ----------------------------------------------------------------------------------------------
def _priors(counts: Sequence[float]) -> torch.Tensor:
    n = torch.tensor(counts, dtype=torch.float32)
    return n / n.sum()


RULES.register("none", lambda counts, cfg: (None, (1.0,)))  # posteriors as they are
RULES.register("ts", lambda counts, cfg: (_priors(counts), (1.0,)))  # divided by the training priors
# divided by the priors to the power tau chosen on the validation split (post-hoc logit adjustment)
RULES.register("la-posthoc", lambda counts, cfg: (_priors(counts), tuple(cfg.tau_grid)))


# -- samplers ------------------------------------------------------------------------------------------------------
def _index_sampler(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    def sample(images: torch.Tensor, labels: torch.Tensor, synthetic: torch.Tensor, cfg: Any, seed: int) -> tuple:
        idx = torch.from_numpy(resample_indices(labels, name, random_state=seed))
        return images[idx], labels[idx], synthetic[idx]

    return sample


SAMPLERS.register("none", lambda images, labels, synthetic, cfg, seed: (images, labels, synthetic))
for _name in ("us", "os", "us-half", "os-half"):
    SAMPLERS.register(_name, _index_sampler(_name))


@SAMPLERS.register("smote")
def _smote(images: torch.Tensor, labels: torch.Tensor, synthetic: torch.Tensor, cfg: Any, seed: int) -> tuple:
    n = len(labels)
    images, labels = smote_images(images, labels, k_neighbors=cfg.smote_k, random_state=seed)
    return images, labels, torch.cat([synthetic, torch.zeros(len(labels) - n, dtype=torch.bool)])


def _as_numpy_labels(labels: torch.Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    return np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)


def _half_way_targets(labels: np.ndarray, to: str) -> dict[int, int]:
    """Per-class targets at the geometric mean of each count and the balanced count (min or max)."""
    classes, counts = np.unique(labels, return_counts=True)
    ref = counts.min() if to == "min" else counts.max()
    return {int(c): int(round(math.sqrt(n * ref))) for c, n in zip(classes, counts)}


def resample_indices(
    labels: torch.Tensor | np.ndarray | Sequence[int], sampler: str, random_state: int = 0
) -> np.ndarray:
    """Indices into ``labels`` after random over- or under-sampling (imbalanced-learn).

    - ``os``/``us``: RandomOverSampler / RandomUnderSampler to full balance (every class at the
      largest / smallest count).
    - ``os-half``/``us-half``: each class to the geometric mean of its count and that target, so a
      later inverse-frequency loss weight corrects the other half of the imbalance (used by os+cs
      and us+cs: with full resampling the weights would all be equal and CS would do nothing; the
      seeds do not say how they split the two).
    """
    y = _as_numpy_labels(labels)
    X = np.arange(len(y)).reshape(-1, 1)
    samplers = {
        "os": lambda: RandomOverSampler(random_state=random_state),
        "us": lambda: RandomUnderSampler(random_state=random_state),
        "os-half": lambda: RandomOverSampler(sampling_strategy=_half_way_targets(y, "max"), random_state=random_state),
        "us-half": lambda: RandomUnderSampler(sampling_strategy=_half_way_targets(y, "min"), random_state=random_state),
    }
    if sampler not in samplers:
        raise ValueError(f"unknown sampler {sampler!r}; use os, us, os-half or us-half")
    X_res, _ = samplers[sampler]().fit_resample(X, y)
    return X_res[:, 0]


def smote_images(
    images: torch.Tensor, labels: torch.Tensor, k_neighbors: int = 5, random_state: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Balance uint8 images (N, C, H, W) with imbalanced-learn's SMOTE on the flattened pixels.

    Returns uint8 images and labels: the originals first, unchanged, then the interpolated ones
    (rounded to the nearest pixel value). SMOTE needs k + 1 images in each class it over-samples:
    a smaller class lowers k (with a warning); a class with a single image is an error.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"smote_images expects uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    y = _as_numpy_labels(labels)
    classes, counts = np.unique(y, return_counts=True)
    minority = counts[counts < counts.max()]
    if len(minority) == 0:
        return images.clone(), torch.as_tensor(y)
    smallest = int(minority.min())
    if smallest < 2:
        c = int(classes[counts == smallest][0])
        raise TailganError(
            f"SMOTE cannot over-sample class {c}: it has 1 image and SMOTE interpolates between "
            "neighbours of the same class; use --strategy os instead, or give the class more images"
        )
    k = k_neighbors
    if smallest - 1 < k:
        k = smallest - 1
        warnings.warn(
            f"SMOTE: the smallest class has {smallest} images, fewer than "
            f"k_neighbors + 1 = {k_neighbors + 1}; using k_neighbors={k}",
            stacklevel=2,
        )
    shape = images.shape[1:]
    X = flatten_images(images.numpy()).astype(np.float32)
    X_res, y_res = SMOTE(k_neighbors=k, random_state=random_state).fit_resample(X, y)
    out = torch.from_numpy(to_pixels(X_res, 0.0, 255.0)).reshape(-1, *shape)  # rounded to levels, clipped
    return out, torch.from_numpy(np.asarray(y_res, dtype=np.int64))


def threshold_shift(probs: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Divide posteriors (N, C) by the training class priors (C,) and renormalise each row ("TS").

    A classifier trained on data with priors pi estimates p(y|x) proportional to p(x|y) pi_y;
    dividing by pi_y gives the posterior under uniform priors, which is what a balanced test set has.
    """
    priors = torch.as_tensor(priors, dtype=probs.dtype, device=probs.device)
    if priors.shape != probs.shape[1:] or bool((priors <= 0).any()):
        raise ValueError(f"priors must be {probs.shape[1]} positive values, got {priors.tolist()}")
    adjusted = probs / priors
    return adjusted / adjusted.sum(dim=1, keepdim=True)


def prior_adjust(probs: torch.Tensor, priors: torch.Tensor, tau: float) -> torch.Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021, eq. 6) on posteriors: softmax(z - tau log pi).

    With p = softmax(z) that is p / pi^tau, renormalised: tau = 1 is threshold shifting (TS), tau = 0
    leaves the posteriors as they are.
    """
    if tau == 0:
        return probs
    return threshold_shift(probs, torch.as_tensor(priors, dtype=probs.dtype).pow(tau))
