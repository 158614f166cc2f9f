"""Where a synthetic-image strategy (``gan+S``, ``folder+S``) takes its images from: the registry ``SOURCES``.

The images themselves, their filter and the recognition guard live in :mod:`tailgan.synthesis.images`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tailgan.classify.strategies import synthetic_counts
from tailgan.data import to_float, to_uint8
from tailgan.errors import TailganError
from tailgan.registry import Registry
from tailgan.synthesis.images import generate_synthetic, load_synthetic_folder
from tailgan.synthesis.m2m import m2m_images

# a source of synthetic images: (real training part, config, seed, generator, folder, reference classifier)
# -> (uint8 images, labels, record); the reference is trained on the real training part only
SOURCES: Registry[Callable[..., tuple[torch.Tensor, torch.Tensor, dict]]] = Registry("synthetic-image source")


@SOURCES.register("gan")
def _from_generator(real: Any, cfg: Any, seed: int, generator: Any, synthetic_dir: Any, reference: Any) -> tuple:
    """``cfg.synthetic`` images for the classes ``cfg.synthetic_classes`` from a tailgan generator."""
    if generator is None:
        raise TailganError("strategy 'gan' needs a generator: pass --generator RUN (a tailgan training run)")
    want = synthetic_counts(real.counts(), cfg.synthetic, cfg.synthetic_classes)
    x, y = generate_synthetic(generator, want, real.images, seed)
    return x, y, {"synthetic_requested": want}


@SOURCES.register("folder")
def _from_folder(real: Any, cfg: Any, seed: int, generator: Any, synthetic_dir: Any, reference: Any) -> tuple:
    """The synthetic images of a folder (``tailgan augment``'s, or any class-per-folder layout)."""
    if synthetic_dir is None:
        raise TailganError("strategy 'folder' needs --synthetic-dir DIR (a folder of synthetic images)")
    x, y = load_synthetic_folder(synthetic_dir, real.classes, real.images)
    return x, y, {}


@SOURCES.register("m2m")
def _from_m2m(real: Any, cfg: Any, seed: int, generator: Any, synthetic_dir: Any, reference: Any) -> tuple:
    """M2m (:mod:`tailgan.synthesis.m2m`): larger classes' images translated into the classes that lack images by
    the reference classifier's gradient, once before training (the paper re-translates during its deferred
    phase with the network being trained); where too few reach confidence 0.9, real images of the class fill in."""
    if reference is None:
        raise TailganError("strategy 'm2m' translates with the reference classifier; it was not trained")
    want = synthetic_counts(real.counts(), cfg.synthetic, cfg.synthetic_classes)
    rng = torch.Generator().manual_seed(seed)
    x, y, report = m2m_images(reference, to_float(real.images), real.labels, want, generator=rng)
    return to_uint8(x), y, {"synthetic_requested": want, "m2m": {str(k): v for k, v in report.items()}}
