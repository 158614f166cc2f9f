"""Long-tailed recipes: how many images each class keeps, and which ones.

Recipes (see ``../shared/specs``):
- ``exp``: n_c = int(n_max * (1/IF) ** (c / (C - 1)))  (LDAM-DRW and class-balanced-loss CIFAR-LT);
- ``step``: the first classes keep n_max, the last ``round(C * minority_fraction)`` keep int(n_max / IF);
- ``ecogan``: class 0 keeps all its images, class c keeps ``unit * c`` (ECOGAN's FashionMNIST_LT / CIFAR10_LT);
- ``counts``: an explicit list (e.g. BAGAN-GP's tables);
- ``drop_one``: one class keeps ceil(fraction * max other class), the rest stay whole (BAGAN's protocol);
- ``minority``: k classes (drawn with a seed, or listed) keep int(n_max / IF), the others are capped at n_max
  (DFG's protocol: Fashion-MNIST 40:1 = 6,000 vs 150 with 8 minority classes; SVHN 10:1 = 5,000 vs 500);
- ``none``: every image.
"""

from __future__ import annotations

import math

import numpy as np

from tailgan.errors import TailganError

RECIPES = ("none", "exp", "step", "ecogan", "counts", "drop_one", "minority")


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
    n_minority: int = 8,
    minority: list[int] | None = None,
    seed: int = 0,
) -> list[int]:
    """Per-class image counts of ``recipe`` given the images ``available`` in each class.

    ``n_minority``, ``minority`` and ``seed`` are read by the ``minority`` recipe only (see ``minority_classes``).
    """
    C = len(available)
    if recipe not in RECIPES:
        raise TailganError(f"unknown long-tail recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if recipe == "minority":
        return _minority_counts(available, imbalance_factor, n_max, minority_classes(C, n_minority, seed, minority))
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


def minority_classes(
    num_classes: int, n_minority: int = 8, seed: int = 0, minority: list[int] | None = None
) -> list[int]:
    """The minority classes of the ``minority`` recipe, sorted.

    An explicit ``minority`` list wins. Otherwise ``n_minority`` classes are drawn without replacement by
    ``numpy.random.RandomState(seed).permutation(num_classes)[:n_minority]``: DFG draws them with an
    unseeded ``random.shuffle``, tailgan seeds the draw so a run can be rebuilt.
    """
    if minority is not None:
        bad = [c for c in minority if not 0 <= c < num_classes]
        if bad:
            raise TailganError(f"data.minority lists class {bad[0]}, which is not a class index (0..{num_classes - 1})")
        if len(set(minority)) != len(minority):
            raise TailganError(f"data.minority={list(minority)} names a class twice; list each minority class once")
        return sorted(int(c) for c in minority)
    if not 0 <= n_minority <= num_classes:
        raise TailganError(f"n_minority={n_minority} must be between 0 and the number of classes ({num_classes})")
    return sorted(int(c) for c in np.random.RandomState(seed).permutation(num_classes)[:n_minority])


def _minority_counts(available: list[int], imbalance_factor: float, n_max: int | None, minor: list[int]) -> list[int]:
    """DFG's rule: a minority class keeps int(cap / IF), every other class at most cap (default cap: the largest class).

    Both are caps, as in DFG's loaders (which keep the first images up to the limit): a class with fewer
    images keeps them all, e.g. SVHN's class 9 (4,659 images) under the 5,000 cap.
    """
    if imbalance_factor < 1:
        raise TailganError(f"imbalance factor IF={imbalance_factor} must be >= 1 (IF = majority cap / minority count)")
    cap = max(available) if n_max is None else n_max
    if cap < 1:
        raise TailganError(f"n_max={cap} must be a positive majority cap")
    n_minor = int(cap / imbalance_factor)
    return [min(have, n_minor if c in minor else cap) for c, have in enumerate(available)]


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
