"""The evaluator: a small CNN classifier whose penultimate layer is tailgan's offline feature space.

Inception-v3 features need ImageNet weights that an offline machine may not have, and they describe
28-px grayscale garments poorly. The evaluator is trained by tailgan on the full, balanced training
split of the dataset being modelled (``tailgan evaluator train``); its penultimate activations serve
FID / KID / precision-recall, its softmax serves the Inception Score and label accuracy.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class EvaluatorNet(nn.Module):
    """VGG-style classifier: conv blocks [w, w] pool [2w, 2w] pool [4w], 4x4 pool, feature layer, classifier.

    Takes float images in [-1, 1] of shape (N, C, H, W) with any H, W >= 4 (the last pooling is
    adaptive, so 8-px digits and 64-px images both work). ``forward_features`` returns the
    ``feature_dim`` penultimate activations (after BatchNorm + ReLU) and the logits.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 1, width: int = 16, feature_dim: int = 128, dropout: float = 0.3
    ) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv_block(in_channels, w),
            _conv_block(w, w),
            nn.MaxPool2d(2),
            _conv_block(w, 2 * w),
            _conv_block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            _conv_block(2 * w, 4 * w),
            # a 4x4 grid keeps where things are (a global average pool loses ~1.5 points on Fashion-MNIST)
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.embed = nn.Sequential(
            nn.Linear(4 * w * 16, feature_dim, bias=False), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True)
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)
        self.num_classes, self.in_channels, self.feature_dim = num_classes, in_channels, feature_dim

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features (N, feature_dim), logits (N, num_classes))."""
        h = self.embed(self.body(x))
        return h, self.fc(self.dropout(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]
