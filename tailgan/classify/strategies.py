"""Rebalancing strategies for classifiers on long-tailed data, each a small unit.

A strategy is a combination of three independent parts:
- what the classifier trains on: the real data, resampled (imbalanced-learn's random over- and
  under-samplers on indices, or SMOTE on flattened images) and/or extended with synthetic images;
- which loss it minimises: cross-entropy, inverse-frequency weighted ("CS"), class-balanced, focal
  or LDAM with deferred re-weighting;
- whether its posteriors are divided by the training priors at prediction ("TS").

Names (``parse_strategy``): vanilla, ts, cs, us, os, us+cs, os+cs, smote, cbl, cbl-sigmoid,
cbl-focal (``cbl:0.99`` sets beta), focal, ldam-drw, gan, folder.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler

from tailgan.errors import TailganError

# The seeds' classical baselines plus focal and LDAM-DRW; "all" on the command line means these.
CLASSICAL_STRATEGIES = (
    "vanilla",
    "ts",
    "cs",
    "us",
    "os",
    "us+cs",
    "os+cs",
    "smote",
    "cbl",
    "cbl-sigmoid",
    "cbl-focal",
    "focal",
    "ldam-drw",
)
SYNTHETIC_STRATEGIES = ("gan", "folder")
STRATEGIES = CLASSICAL_STRATEGIES + SYNTHETIC_STRATEGIES

_SAMPLER = {"us": "us", "os": "os", "us+cs": "us-half", "os+cs": "os-half", "smote": "smote"}
_LOSS = {
    "cs": "cs",
    "us+cs": "cs",
    "os+cs": "cs",
    "cbl": "cbl",
    "cbl-sigmoid": "cbl",
    "cbl-focal": "cbl",
    "focal": "focal",
    "ldam-drw": "ldam-drw",
}
_CB_TYPE = {"cbl": "softmax", "cbl-sigmoid": "sigmoid", "cbl-focal": "focal"}


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy name.

    sampler: "none", "us", "os" (full balance), "us-half", "os-half" (half-way, for the +cs
    combinations) or "smote"; loss: "ce", "cs", "cbl", "focal" or "ldam-drw"; cb_loss_type: the
    class-balanced form (softmax, sigmoid, focal); synthetic: None, "gan" or "folder".
    """

    name: str
    sampler: str = "none"
    loss: str = "ce"
    cb_loss_type: str = "softmax"
    beta: float = 0.9999
    threshold_shift: bool = False
    synthetic: str | None = None

    @property
    def output(self) -> str:
        """How logits become probabilities: "sigmoid" for the one-vs-all CB losses, else "softmax"."""
        return "sigmoid" if self.loss == "cbl" and self.cb_loss_type != "softmax" else "softmax"


def parse_strategy(name: str, beta: float | None = None) -> Strategy:
    """Parse a strategy name (see the module docstring); ``beta`` is the CB beta unless the name gives one."""
    base, _, suffix = name.strip().lower().partition(":")
    if base not in STRATEGIES:
        raise TailganError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")
    if suffix:
        if base not in _CB_TYPE:
            raise TailganError(f"strategy {name!r}: only cbl, cbl-sigmoid and cbl-focal take ':beta'")
        try:
            beta = float(suffix)
        except ValueError:
            raise TailganError(f"strategy {name!r}: {suffix!r} is not a number (e.g. cbl:0.999)") from None
    beta = 0.9999 if beta is None else beta
    if not 0.0 <= beta < 1.0:
        raise TailganError(f"strategy {name!r}: beta={beta} must be in [0, 1) (the paper uses 0.9 ... 0.9999)")
    return Strategy(
        name=name.strip().lower(),
        sampler=_SAMPLER.get(base, "none"),
        loss=_LOSS.get(base, "ce"),
        cb_loss_type=_CB_TYPE.get(base, "softmax"),
        beta=beta,
        threshold_shift=base == "ts",
        synthetic=base if base in SYNTHETIC_STRATEGIES else None,
    )


def expand_strategies(spec: str) -> list[str]:
    """ "all" -> the classical strategies; otherwise a comma-separated list, each name checked."""
    names = list(CLASSICAL_STRATEGIES) if spec.strip() == "all" else [s for s in spec.split(",") if s.strip()]
    if not names:
        raise TailganError(f"--strategies {spec!r} names no strategy; use 'all' or e.g. vanilla,cs,smote")
    for s in names:
        parse_strategy(s)
    return [s.strip().lower() for s in names]


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
    if sampler == "os":
        s = RandomOverSampler(random_state=random_state)
    elif sampler == "us":
        s = RandomUnderSampler(random_state=random_state)
    elif sampler == "os-half":
        s = RandomOverSampler(sampling_strategy=_half_way_targets(y, "max"), random_state=random_state)
    elif sampler == "us-half":
        s = RandomUnderSampler(sampling_strategy=_half_way_targets(y, "min"), random_state=random_state)
    else:
        raise ValueError(f"unknown sampler {sampler!r}; use os, us, os-half or us-half")
    X_res, _ = s.fit_resample(X, y)
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
    X = images.reshape(len(images), -1).numpy().astype(np.float32)
    X_res, y_res = SMOTE(k_neighbors=k, random_state=random_state).fit_resample(X, y)
    out = torch.from_numpy(np.clip(np.rint(X_res), 0, 255).astype(np.uint8)).reshape(-1, *shape)
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


def parse_synthetic(spec: str) -> float:
    """``fill`` -> 1.0; ``ratio:R`` -> R: every class is raised to R x (largest class count) images."""
    if spec == "fill":
        return 1.0
    kind, _, value = spec.partition(":")
    if kind == "ratio":
        try:
            r = float(value)
        except ValueError:
            r = -1.0
        if r > 0:
            return r
    raise TailganError(f"--synthetic {spec!r} is not understood; use 'fill' or 'ratio:R' with R > 0 (e.g. ratio:0.5)")


def synthetic_counts(counts: Sequence[int], spec: str) -> list[int]:
    """How many synthetic images each class needs to reach ``parse_synthetic(spec)`` x max(counts)."""
    target = math.ceil(parse_synthetic(spec) * max(counts))
    return [max(0, target - int(n)) for n in counts]
