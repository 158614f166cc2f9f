"""Classifiers on long-tailed data: rebalancing strategies, honest model selection, per-class metrics.

A strategy is made of registered parts (``tailgan.classify.parts``), trained by one supervised loop
(``tailgan.engine.fit``) and configured by one typed config (``tailgan.classify.config``)."""

from typing import TYPE_CHECKING

from tailgan.lazy import lazy_names

if TYPE_CHECKING:  # imported on first use (tailgan.lazy): `tailgan classify --help` needs no torch
    from tailgan.classify.config import ClassifyConfig
    from tailgan.classify.parts import LOSSES, RULES, SAMPLERS
    from tailgan.classify.runconfig import ClassifyRunConfig, make_classify_config, reproduce_command
    from tailgan.classify.strategies import (
        CLASSICAL_STRATEGIES,
        COMBINABLE,
        STRATEGIES,
        Strategy,
        parse_strategy,
        prior_adjust,
        resample_indices,
        smote_images,
        synthetic_counts,
        threshold_shift,
    )
    from tailgan.classify.synthetic import SOURCES
    from tailgan.classify.train import TRAINERS, train_and_score, train_reference
    from tailgan.data.splits import split_validation
    from tailgan.scores import classification_metrics
    from tailgan.synthesis.images import check_recognition, filter_synthetic, recognition_rates

__all__ = [
    "CLASSICAL_STRATEGIES",
    "COMBINABLE",
    "LOSSES",
    "RULES",
    "SAMPLERS",
    "SOURCES",
    "STRATEGIES",
    "TRAINERS",
    "ClassifyConfig",
    "ClassifyRunConfig",
    "Strategy",
    "check_recognition",
    "classification_metrics",
    "filter_synthetic",
    "make_classify_config",
    "parse_strategy",
    "prior_adjust",
    "recognition_rates",
    "reproduce_command",
    "resample_indices",
    "smote_images",
    "split_validation",
    "synthetic_counts",
    "threshold_shift",
    "train_and_score",
    "train_reference",
]

__getattr__, __dir__ = lazy_names(__name__)
