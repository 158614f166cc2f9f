"""Image folders: reading a user's ``<class>/*`` layout (any mode, any size) and writing one.

Policy for mixed folders, documented in the README: palette and 16-bit images are converted to 8-bit;
alpha is composited onto black; images become grayscale (1 channel) or RGB (3) as configured (by default
RGB unless every image is grayscale); sizes are fitted by ``tailgan.data.images.fit_images``. Files that
are not images (by extension) are ignored; an unreadable image is an error naming it, or is skipped
with ``skip_bad`` (the count is reported as a warning).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from tailgan.data.images import ImageSet, fit_images
from tailgan.errors import TailganError
from tailgan.outputs import check_not_inside, remove_stale_temp, temp_name

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def natural_key(name: str) -> list:
    """Sort key that puts ``cls2`` before ``cls10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _to_array(img: Image.Image, channels: int) -> np.ndarray:
    """A PIL image -> uint8 (C, H, W) with the documented mode policy."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(np.rint(arr * 255.0 / scale), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba).convert("RGB")
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_images(files: list[Path], resolution: int, channels: int, fit: str = "resize") -> torch.Tensor:
    """uint8 (N, C, H, W) images of ``files``, each brought to ``resolution`` and ``channels`` by the folder
    policy (an unreadable file is an error naming it)."""
    tensors, _ = _read_images(files, resolution, channels, fit, skip_bad=False)
    return torch.stack(tensors)


def _read_images(
    files: list[Path], resolution: int | None, channels: int | None, fit: str, skip_bad: bool
) -> tuple[list[torch.Tensor], list[int]]:
    """Decode ``files``; returns the fitted tensors and the positions that were kept."""
    opened: list[tuple[int, Image.Image]] = []
    bad: list[Path] = []
    for i, f in enumerate(files):
        try:
            img = Image.open(f)
            img.load()
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
            if not skip_bad:
                raise TailganError(
                    f"cannot read image {f}: {e}. Remove or replace it, or skip unreadable images "
                    "(--skip-bad, or data.skip_bad=true for train)"
                ) from None
            bad.append(f)
            continue
        opened.append((i, img))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s), e.g. {bad[0]}", stacklevel=3)
    if channels is None:
        channels = 1 if all(img.mode in GRAY_MODES for _, img in opened) else 3
    tensors, kept = [], []
    first_size = None
    for i, img in opened:
        t = torch.from_numpy(_to_array(img, channels).copy())
        if resolution is None:
            if first_size is None:
                first_size = (t.shape[1:], files[i])
            elif t.shape[1:] != first_size[0]:
                raise TailganError(
                    f"image {files[i]} is {t.shape[2]}x{t.shape[1]} but {first_size[1]} is "
                    f"{first_size[0][1]}x{first_size[0][0]}; set data.resolution (and data.fit) to fit them to one size"
                )
        else:
            t = fit_images(t.unsqueeze(0), resolution, channels, fit)[0]
        tensors.append(t)
        kept.append(i)
    return tensors, kept


def load_image_folder(
    root: Path,
    resolution: int | None,
    channels: int | None,
    fit: str = "crop",
    skip_bad: bool = False,
    classes: list[str] | None = None,
) -> ImageSet:
    """Load ``root/<class>/*`` into an ImageSet; class order is natural-sorted folder names (or ``classes``)."""
    root = Path(root)
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: natural_key(d.name)
    )
    if not class_dirs:
        raise TailganError(f"{root} has no class folders; expected {root}/<class name>/<image files>")
    folder_names = [d.name for d in class_dirs]
    if classes is not None:
        unknown = [n for n in folder_names if n not in classes]
        if unknown:
            raise TailganError(f"{root / unknown[0]} is a class that the training split does not have")
    else:
        classes = folder_names
    files, labels = [], []
    for d in class_dirs:
        class_files = sorted((f for f in d.iterdir() if _is_image(f)), key=lambda f: natural_key(f.name))
        if not class_files and classes is folder_names:
            raise TailganError(f"class folder {d} holds no images; add images or remove the folder")
        files += class_files
        labels += [classes.index(d.name)] * len(class_files)
    tensors, kept = _read_images(files, resolution, channels, fit, skip_bad)
    if not tensors:
        raise TailganError(f"no readable images under {root}")
    return ImageSet(torch.stack(tensors), torch.tensor([labels[i] for i in kept], dtype=torch.long), list(classes))


def load_image_list(
    list_file: Path, base: Path, resolution: int, channels: int, fit: str = "crop", skip_bad: bool = False
) -> ImageSet:
    """Load images named in a ``relative/path label`` list (OLTR's Places-LT format)."""
    files, labels = [], []
    for n, line in enumerate(Path(list_file).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise TailganError(f"{list_file}:{n}: expected 'path label', got {line!r}")
        files.append(base / parts[0].lstrip("/"))
        labels.append(int(parts[1]))
    missing = [f for f in files if not f.is_file()]
    if missing and not skip_bad:
        raise TailganError(
            f"{missing[0]} (listed in {list_file}) does not exist; {len(missing)} listed files are missing"
        )
    num_classes = max(labels) + 1
    names = [""] * num_classes
    for f, y in zip(files, labels):
        if not names[y]:
            names[y] = f.parent.name
    names = [n or str(i) for i, n in enumerate(names)]
    tensors, kept = _read_images(files, resolution, channels, fit, skip_bad)
    return ImageSet(torch.stack(tensors), torch.tensor([labels[i] for i in kept], dtype=torch.long), names)


def _write_split(images: ImageSet, out: Path, split: str) -> None:
    for c in range(images.num_classes):
        (out / split / f"cls{c}").mkdir(parents=True, exist_ok=True)
    arr = images.images.numpy()
    for i, (img, y) in enumerate(zip(arr, images.labels.tolist())):
        pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        pil.save(out / split / f"cls{y}" / f"{split}{i}.png", compress_level=1)


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to write into a non-empty folder unless the user said --overwrite."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise TailganError(f"{out} exists and is not empty; choose another folder or pass --overwrite")


def replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished temp folder into place; an old ``out`` is removed only after the new one is complete."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{tmp.name}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def export_image_sets(
    splits: dict[str, ImageSet],
    out: str | Path,
    manifest: dict,
    overwrite: bool = False,
    protected: list[str | Path | None] = (),
) -> Path:
    """Write splits in ECOGAN's layout ``OUT/<split>/cls<c>/<split><i>.png`` (lossless PNG) + manifest.

    The folder is built beside ``out`` and renamed into place at the end, so a failure leaves nothing half
    written and an existing folder is replaced only with ``overwrite``; never one that overlaps a
    ``protected`` input (a data root, a run folder). Temp folders of killed exports are removed.
    """
    out = Path(out)
    check_not_inside(out, list(protected))
    check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=temp_name(out)))
    try:
        classes = None
        for split, images in splits.items():
            _write_split(images, tmp, split)
            classes = images.classes
        (tmp / "classes.json").write_text(json.dumps(classes, indent=1))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def class_names_file(root: Path, folder_names: list[str]) -> list[str]:
    """Display names from ``root/classes.json`` (written by export) when it matches ``cls0..clsK-1``."""
    path = Path(root) / "classes.json"
    if path.is_file() and folder_names == [f"cls{i}" for i in range(len(folder_names))]:
        try:
            names = json.loads(path.read_text())
        except json.JSONDecodeError:
            return folder_names
        if isinstance(names, list) and len(names) == len(folder_names):
            return [str(n) for n in names]
    return folder_names
