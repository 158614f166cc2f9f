"""Classifiers on long-tailed data: rebalancing strategies, honest model selection, per-class metrics."""

from tailgan.classify.metrics import classification_metrics
from tailgan.classify.strategies import (
    CLASSICAL_STRATEGIES,
    STRATEGIES,
    Strategy,
    parse_strategy,
    resample_indices,
    smote_images,
    threshold_shift,
)
from tailgan.classify.train import ClassifyConfig, split_validation, train_and_score

__all__ = [
    "CLASSICAL_STRATEGIES",
    "STRATEGIES",
    "ClassifyConfig",
    "Strategy",
    "classification_metrics",
    "parse_strategy",
    "resample_indices",
    "smote_images",
    "split_validation",
    "threshold_shift",
    "train_and_score",
]
