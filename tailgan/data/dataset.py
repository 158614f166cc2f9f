"""``DataConfig`` + ``load_data``: a source cut to a long-tailed training set, with its manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from tailgan.config import from_dict, to_dict
from tailgan.data.images import ImageSet, fit_images
from tailgan.data.longtail import imbalance_ratio, long_tail_counts, minority_classes, select_indices
from tailgan.data.sources import SOURCE_NAMES, load_source
from tailgan.errors import TailganError
from tailgan.io import atomic_write_text
from tailgan.version import __version__


@dataclass
class DataConfig:
    """Which images a run uses. Every field is recorded in the run's config and the dataset manifest."""

    source: str = "digits"  # fashion_mnist | mnist | cifar10 | cifar100 | digits | folder | places_lt
    root: str | None = None  # folder holding the source (torchvision layout, or the image folder)
    preset: str | None = None  # informational: the preset this config came from
    recipe: Literal["none", "exp", "step", "ecogan", "counts", "drop_one", "minority"] = "none"
    imbalance_factor: float = 1.0  # IF = n_max / n_min for exp and step
    n_max: int | None = None  # head count for exp/step (default: the smallest class's size)
    minority_fraction: float = 0.5  # step: share of classes cut to n_max / IF
    ecogan_unit: int = 100  # ecogan: class c keeps unit * c
    counts: list[int] | None = None  # counts: one per class
    drop_class: int = 0  # drop_one: the class that is cut
    drop_fraction: float = 0.05  # drop_one: it keeps ceil(fraction * largest other class)
    n_minority: int = 8  # minority: how many classes keep int(n_max / IF) (drawn with `seed`)
    minority: list[int] | None = None  # minority: the minority classes themselves (overrides the draw)
    selection: Literal["first", "shuffle"] = "first"  # which images a class keeps
    seed: int = 0  # for selection=shuffle
    resolution: int | None = None  # square side in px; None keeps the native size
    channels: int | None = None  # 1 or 3; None keeps the native channels
    fit: Literal["resize", "pad", "crop"] = "resize"  # how images reach the resolution
    download: bool = False  # let torchvision download (needs a network)
    skip_bad: bool = False  # folder/places: skip unreadable images instead of failing

    def replace(self, **changes: Any) -> DataConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict[str, Any]] = {
    # ECOGAN's FashionMNIST_LT: 6000, 100, 200, ..., 900 (the first 100*c images of each class)
    "fashion_mnist_lt": dict(source="fashion_mnist", recipe="ecogan", selection="first"),
    "mnist_lt": dict(source="mnist", recipe="ecogan", selection="first"),
    # ECOGAN's CIFAR10_LT: 5000, 100, ..., 900; its building script is lost, the author's earlier repo
    # shuffled each class with seed 0 before cutting, which is what this does
    "cifar10_lt": dict(source="cifar10", recipe="ecogan", selection="shuffle", seed=0),
    # LDAM-DRW / class-balanced-loss CIFAR-10-LT, IF 100: 5000, 2997, ..., 50
    "cifar10_lt_if100": dict(source="cifar10", recipe="exp", imbalance_factor=100.0, selection="shuffle", seed=0),
    "cifar100_lt_if100": dict(source="cifar100", recipe="exp", imbalance_factor=100.0, selection="shuffle", seed=0),
    # the embedded demo set: scikit-learn digits, 120 .. 12 images per class (IF 10)
    "digits_lt": dict(source="digits", recipe="exp", imbalance_factor=10.0, n_max=120, selection="shuffle", seed=0),
    "places_lt": dict(source="places_lt", recipe="none", resolution=64, channels=3),
    # DFG's Fashion-MNIST 40:1: 8 minority classes (seeded draw) keep their first 150 images, the other two
    # all 6,000; padded 2 px to the 32 x 32 of DFG's LeNet-5 (its transforms.Pad(2))
    "fashion_mnist_dfg40": dict(
        source="fashion_mnist",
        recipe="minority",
        imbalance_factor=40.0,
        n_max=6000,
        n_minority=8,
        selection="first",
        seed=0,
        resolution=32,
        fit="pad",
    ),
}


