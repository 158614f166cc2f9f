"""Long-tailed recipes: how many images each class keeps, and which ones.

Recipes (see ``../shared/specs``):
- ``exp``: n_c = int(n_max * (1/IF) ** (c / (C - 1)))  (LDAM-DRW and class-balanced-loss CIFAR-LT);
- ``step``: the first classes keep n_max, the last ``round(C * minority_fraction)`` keep int(n_max / IF);
- ``ecogan``: class 0 keeps all its images, class c keeps ``unit * c`` (ECOGAN's FashionMNIST_LT / CIFAR10_LT);
- ``counts``: an explicit list (e.g. BAGAN-GP's tables);
- ``drop_one``: one class keeps ceil(fraction * max other class), the rest stay whole (BAGAN's protocol);
- ``none``: every image.
"""

from __future__ import annotations

import math

import numpy as np

from tailgan.errors import TailganError

RECIPES = ("none", "exp", "step", "ecogan", "counts", "drop_one")


def long_tail_counts(
    recipe: str,
    available: list[int],
    *,
    imbalance_factor: float = 1.0,
    n_max: int | None = None,
    minority_fraction: float = 0.5,
    ecogan_unit: int = 100,
    counts: list[int] | None = None,
    drop_class: int = 0,
    drop_fraction: float = 0.05,
) -> list[int]:
    """Per-class image counts of ``recipe`` given the images ``available`` in each class."""
    C = len(available)
    if recipe not in RECIPES:
        raise TailganError(f"unknown long-tail recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if recipe in ("exp", "step") and imbalance_factor < 1:
        raise TailganError(f"imbalance factor IF={imbalance_factor} must be >= 1 (IF = n_max / n_min)")
    if n_max is None:
        n_max = min(available)  # the largest count every class can supply
    if recipe == "none":
        out = list(available)
    elif recipe == "exp":
        out = [int(n_max * (1.0 / imbalance_factor) ** (c / (C - 1))) if C > 1 else n_max for c in range(C)]
    elif recipe == "step":
        if not 0 <= minority_fraction <= 1:
            raise TailganError(f"minority_fraction={minority_fraction} must be between 0 and 1")
        n_minor = int(round(C * minority_fraction))
        out = [n_max] * (C - n_minor) + [int(n_max / imbalance_factor)] * n_minor
    elif recipe == "ecogan":
        out = [available[0]] + [ecogan_unit * c for c in range(1, C)]
    elif recipe == "counts":
        if counts is None:
            raise TailganError("recipe 'counts' needs data.counts=[n_0, n_1, ...] (one count per class)")
        if len(counts) != C:
            raise TailganError(
                f"data.counts has {len(counts)} values but the dataset has {C} classes; give one per class"
            )
        out = [int(n) for n in counts]
    else:  # drop_one
        if not 0 <= drop_class < C:
            raise TailganError(f"drop_class={drop_class} is not a class index (0..{C - 1})")
        if not 0 < drop_fraction <= 1:
            raise TailganError(f"drop_fraction={drop_fraction} must be in (0, 1]")
        others = max(n for c, n in enumerate(available) if c != drop_class) if C > 1 else available[0]
        out = list(available)
        out[drop_class] = math.ceil(drop_fraction * others)
    for c, (want, have) in enumerate(zip(out, available)):
        if want < 0:
            raise TailganError(f"class {c}: count {want} is negative")
        if want > have:
            raise TailganError(
                f"recipe {recipe!r} asks for {want} images of class {c}, which has only {have}; "
                f"lower n_max / the counts, or use another recipe"
            )
    return out


def select_indices(labels: np.ndarray, counts: list[int], selection: str = "first", seed: int = 0) -> np.ndarray:
    """Indices (sorted, into ``labels``) of the images each class keeps.

    ``first`` keeps the first ``counts[c]`` images of class c in dataset order (ECOGAN). ``shuffle`` seeds
    one ``numpy.random.RandomState(seed)`` and, class by class, shuffles the class's indices and keeps the
    first ones: LDAM-DRW's IMBALANCECIFAR recipe, so ``cifar10_lt_if100`` with seed 0 is its exact subset.
    """
    labels = np.asarray(labels)
    if selection not in ("first", "shuffle"):
        raise TailganError(f"selection {selection!r} is unknown; use 'first' or 'shuffle'")
    rng = np.random.RandomState(seed)
    kept = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        if selection == "shuffle":
            rng.shuffle(idx)
        kept.append(idx[:n])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def imbalance_ratio(counts: list[int]) -> float:
    """max_c n_c / min_c n_c over the classes that have images (inf when a class is empty)."""
    return max(counts) / min(counts) if min(counts) > 0 else float("inf")
