"""Generated images for classifier training: where they come from, and which of them to trust.

- :func:`generate_synthetic` draws images of given classes from a tailgan generator;
- :func:`load_synthetic_folder` reads images made elsewhere (or the synthetic part of a ``tailgan
  augment`` folder, whose manifest ``tailgan.data.folder.read_augment_manifest`` reads);
- :func:`filter_synthetic` keeps an image only if a classifier trained on the *real* imbalanced training
  split assigns it to its class with confidence >= t, and reports the acceptance rate per class;
- :func:`recognition_rates` / :func:`check_recognition` are the guard: how often that classifier
  recognises generated images as their class, with a loud warning or a refusal when it is low.

Each is a plain function of images, labels and a generator or classifier, so the classifiers' synthetic-image
sources (``tailgan.classify.synthetic.SOURCES``), ``tailgan augment`` and the imbalanced-learn sampler
(``tailgan.samplers``) share them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tailgan.data import DataConfig, fit_images, load_data, to_uint8
from tailgan.data.folder import read_augment_manifest, read_images
from tailgan.errors import TailganError
from tailgan.nets.inference import predict


def generate_synthetic(
    generator: Any, add: Sequence[int], like: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``add[c]`` images of each class c from a generator as uint8 shaped like ``like`` (N, C, H, W).

    ``generator`` follows the ``load_generator`` contract: ``num_classes`` and ``sample(labels, seed=...)``
    returning float images in [-1, 1]. Its outputs must be finite (a diverged generator is refused).
    """
    if generator.num_classes != len(add):
        raise TailganError(
            f"the generator has {generator.num_classes} classes but the data has {len(add)}; "
            "use a run trained on this dataset"
        )
    labels = torch.repeat_interleave(torch.arange(len(add)), torch.as_tensor(list(add), dtype=torch.long))
    if len(labels) == 0:
        return like[:0].clone(), labels
    out = generator.sample(labels, seed=seed)
    if not bool(torch.isfinite(out).all()):
        raise TailganError(
            f"the generator of {getattr(generator, 'run_dir', 'the run')} produces non-finite images "
            "(its training diverged); use an earlier checkpoint (--checkpoint) or retrain it"
        )
    images = fit_images(to_uint8(out).cpu(), like.shape[-1], like.shape[1])
    return images, labels