def resolve_data_config(spec: str | DataConfig | dict, root: str | None = None, **overrides: Any) -> DataConfig:
    """A DataConfig from a preset name, a source name, a dict or a DataConfig, plus overrides."""
    if isinstance(spec, DataConfig):
        cfg = spec
    elif isinstance(spec, dict):
        cfg = from_dict(DataConfig, spec, prefix="data.")
    elif spec in PRESETS:
        cfg = from_dict(DataConfig, {**PRESETS[spec], "preset": spec}, prefix="data.")
    elif spec in SOURCE_NAMES:
        cfg = DataConfig(source=spec)
    else:
        raise TailganError(
            f"unknown dataset {spec!r}; use a preset ({', '.join(PRESETS)}) or a source ({', '.join(SOURCE_NAMES)})"
        )
    if root is not None:
        overrides["root"] = str(root)
    return from_dict(DataConfig, {**to_dict(cfg), **overrides}, prefix="data.") if overrides else cfg


@dataclass
class LongTailedData:
    """The long-tailed training split, the untouched (balanced) test split, an optional validation split."""

    train: ImageSet
    test: ImageSet
    valid: ImageSet | None
    config: DataConfig
    manifest: dict = field(repr=False)

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def summary(self) -> str:
        counts = self.train.counts()
        name = self.config.preset or self.config.source
        lines = [
            f"{name}: {len(self.train)} training images, {self.num_classes} classes, "
            f"imbalance ratio {imbalance_ratio(counts):.1f}, test {len(self.test)} images"
        ]
        width = max(len(c) for c in self.classes)
        test_counts = self.test.counts()
        lines.append(f"  {'class':<{width + 6}} {'train':>7} {'test':>7}")
        for c, (n, t) in enumerate(zip(counts, test_counts)):
            lines.append(f"  {c:>3}  {self.classes[c]:<{width}} {n:>7} {t:>7}")
        return "\n".join(lines)


def _fingerprint(manifest: dict) -> str:
    keep = {
        k: manifest[k]
        for k in (
            "source",
            "recipe",
            "kept_indices",
            "counts",
            "test_counts",
            "resolution",
            "channels",
            "fit",
            "classes",
        )
    }
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def load_data(spec: str | DataConfig | dict = "digits_lt", root: str | None = None, **overrides: Any) -> LongTailedData:
    """Load a source and cut its training split to a long tail; the test split stays as it is.

    ``spec`` is a preset name (``fashion_mnist_lt``, ...), a source name, a dict or a DataConfig;
    keyword overrides change single fields (``load_data("digits_lt", resolution=32)``).
    """
    cfg = resolve_data_config(spec, root, **overrides)
    splits = load_source(
        cfg.source,
        cfg.root,
        download=cfg.download,
        resolution=cfg.resolution,
        channels=cfg.channels,
        fit=cfg.fit,
        skip_bad=cfg.skip_bad,
    )
    full = splits["train"]
    counts = long_tail_counts(
        cfg.recipe,
        full.counts(),
        imbalance_factor=cfg.imbalance_factor,
        n_max=cfg.n_max,
        minority_fraction=cfg.minority_fraction,
        ecogan_unit=cfg.ecogan_unit,
        counts=cfg.counts,
        drop_class=cfg.drop_class,
        drop_fraction=cfg.drop_fraction,
        n_minority=cfg.n_minority,
        minority=cfg.minority,
        seed=cfg.seed,
    )
    kept = select_indices(full.labels.numpy(), counts, cfg.selection, cfg.seed)

    def fit(s: ImageSet | None) -> ImageSet | None:
        if s is None:
            return None
        return ImageSet(fit_images(s.images, cfg.resolution, cfg.channels, cfg.fit), s.labels, s.classes)

    train = fit(full.subset(torch.from_numpy(kept)))
    test, valid = fit(splits["test"]), fit(splits["valid"])
    manifest = build_manifest(cfg, train, test, kept)
    return LongTailedData(train=train, test=test, valid=valid, config=cfg, manifest=manifest)


