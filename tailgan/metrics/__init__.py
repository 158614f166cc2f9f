"""Evaluation of generators: FID, KID, IS, precision/recall/density/coverage, intra-class FID, MS-SSIM and
label accuracy, overall and per class, on evaluator or Inception features (see ``evaluate``)."""

from typing import TYPE_CHECKING

from tailgan.lazy import lazy_names

if TYPE_CHECKING:  # imported on first use (tailgan.lazy): `tailgan SUB --help` needs no torch
    from tailgan.metrics.evaluate import (
        METRICS,
        REFS,
        ImageFeatures,
        build_extractor,
        compare_images,
        evaluate,
        fake_labels_for,
        format_table,
        parse_metrics,
        reference_features,
        score,
    )
    from tailgan.metrics.evaluator import (
        EvaluatorConfig,
        cache_root,
        evaluator_data_config,
        evaluator_folder,
        get_evaluator,
        load_evaluator,
        load_evaluator_from,
        train_evaluator,
    )
    from tailgan.metrics.features import (
        EvaluatorExtractor,
        FeatureExtractor,
        InceptionExtractor,
        extract,
        inception_weights_path,
    )
    from tailgan.metrics.stats import (
        feature_stats,
        fid,
        frechet_distance,
        inception_score,
        kid,
        label_accuracy,
        mean_msssim,
        ms_ssim,
        prdc,
    )

__all__ = [
    "METRICS",
    "REFS",
    "EvaluatorConfig",
    "EvaluatorExtractor",
    "FeatureExtractor",
    "ImageFeatures",
    "InceptionExtractor",
    "build_extractor",
    "cache_root",
    "compare_images",
    "evaluate",
    "evaluator_data_config",
    "evaluator_folder",
    "extract",
    "fake_labels_for",
    "feature_stats",
    "fid",
    "format_table",
    "frechet_distance",
    "get_evaluator",
    "inception_score",
    "inception_weights_path",
    "kid",
    "label_accuracy",
    "load_evaluator",
    "load_evaluator_from",
    "mean_msssim",
    "ms_ssim",
    "parse_metrics",
    "prdc",
    "reference_features",
    "score",
    "train_evaluator",
]

__getattr__, __dir__ = lazy_names(__name__)
