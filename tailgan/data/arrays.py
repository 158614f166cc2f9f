"""Image arrays as users hold them (numpy, any layout, any value range) and tailgan's image sets, both ways.

The imbalanced-learn sampler (``tailgan.samplers``) and the classifier's SMOTE share these: reading how the rows
of X are images (:func:`read_layout`), flat rows (:func:`flatten_images`), pixel levels in and out of a value range
(:func:`to_pixels`, :func:`from_pixels`), undoing :func:`tailgan.data.images.fit_images` on generated images
(:func:`crop_or_resize`), and a :class:`~tailgan.data.dataset.LongTailedData` made from arrays in memory
(:func:`in_memory_data`), which a run trains on without writing the images anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from tailgan.data.dataset import DataConfig, LongTailedData, build_manifest
from tailgan.data.images import ImageSet, fit_images
from tailgan.errors import TailganError

ARRAYS_SOURCE = "arrays"  # DataConfig.source of data made in memory (it cannot be loaded again from disk)


def flatten_images(X) -> np.ndarray:
    """Images (n, ...) as flat rows (n, H*W*C): the step after a :class:`GenerativeOverSampler` in a pipeline
    whose estimator needs 2-D input, ``FunctionTransformer(flatten_images)`` (it runs in ``fit`` and ``predict``,
    a sampler only in ``fit``). Flat X passes through unchanged."""
    X = np.asarray(X)
    return X.reshape(len(X), -1)


@dataclass(frozen=True)
class ImageLayout:
    """How the rows of X are images: ``kind`` is flat (n, F), hw (n, H, W), hwc (n, H, W, C) or chw (n, C, H, W)."""

    kind: str
    height: int
    width: int
    channels: int
    flat_order: str = "hwc"  # flat rows: the order of the pixels (channels last or first)

    def to_nchw(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        if self.kind == "hw":
            return X[:, None]
        if self.kind == "hwc":
            return X.transpose(0, 3, 1, 2)
        if self.kind == "chw":
            return X
        h, w, c = self.height, self.width, self.channels
        if self.flat_order == "hwc":
            return X.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return X.reshape(n, c, h, w)

    def from_nchw(self, images: np.ndarray) -> np.ndarray:
        n = images.shape[0]
        if self.kind == "hw":
            return images[:, 0]
        if self.kind == "hwc":
            return images.transpose(0, 2, 3, 1)
        if self.kind == "chw":
            return images
        if self.flat_order == "hwc":
            return images.transpose(0, 2, 3, 1).reshape(n, -1)
        return images.reshape(n, -1)


def _channels_last(shape: tuple[int, ...], layout: str, what: str) -> bool:
    """Whether a 3-entry image shape is (H, W, C) rather than (C, H, W)."""
    if layout != "auto":
        return layout == "channels_last"
    last, first = shape[-1] in (1, 3), shape[0] in (1, 3)
    if last != first:
        return last
    if not last and shape[-1] != shape[0]:  # neither end is 1 or 3: channels are the shorter end
        return shape[-1] < shape[0]
    raise TailganError(
        f"cannot tell whether {what} is channels-last (H, W, C) or channels-first (C, H, W); "
        "pass layout='channels_last' or layout='channels_first'"
    )


def read_layout(shape: tuple[int, ...], image_shape: tuple | list | None = None, layout: str = "auto") -> ImageLayout:
    """The image layout of an array of ``shape`` (n first); a clear error for shapes that are not images.

    2-D arrays are flattened images: ``image_shape`` is (H, W) or (H, W, C) / (C, H, W) as ``layout`` says;
    without it, F features are read as a square grayscale image when F is a perfect square.
    """
    ndim = len(shape)
    if ndim == 2:
        n_features = shape[1]
        if image_shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features:
                raise TailganError(
                    f"X has shape {tuple(shape)}: {n_features} features are not a square grayscale image; "
                    "give image_shape=(H, W) or (H, W, C) to say how each row is an image"
                )
            return ImageLayout("flat", side, side, 1)
        dims = tuple(int(d) for d in image_shape)
        if len(dims) not in (2, 3) or min(dims) < 1:
            raise TailganError(f"image_shape={tuple(image_shape)!r} must be (H, W), (H, W, C) or (C, H, W)")
        if math.prod(dims) != n_features:
            raise TailganError(
                f"image_shape={dims} holds {math.prod(dims)} values but X has {n_features} features per row"
            )
        if len(dims) == 2:
            out = ImageLayout("flat", dims[0], dims[1], 1)
        elif _channels_last(dims, layout, f"image_shape={dims}"):
            out = ImageLayout("flat", dims[0], dims[1], dims[2], "hwc")
        else:
            out = ImageLayout("flat", dims[1], dims[2], dims[0], "chw")
    elif ndim == 3:
        out = ImageLayout("hw", shape[1], shape[2], 1)
    elif ndim == 4:
        if _channels_last(tuple(shape[1:]), layout, f"X of shape {tuple(shape)}"):
            out = ImageLayout("hwc", shape[1], shape[2], shape[3])
        else:
            out = ImageLayout("chw", shape[2], shape[3], shape[1])
    else:
        raise TailganError(
            f"X has shape {tuple(shape)}; give images as (n, H, W), (n, H, W, C), (n, C, H, W) or flattened "
            "(n, H*W*C) with image_shape"
        )
    if image_shape is not None and ndim > 2:
        raise TailganError(f"image_shape is only for flattened (2-D) X; X has shape {tuple(shape)}")
    if out.channels not in (1, 3):
        raise TailganError(
            f"X has {out.channels} channels (shape {tuple(shape)}); tailgan trains on grayscale (1) or RGB (3) "
            "images: convert it (e.g. drop the alpha channel)"
        )
    return out


def crop_or_resize(images: torch.Tensor, height: int, width: int, fit: str) -> torch.Tensor:
    """Undo ``tailgan.data.fit_images``: generated R x R images back to ``height`` x ``width``.

    A ``pad`` fit of an image no larger than the canvas is undone exactly by cutting out the rectangle the
    padding left (top-left offset (R - H) // 2, (R - W) // 2, the same as the padding's); every other fit
    (``resize``, ``crop``, or a pad that had to crop) is undone approximately by a bilinear antialiased resize.
    """
    r_h, r_w = images.shape[-2:]
    if (r_h, r_w) == (height, width):
        return images
    if fit == "pad" and height <= r_h and width <= r_w:
        top, left = (r_h - height) // 2, (r_w - width) // 2
        return images[..., top : top + height, left : left + width]
    return TF.resize(images, [height, width], antialias=True)


def pick_resolution(height: int, width: int, resolution: int | None) -> tuple[int, str]:
    """(network resolution, fit policy): the smallest of 32 / 64 px that holds the image is padded to."""
    side = max(height, width)
    if resolution is None:
        resolution = 32 if side <= 32 else 64
    return resolution, ("pad" if side <= resolution else "resize")


def to_pixels(images: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(n, C, H, W) values in [lo, hi] -> uint8 0..255 (clipped, rounded to the nearest level)."""
    scaled = (np.asarray(images, dtype=np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def from_pixels(images: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
    """Generator output in [-1, 1] -> values in [lo, hi] of ``dtype`` (integers rounded)."""
    values = lo + (images.astype(np.float64) + 1.0) * ((hi - lo) / 2.0)
    if np.issubdtype(dtype, np.integer):
        return np.clip(np.rint(values), lo, hi).astype(dtype)
    return values.astype(dtype)


# what a config of data made in memory may set: how the images are fitted (and where a root was recorded)
IN_MEMORY_FIELDS = ("source", "root", "preset", "resolution", "channels", "fit")


def in_memory_data(images: ImageSet, config: DataConfig | None = None) -> LongTailedData:
    """``images`` (uint8, the training split) brought to ``config``'s resolution / channels by its ``fit`` as every
    source is, with an empty test split and a manifest (source ``arrays``) that records its counts and pixels.

    The images are used as given: a ``config`` that asks for a long-tail cut or a selection (``data.recipe=...``)
    is refused rather than ignored."""
    config = DataConfig() if config is None else config
    asked = [f"data.{k}={v!r}" for k, v in vars(config).items()
             if k not in IN_MEMORY_FIELDS and v != getattr(DataConfig, k, v)]  # fmt: skip
    if asked:
        raise TailganError(
            f"{', '.join(asked)} does not apply to images given in memory, which are used as they are; cut the "
            "arrays before passing them, and set only data.resolution, data.channels and data.fit"
        )
    config = config.replace(source=ARRAYS_SOURCE)
    fitted = fit_images(images.images, config.resolution, config.channels, config.fit)
    train = ImageSet(fitted, images.labels, list(images.classes))
    test = train.subset(torch.zeros(0, dtype=torch.long))
    manifest = build_manifest(config, train, test, np.arange(len(train)))
    return LongTailedData(train=train, test=test, valid=None, config=config, manifest=manifest)