def build_manifest(cfg: DataConfig, train: ImageSet, test: ImageSet, kept: np.ndarray) -> dict:
    recipe = {
        k: v
        for k, v in to_dict(cfg).items()
        if k
        in (
            "recipe",
            "imbalance_factor",
            "n_max",
            "minority_fraction",
            "ecogan_unit",
            "counts",
            "drop_class",
            "drop_fraction",
            "selection",
            "seed",
        )
    }
    if cfg.recipe == "minority":
        # only this recipe records its fields, so every other recipe's manifest and fingerprint stay as they were
        recipe["n_minority"] = cfg.n_minority
        recipe["minority"] = cfg.minority
        recipe["minority_classes"] = minority_classes(train.num_classes, cfg.n_minority, cfg.seed, cfg.minority)
    manifest = {
        "tailgan_version": __version__,
        "source": cfg.source,
        "preset": cfg.preset,
        "split": "train",
        "recipe": recipe,
        "seed": cfg.seed,
        "selection": cfg.selection,
        "resolution": cfg.resolution,
        "channels": cfg.channels,
        "fit": cfg.fit,
        "classes": list(train.classes),
        "counts": train.counts(),
        "imbalance_ratio": imbalance_ratio(train.counts()),
        "test_counts": test.counts(),
        "kept_indices": [int(i) for i in kept],
        "config": to_dict(cfg),
    }
    manifest["fingerprint"] = _fingerprint(manifest)
    # the pixels, apart from the fingerprint (which keys evaluator caches): a resumed run checks both
    manifest["content"] = {"train": _content_hash(train), "test": _content_hash(test)}
    return manifest


def _content_hash(images: ImageSet) -> str:
    h = hashlib.sha256(images.images.contiguous().numpy().tobytes())
    h.update(images.labels.numpy().astype("int64").tobytes())
    return h.hexdigest()[:16]


def data_changes(old: dict, new: dict) -> list[str]:
    """What differs between two manifests of 'the same' dataset, in words (empty: nothing)."""
    changes = []
    for key, what in (("counts", "training images per class"), ("test_counts", "test images per class")):
        if old.get(key) is not None and old.get(key) != new.get(key):
            diff = [f"class {c}: {a} -> {b}" for c, (a, b) in enumerate(zip(old[key], new[key])) if a != b]
            if len(old[key]) != len(new[key]):
                diff = [f"{len(old[key])} -> {len(new[key])} classes"]
            changes.append(f"{what} ({', '.join(diff[:3])}{', ...' if len(diff) > 3 else ''})")
    old_content, new_content = old.get("content") or {}, new.get("content") or {}
    for split in ("train", "test"):
        if old_content.get(split) and old_content[split] != new_content.get(split) and not changes:
            changes.append(f"the {split} images' pixels or order (same counts)")
    if not changes and old.get("fingerprint") != new.get("fingerprint"):
        changes.append(f"the dataset's fingerprint ({old.get('fingerprint')} -> {new.get('fingerprint')}: recipe, "
                       "selection, classes or image size)")  # fmt: skip
    return changes


def save_manifest(manifest: dict, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(manifest, indent=1))


def load_manifest(path: str | Path) -> dict:
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TailganError(f"cannot read manifest {path}: {e}") from None
    if not isinstance(manifest, dict) or "config" not in manifest or "kept_indices" not in manifest:
        raise TailganError(f"{path} is not a tailgan dataset manifest (no 'config' / 'kept_indices')")
    return manifest


def load_from_manifest(manifest: dict | str | Path, root: str | None = None) -> LongTailedData:
    """Rebuild the dataset a manifest describes and check it is the same (same kept images and counts)."""
    if not isinstance(manifest, dict):
        manifest = load_manifest(manifest)
    overrides = {"root": root} if root is not None else {}
    data = load_data(from_dict(DataConfig, manifest["config"], prefix="data."), **overrides)
    if data.manifest["kept_indices"] != manifest["kept_indices"] or data.manifest["counts"] != manifest["counts"]:
        raise TailganError("the data on disk does not give the images the manifest lists; is --root the same dataset?")
    return data
