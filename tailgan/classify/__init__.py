"""Classifiers on long-tailed data: rebalancing strategies, honest model selection, per-class metrics."""

from tailgan.classify.metrics import classification_metrics
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
from tailgan.classify.synthetic import check_recognition, filter_synthetic, recognition_rates
from tailgan.classify.train import ClassifyConfig, train_and_score, train_reference
from tailgan.data.splits import split_validation

__all__ = [
    "CLASSICAL_STRATEGIES",
    "COMBINABLE",
    "STRATEGIES",
    "ClassifyConfig",
    "Strategy",
    "check_recognition",
    "classification_metrics",
    "filter_synthetic",
    "parse_strategy",
    "prior_adjust",
    "recognition_rates",
    "resample_indices",
    "smote_images",
    "split_validation",
    "synthetic_counts",
    "threshold_shift",
    "train_and_score",
    "train_reference",
]
