"""Long-tailed data: sources, recipes, manifests, samplers and image conversions."""

from typing import TYPE_CHECKING

from tailgan.lazy import lazy_names

if TYPE_CHECKING:  # imported on first use (tailgan.lazy): `tailgan SUB --help` needs no torch
    from tailgan.data.dataset import (
        PRESETS,
        DataConfig,
        LongTailedData,
        load_data,
        load_from_manifest,
        load_manifest,
        resolve_data_config,
        save_manifest,
    )
    from tailgan.data.folder import export_image_sets, load_image_folder
    from tailgan.data.images import ImageSet, fit_images, to_float, to_uint8
    from tailgan.data.longtail import RECIPES, imbalance_ratio, long_tail_counts, select_indices
    from tailgan.data.samplers import BatchStream, balanced_weights
    from tailgan.data.sources import SOURCE_NAMES

__all__ = [
    "PRESETS",
    "RECIPES",
    "SOURCE_NAMES",
    "BatchStream",
    "DataConfig",
    "ImageSet",
    "LongTailedData",
    "balanced_weights",
    "export_image_sets",
    "fit_images",
    "imbalance_ratio",
    "load_data",
    "load_from_manifest",
    "load_image_folder",
    "load_manifest",
    "long_tail_counts",
    "resolve_data_config",
    "save_manifest",
    "select_indices",
    "to_float",
    "to_uint8",
]

__getattr__, __dir__ = lazy_names(__name__)
