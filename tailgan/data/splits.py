"""The stratified validation split carved from long-tailed training data.

Classifier training (``tailgan classify``) selects its checkpoint on this split, so a generator whose
images are mixed into the classifier's training data must not have seen it either. Both sides call
:func:`carve_validation` with the same fraction and seed and get the identical split.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from tailgan.data.dataset import LongTailedData
from tailgan.data.images import ImageSet
from tailgan.errors import TailganError


def split_validation(
    labels: torch.Tensor | np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, valid) index split: ``round(fraction * n_c)`` images of class c go to validation,
    at least one when the class has two or more images and never all of them.

    scikit-learn's ``train_test_split(stratify=...)`` can give a rare class no validation image at all,
    which would leave ACSA on validation blind to exactly the classes this is about. Both index arrays
    are sorted; the split depends only on the labels, ``fraction`` and ``seed``.
    """
    if not 0.0 < fraction < 1.0:
        raise TailganError(f"valid_fraction={fraction} must be in (0, 1), e.g. 0.1")
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    rng = np.random.default_rng(seed)
    train_idx, valid_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = 0 if len(idx) < 2 else min(max(1, round(fraction * len(idx))), len(idx) - 1)
        valid_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    if not train_idx:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(valid_idx))


def split_fingerprint(valid_idx: np.ndarray) -> str:
    """A short hash of the validation indices, to check that two programs carved the same split."""
    return hashlib.sha256(np.asarray(valid_idx, dtype=np.int64).tobytes()).hexdigest()[:16]


def carve_validation(data: LongTailedData, fraction: float, seed: int) -> tuple[ImageSet, ImageSet, dict]:
    """(train part, validation part, record) of ``data``.

    A dataset that ships its own validation split keeps it (the whole training split is the train part);
    otherwise :func:`split_validation` carves one from ``data.train``. The record (JSON-ready) names the
    fraction, the seed and the fingerprint of the validation indices.
    """
    if data.valid is not None and len(data.valid):
        return data.train, data.valid, {"source": "dataset", "fraction": None, "seed": None, "fingerprint": None}
    train_idx, valid_idx = split_validation(data.train.labels, fraction, seed)
    record = {"source": "carved", "fraction": fraction, "seed": seed, "fingerprint": split_fingerprint(valid_idx)}
    return (
        data.train.subset(torch.from_numpy(train_idx)),
        data.train.subset(torch.from_numpy(valid_idx)),
        record,
    )
