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
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tailgan.classify.strategies import synthetic_counts
from tailgan.classify.synthetic import AUGMENT_TOOL, generate_synthetic, read_augment_manifest, read_png
from tailgan.data import ImageSet, LongTailedData
from tailgan.data.folder import check_output_dir, replace_dir
from tailgan.io import atomic_write_json
from tailgan.outputs import check_not_inside, remove_stale_temp, temp_name

# read_png and read_augment_manifest live in tailgan.classify.synthetic (the folder strategy reads them too)
__all__ = ["AUGMENT_TOOL", "augment_folder", "read_augment_manifest", "read_png"]


def _save_png(img: np.ndarray, path: Path) -> None:
    Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)).save(path, compress_level=1)


def _write_split(tmp: Path, split: str, images: ImageSet, prefix: str, files: list[dict], synthetic: bool) -> None:
    arr = images.images.numpy()
    for i, (img, y) in enumerate(zip(arr, images.labels.tolist())):
        rel = f"{split}/cls{y}/{prefix}{i}.png"
        _save_png(img, tmp / rel)
        files.append({"path": rel, "label": y, "synthetic": synthetic})


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
    out = Path(out)
    check_not_inside(
        out, [data.config.root if data.config.source in ("folder", "places_lt") else None, *(protected or [])]
    )
    check_output_dir(out, overwrite)
    add = synthetic_counts(data.train.counts(), synthetic)
    syn_x, syn_y = generate_synthetic(generator, add, data.train.images, seed)
    generated = ImageSet(syn_x, syn_y, list(data.classes))

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(out)  # of augment runs that were killed
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=temp_name(out)))
    try:
        splits = ["train"] + (["valid"] if len(data.test) else [])
        for split in splits:
            for c in range(data.num_classes):
                (tmp / split / f"cls{c}").mkdir(parents=True)
        files: list[dict] = []
        _write_split(tmp, "train", data.train, "train", files, synthetic=False)
        _write_split(tmp, "train", generated, "syn", files, synthetic=True)
        if len(data.test):
            _write_split(tmp, "valid", data.test, "valid", files, synthetic=False)
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
        atomic_write_json(tmp / "classes.json", list(data.classes))
        atomic_write_json(tmp / "manifest.json", manifest)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