def load_synthetic_folder(
    folder: str | Path, classes: Sequence[str], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic images from ``folder``, fitted to the shape of ``like`` and labelled by class name.

    A folder written by ``tailgan augment`` holds the real training images too: only the files its
    manifest marks synthetic are read (the real ones would leak validation images into training).
    Any other folder (``DIR/<class>/*`` or ``DIR/train/<class>/*``) is read whole, through the
    ``folder`` data source; its class folders must be named like the dataset's classes.
    """
    folder = Path(folder)
    classes = list(classes)
    if not folder.is_dir():
        raise TailganError(f"synthetic image folder {folder} does not exist")
    manifest = read_augment_manifest(folder)
    if manifest is not None:
        if manifest["classes"] != classes:
            raise TailganError(f"{folder} was made for classes {manifest['classes']}, not {classes}")
        files = [f for f in manifest["files"] if f["synthetic"]]
        if not files:
            return like[:0].clone(), torch.zeros(0, dtype=torch.long)
        images = read_images([folder / f["path"] for f in files], like.shape[-1], like.shape[1])
        labels = torch.tensor([f["label"] for f in files], dtype=torch.long)
    else:
        extra = load_data(
            DataConfig(source="folder", root=str(folder), resolution=like.shape[-1], channels=like.shape[1])
        ).train
        unknown = [n for n in extra.classes if n not in classes]
        if unknown:
            raise TailganError(
                f"class folder {unknown[0]!r} in {folder} is not a class of the data ({', '.join(classes)})"
            )
        images = extra.images
        labels = torch.tensor([classes.index(extra.classes[y]) for y in extra.labels.tolist()], dtype=torch.long)
    return fit_images(images, like.shape[-1], like.shape[1]), labels


def class_probabilities(
    images: torch.Tensor,
    classifier: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Softmax of ``classifier``'s logits (N, K) for images (uint8, or float in [-1, 1])."""
    if len(images) == 0:
        raise TailganError("no images to score")
    return torch.softmax(predict(classifier, images, device, batch_size), dim=1)


def _per_class_rate(hit: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Share of ``hit`` among the images of each class; None for a class with no images."""
    n = torch.bincount(labels, minlength=num_classes)
    k = torch.bincount(labels[hit], minlength=num_classes)
    return [None if int(n[c]) == 0 else float(k[c]) / float(n[c]) for c in range(num_classes)]


def filter_synthetic(
    images: torch.Tensor,
    labels: torch.Tensor,
    classifier: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    threshold: float = 0.9,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, list[float | None]]:
    """Which synthetic images to keep: those that ``classifier`` assigns to their own class with
    probability >= ``threshold`` (and as its top class, so that a low threshold cannot keep an image
    the classifier puts in another class).

    ``classifier`` maps float images in [-1, 1] to logits; it must be trained on the real imbalanced
    training data, never on the validation or test split, nor be the evaluator trained on the full
    balanced set (that would leak the evaluation data into the choice of training images). Returns the
    boolean mask (N,) of kept images and the acceptance rate of each class (None where a class has no
    image).
    """
    if not 0.0 <= threshold <= 1.0:
        raise TailganError(f"filter threshold {threshold} must be a probability in [0, 1], e.g. 0.9")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        return torch.zeros(0, dtype=torch.bool), []
    probs = class_probabilities(images, classifier, batch_size, device)
    conf = probs.gather(1, labels.view(-1, 1)).squeeze(1)
    keep = (conf >= threshold) & (probs.argmax(1) == labels)
    return keep, _per_class_rate(keep, labels, probs.shape[1])


def recognition_rates(
    images: torch.Tensor,
    labels: torch.Tensor,
    classifier: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> list[float | None]:
    """Per class, the share of its generated images that ``classifier`` puts in that class (top-1)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    probs = class_probabilities(images, classifier, batch_size, device)
    return _per_class_rate(probs.argmax(1) == labels, labels, probs.shape[1])


def check_recognition(
    rates: Sequence[float | None],
    classes: Sequence[str],
    warn_below: float = 0.5,
    refuse_below: float | None = 0.2,
    log: Callable[[str], None] = print,
) -> float:
    """The guard before mixing generated images into training: print the per-class recognition rates,
    warn loudly when their mean is below ``warn_below``, refuse (``TailganError`` with the figure) below
    ``refuse_below`` (None: never refuse). Returns the mean over the classes that have images.
    """
    have = [(c, r) for c, r in zip(classes, rates) if r is not None]
    if not have:
        return float("nan")
    mean = float(np.mean([r for _, r in have]))
    log(
        "recognition of generated images by a classifier trained on the real data: "
        + ", ".join(f"{c} {r:.2f}" for c, r in have)
        + f" (mean {mean:.2f})"
    )
    low = [c for c, r in have if r < warn_below]
    if refuse_below is not None and mean < refuse_below:
        raise TailganError(
            f"generated images are recognised as their class only {mean:.0%} of the time (below "
            f"{refuse_below:.0%}; classes below {warn_below:.0%}: {', '.join(low)}): mixing them in would "
            "mostly add label noise. Train the generator longer, or pass --no-guard to use them anyway "
            "(with --filter T only the images it recognises are kept)"
        )
    if mean < warn_below:
        msg = (
            f"WARNING: generated images are recognised as their class only {mean:.0%} of the time "
            f"(classes below {warn_below:.0%}: {', '.join(low)}); they will likely hurt the classifier"
        )
        log(msg)
        warnings.warn(msg, stacklevel=2)
    return mean
