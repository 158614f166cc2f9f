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
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from tailgan.data.images import ImageSet, fit_images
from tailgan.errors import TailganError
from tailgan.outputs import claim_output, make_temp_dir, remove_stale_temp, write_marker

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


class ImageFolderWriter:
    """Writes an image folder in ECOGAN's layout ``OUT/<split>/cls<c>/<split><i>.png`` (lossless PNG) batch by
    batch, so memory stays flat in the number of images.

    The folder is built beside ``out`` and renamed into place by ``close``, so a failure (a full disk, a kill)
    leaves nothing half written, and an existing ``out`` is replaced only by an output of the same ``kind``
    with ``overwrite`` (:func:`tailgan.outputs.claim_output`); never one that overlaps a ``protected`` input.
    The folder stays locked until ``close`` or ``abort``.
    """

    def __init__(self, out: str | Path, kind: str, overwrite: bool = False,
                 protected: list[str | Path | None] = (), num_classes: int | None = None) -> None:  # fmt: skip
        out = Path(out)
        self.out = out.resolve() if out.is_symlink() and out.exists() else out
        self.claim = claim_output(self.out, kind, overwrite, list(protected), in_place=False)
        self.kind, self.counts, self.made = kind, {}, {}
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temp(self.out)
            self.tmp = make_temp_dir(self.out)
        except OSError as e:
            self.claim.release()
            raise self._error(e) from None
        self.num_classes = num_classes

    def _error(self, e: OSError) -> TailganError:
        return TailganError(f"could not write {self.out}: {e.strerror or e} (is the disk full?); nothing was written "
                            f"to {self.out}")  # fmt: skip

    def write(self, split: str, images: torch.Tensor, labels: torch.Tensor, prefix: str | None = None) -> list[str]:
        """Append uint8 (N, C, H, W) ``images`` of ``labels`` to ``split``; returns the files' relative paths."""
        prefix = prefix or split
        paths = []
        try:
            classes = set(range(self.num_classes or 0)) | set(labels.tolist())
            for c in classes - self.made.setdefault(split, set()):  # each class folder once, not per batch
                (self.tmp / split / f"cls{c}").mkdir(parents=True, exist_ok=True)
            self.made[split] |= classes
            for img, y in zip(images.numpy(), labels.tolist()):
                i = self.counts[(split, prefix)] = self.counts.get((split, prefix), -1) + 1
                rel = f"{split}/cls{y}/{prefix}{i}.png"
                pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
                pil.save(self.tmp / rel, compress_level=1)
                paths.append(rel)
        except OSError as e:
            self.abort()
            raise self._error(e) from None
        return paths

    def close(self, classes: list[str], manifest: dict) -> Path:
        """Write ``classes.json``, ``manifest.json`` and the marker, and move the folder into place."""
        try:
            (self.tmp / "classes.json").write_text(json.dumps(classes, indent=1))
            (self.tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
            write_marker(self.tmp, self.kind, complete=True)
            replace_dir(self.tmp, self.out)
        except OSError as e:
            self.abort()
            raise self._error(e) from None
        except BaseException:
            self.abort()
            raise
        self.claim.release()
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.claim.release()


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
    kind: str = "export",
) -> Path:
    """Write splits in ECOGAN's layout ``OUT/<split>/cls<c>/<split><i>.png`` (lossless PNG) + manifest, through
    :class:`ImageFolderWriter` (atomic, locked, replaces only an output of the same ``kind``)."""
    classes = next(iter(splits.values())).classes if splits else []
    writer = ImageFolderWriter(out, kind, overwrite, protected, num_classes=len(classes))
    try:
        for split, images in splits.items():
            writer.write(split, images.images, images.labels)
    except BaseException:
        writer.abort()
        raise
    return writer.close(list(classes), manifest)


AUGMENT_TOOL = "tailgan augment"  # the manifest's "tool" of a folder of real + synthetic images


def read_augment_manifest(folder: str | Path) -> dict | None:
    """The manifest of a folder written by ``tailgan augment`` (the real training images and the synthetic ones,
    each file flagged ``synthetic``), or None for any other folder."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TailganError(f"{path} is not valid JSON: {e}") from None
    return manifest if isinstance(manifest, dict) and manifest.get("tool") == AUGMENT_TOOL else None


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
