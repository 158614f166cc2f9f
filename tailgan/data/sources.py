"""Where images come from: torchvision sets, scikit-learn's digits, Places-LT lists and image folders.

Every source returns ``{"train": ImageSet, "test": ImageSet, "valid": ImageSet | None}`` at native
pixels (uint8); long-tail recipes and resizing are applied afterwards, the same way for all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tailgan.data.folder import class_names_file, load_image_folder, load_image_list
from tailgan.data.images import ImageSet
from tailgan.errors import TailganError

Splits = dict[str, ImageSet | None]

TORCHVISION_SOURCES = {
    # name: (torchvision class name, folder torchvision expects under root)
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
}


def _torchvision_split(name: str, root: str, train: bool, download: bool) -> ImageSet:
    import torchvision.datasets as tvd

    cls_name, expected = TORCHVISION_SOURCES[name]
    try:
        ds = getattr(tvd, cls_name)(root, train=train, download=download)
    except RuntimeError as e:
        raise TailganError(
            f"{name} not found under {root}: expected torchvision's layout {Path(root) / expected} "
            f"({e}). Pass --root to the folder that holds it, or add --download where a network exists."
        ) from None
    data = ds.data
    if isinstance(data, np.ndarray):  # CIFAR: (N, H, W, 3) numpy
        images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    else:  # MNIST family: (N, H, W) tensor
        images = data.unsqueeze(1).contiguous()
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    classes = [str(c) for c in ds.classes]
    return ImageSet(images, labels, classes)


def load_torchvision(name: str, root: str | None, download: bool = False) -> Splits:
    if root is None:
        raise TailganError(
            f"source {name!r} needs --root (the folder holding torchvision's {TORCHVISION_SOURCES[name][1]})"
        )
    if not Path(root).is_dir() and not download:
        raise TailganError(f"data root {root} does not exist; pass --root to an existing folder, or --download")
    return {
        "train": _torchvision_split(name, root, True, download),
        "test": _torchvision_split(name, root, False, download),
        "valid": None,
    }


DIGITS_TEST_PER_CLASS = 50


def load_digits_source() -> Splits:
    """scikit-learn's 8x8 digits (1,797 real images): 50 test images per class, the rest train.

    The test images are picked per class by a fixed shuffle (RandomState(0)), so the split never changes.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are 0..16: scale to 0..255
    images = torch.from_numpy(np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    rng = np.random.RandomState(0)
    test_idx = []
    for c in range(10):
        idx = np.flatnonzero(bunch.target == c)
        rng.shuffle(idx)
        test_idx.append(np.sort(idx[:DIGITS_TEST_PER_CLASS]))
    test_idx = np.concatenate(test_idx)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    classes = [str(c) for c in range(10)]
    train_idx = torch.from_numpy(np.flatnonzero(train_mask))
    test_idx = torch.from_numpy(np.sort(test_idx))
    return {
        "train": ImageSet(images[train_idx], labels[train_idx], classes),
        "test": ImageSet(images[test_idx], labels[test_idx], classes),
        "valid": None,
    }


def load_places_lt(root: str | None, resolution: int | None, channels: int | None, fit: str, skip_bad: bool) -> Splits:
    """Places-LT: Places365 images listed by OLTR's ``Places_LT_{train,val,test}.txt`` (``path label`` lines).

    Paths in the lists are resolved relative to ``root``. Images are fitted to ``resolution`` while loading
    (62,500 images at 256 px would not fit in memory as one tensor).
    """
    if root is None or not Path(root).is_dir():
        raise TailganError(f"places_lt needs --root pointing at the Places365 images and the OLTR lists (got {root})")
    if resolution is None:
        raise TailganError("places_lt needs a resolution (e.g. data.resolution=64): the images are 256 px")
    splits: Splits = {}
    for split, fname in (
        ("train", "Places_LT_train.txt"),
        ("test", "Places_LT_test.txt"),
        ("valid", "Places_LT_val.txt"),
    ):
        path = Path(root) / fname
        if not path.is_file():
            if split == "valid":
                splits["valid"] = None
                continue
            raise TailganError(f"{path} is missing: put OLTR's {fname} in {root}")
        splits[split] = load_image_list(path, Path(root), resolution, channels or 3, fit, skip_bad)
    # the train list defines the class names; make the others agree
    for split in ("test", "valid"):
        if splits[split] is not None:
            splits[split].classes = list(splits["train"].classes)
    return splits


def load_folder_source(
    root: str | None, resolution: int | None, channels: int | None, fit: str, skip_bad: bool
) -> Splits:
    """A user's folder: ``ROOT/train/<class>/*`` (+ ``ROOT/valid|val|test/<class>/*``) or a flat ``ROOT/<class>/*``.

    The test split is ``ROOT/test`` when present, else ``ROOT/valid`` (or ``val``, ECOGAN's name); a flat
    folder has an empty test split.
    """
    if root is None:
        raise TailganError("source 'folder' needs --root DIR (a folder of class folders)")
    base = Path(root)
    if not base.is_dir():
        raise TailganError(f"image folder {base} does not exist; pass --root to an existing folder")
    if (base / "train").is_dir():
        train = load_image_folder(base / "train", resolution, channels, fit, skip_bad)
        held_out = [base / n for n in ("test", "valid", "val") if (base / n).is_dir()]
        test = (
            load_image_folder(
                held_out[0], resolution, channels or train.images.shape[1], fit, skip_bad, classes=train.classes
            )
            if held_out
            else None
        )
        valid = None
        if len(held_out) > 1 and held_out[0].name == "test":
            valid = load_image_folder(
                held_out[1], resolution, channels or train.images.shape[1], fit, skip_bad, classes=train.classes
            )
    else:
        train = load_image_folder(base, resolution, channels, fit, skip_bad)
        test, valid = None, None
    if test is None:
        test = ImageSet(train.images[:0], train.labels[:0], list(train.classes))
    names = class_names_file(base, train.classes)
    for split in (train, test, valid):
        if split is not None:
            split.classes = list(names)
    return {"train": train, "test": test, "valid": valid}


SOURCE_NAMES = ("fashion_mnist", "mnist", "cifar10", "cifar100", "digits", "folder", "places_lt")


def load_source(
    name: str,
    root: str | None,
    *,
    download: bool,
    resolution: int | None,
    channels: int | None,
    fit: str,
    skip_bad: bool,
) -> Splits:
    """Load every split of source ``name`` (native pixels, except folders and Places which are fitted on load)."""
    if name in TORCHVISION_SOURCES:
        return load_torchvision(name, root, download)
    if name == "digits":
        return load_digits_source()
    if name == "folder":
        return load_folder_source(root, resolution, channels, fit, skip_bad)
    if name == "places_lt":
        return load_places_lt(root, resolution, channels, fit, skip_bad)
    if name == "arrays":  # tailgan.data.arrays.in_memory_data: the images were never on disk
        raise TailganError(
            "this run was trained on arrays in memory (GenerativeOverSampler), which cannot be loaded again; give "
            "the data to use with --data (and --root)"
        )
    raise TailganError(f"unknown data source {name!r}; choose one of {', '.join(SOURCE_NAMES)}")
