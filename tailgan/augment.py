"""``tailgan augment``: the long-tailed training images plus synthetic ones that balance them, as a folder.

Layout (the same as ``tailgan data export``, so ``--data folder --root OUT`` reads it back):

    OUT/train/cls<c>/train<i>.png   real long-tailed training images
    OUT/train/cls<c>/syn<i>.png     generated images
    OUT/valid/cls<c>/valid<i>.png   the real, untouched test split (ECOGAN calls it "valid")
    OUT/classes.json                class names
    OUT/manifest.json               what was generated from which run, and every file with a
                                    ``synthetic`` flag

The folder is built beside OUT and renamed into place when complete. A non-empty OUT is refused
unless ``overwrite``; OUT may never be, contain or lie inside the dataset's own folder or the run.

The command's arguments are defined in ``tailgan.cli`` (as ``train``'s and ``sample``'s are), so ``tailgan augment
--help`` imports nothing of this module.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from tailgan.classify.strategies import synthetic_counts
from tailgan.data import ImageSet, LongTailedData, fit_images, load_data, to_uint8
from tailgan.data.cli import data_config_from_args
from tailgan.data.folder import AUGMENT_TOOL, ImageFolderWriter
from tailgan.engine import load_generator
from tailgan.outputs import check_not_inside
from tailgan.progress import progress
from tailgan.synthesis.images import generate_synthetic


def synthetic_batches(
    generator: Any, add: list[int], like: torch.Tensor, seed: int, batch_size: int = 256
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``generate_synthetic``'s images batch by batch (the same images), so memory stays flat in their number."""
    if not hasattr(generator, "iter_samples") or generator.num_classes != len(add):
        yield generate_synthetic(generator, add, like, seed)  # any generator; refuses a class mismatch
        return
    labels = torch.repeat_interleave(torch.arange(len(add)), torch.as_tensor(list(add), dtype=torch.long))
    batches = generator.iter_samples(labels, seed=seed, batch_size=batch_size)
    for i, out in zip(range(0, len(labels), batch_size), batches):
        yield fit_images(to_uint8(out), like.shape[-1], like.shape[1]), labels[i : i + batch_size]


def augment_folder(
    generator: Any,
    data: LongTailedData,
    out: str | Path,
    synthetic: str = "fill",
    seed: int = 0,
    overwrite: bool = False,
    protected: list[Path | str | None] | None = None,
) -> dict:
    """Write ``data.train`` plus generated images that bring it to ``synthetic`` ("fill" or "ratio:R").

    ``generator`` follows the ``tailgan.load_generator`` contract (``num_classes`` and
    ``sample(labels, seed=...)`` -> float images in [-1, 1]). ``protected`` folders (the dataset's
    root, the run) are never written into. Returns the manifest written to OUT/manifest.json.
    """
    root = data.config.root if data.config.source in ("folder", "places_lt") else None
    writer = ImageFolderWriter(out, "augment", overwrite, [root, *(protected or [])], num_classes=data.num_classes)
    try:
        add = synthetic_counts(data.train.counts(), synthetic)
        files: list[dict] = []

        def write(split: str, images: ImageSet, prefix: str, synthetic: bool) -> None:
            paths = writer.write(split, images.images, images.labels, prefix)
            files.extend({"path": p, "label": y, "synthetic": synthetic} for p, y in zip(paths, images.labels.tolist()))

        write("train", data.train, "train", False)
        with progress(sum(add), "augment", unit="img") as bar:
            for syn_x, syn_y in synthetic_batches(generator, add, data.train.images, seed):
                write("train", ImageSet(syn_x, syn_y, list(data.classes)), "syn", True)
                bar.update(len(syn_y))
        if len(data.test):
            write("valid", data.test, "valid", False)
    except BaseException:
        writer.abort()
        raise
    manifest = {
        "tool": AUGMENT_TOOL,
        "run": str(getattr(generator, "run_dir", "")),
        "generator_step": getattr(generator, "step", None),
        "synthetic": synthetic,
        "seed": seed,
        "classes": list(data.classes),
        "real_counts": data.train.counts(),
        "synthetic_counts": add,
        "test_counts": data.test.counts(),
        "data_fingerprint": data.manifest.get("fingerprint"),
        "data_config": data.manifest.get("config"),
        "files": files,
    }
    writer.close(list(data.classes), manifest)
    return manifest


def cmd_augment(args: argparse.Namespace) -> int:
    check_not_inside(args.out, [args.run])  # before anything is loaded
    data = load_data(data_config_from_args(args.data, args, args.overrides))
    generator = load_generator(args.run, checkpoint=args.checkpoint, device=args.device)
    manifest = augment_folder(
        generator, data, args.out, synthetic=args.synthetic, seed=args.seed, overwrite=args.overwrite,
        protected=[args.run],
    )  # fmt: skip
    n_syn = sum(manifest["synthetic_counts"])
    print(
        f"wrote {sum(manifest['real_counts'])} real and {n_syn} synthetic training images"
        f" (+ {sum(manifest['test_counts'])} test images) to {args.out}"
    )
    return 0
