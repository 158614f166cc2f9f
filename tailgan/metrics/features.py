"""Feature extractors: uint8 images in, (features, logits) out.

Two extractors ship with tailgan:

* ``EvaluatorExtractor`` (``--feature evaluator``): the small classifier tailgan trains on the full,
  balanced training split of a dataset (``tailgan.metrics.evaluator``). Images are brought to the
  evaluator's channels (3 -> 1 by ITU-R 601 luma, 1 -> 3 by replication) and resolution (bilinear,
  antialiased) with ``tailgan.data.fit_images``, then scaled to [-1, 1]. Features: the penultimate
  layer; logits: its class scores.
* ``InceptionExtractor`` (``--feature inception``): the standard FID Inception-v3 (the TF 2015-12-05
  weights, through torch-fidelity's ``FeatureExtractorInceptionV3``, which torchmetrics also uses).
  Grayscale images are replicated to 3 channels; torch-fidelity resizes every image to 299 x 299 with
  its TF1-compatible bilinear resize (no antialiasing), as the original FID code does. Features: the
  2048-d pool3 activations; logits: the 1008 unbiased logits (what torch-fidelity's IS uses).

Any other ``FeatureExtractor`` subclass works too (tests use tiny ones). ``key`` identifies the
weights, so cached reference features are never reused for another network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from tailgan.data import fit_images, to_float
from tailgan.errors import TailganError

# torch-fidelity's file name for the FID Inception weights, and pytorch-fid's name for the same TF weights
INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")


class FeatureExtractor(nn.Module):
    """A network that maps uint8 images (N, C, H, W) to float32 (features (N, d), logits (N, K)).

    ``name`` is what results report ("evaluator", "inception"), ``key`` identifies the weights (it keys
    the reference-feature cache), ``feature_dim`` is d and ``info`` is a JSON-able description.
    """

    def __init__(self, name: str, key: str, feature_dim: int, info: dict | None = None) -> None:
        super().__init__()
        self.name, self.key, self.feature_dim = name, key, feature_dim
        self.info = {"name": name, "key": key, "feature_dim": feature_dim, **(info or {})}

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class EvaluatorExtractor(FeatureExtractor):
    """The tailgan evaluator classifier as a feature extractor (see the module docstring for the resize)."""

    def __init__(self, net: nn.Module, resolution: int, channels: int, key: str, info: dict | None = None) -> None:
        super().__init__(
            "evaluator", key, net.feature_dim, {"resolution": resolution, "channels": channels, **(info or {})}
        )
        self.net, self.resolution, self.channels = net.eval(), resolution, channels

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = fit_images(images, self.resolution, self.channels, "resize")
        return self.net.forward_features(to_float(x))


def inception_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The FID Inception weights file: ``path`` if given, else the torch hub cache; a clear error otherwise.

    No network is used: torch-fidelity would download the weights, which fails offline after a long wait.
    """
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    where = (
        f"download {INCEPTION_FILES[0]} (torch-fidelity's FID Inception-v3, TF 2015-12-05 weights; pytorch-fid's "
        f"{INCEPTION_FILES[1]} is the same file) on a machine with a network and either put it in {hub}/ "
        f"(= $TORCH_HOME/hub/checkpoints) or pass --inception-weights PATH; --feature evaluator needs no download"
    )
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise TailganError(f"Inception weights {p} do not exist: {where}")
        return p
    for name in INCEPTION_FILES:
        if (hub / name).is_file():
            return hub / name
    raise TailganError(f"the FID Inception weights are missing ({hub / INCEPTION_FILES[0]} not found): {where}")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class InceptionExtractor(FeatureExtractor):
    """FID Inception-v3 (torch-fidelity) from a local weights file: pool3 features and 1008 logits."""

    def __init__(self, weights: str | os.PathLike | None = None) -> None:
        path = inception_weights_path(weights)
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ModuleNotFoundError:
            raise TailganError("--feature inception needs torch-fidelity: pip install torch-fidelity") from None
        # check the file holds only tensors before torch-fidelity loads it (it uses weights_only=False)
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # never relay torch's advice to load it unsafely
            raise TailganError(
                f"--inception-weights {path} is not a state dict of tensors (it holds other objects or is damaged); "
                f"give the FID Inception-v3 weights file {INCEPTION_FILES[0]}"
            ) from None
        try:
            net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
            )
        except RuntimeError as e:  # load_state_dict: missing / unexpected keys or wrong shapes
            raise TailganError(f"{path} is not the FID Inception-v3 state dict ({INCEPTION_FILES[0]}): {e}") from None
        super().__init__(
            "inception",
            f"inception-{_file_digest(path)}",
            2048,
            {"weights": str(path), "resize": "299x299 bilinear (TF1-compatible, torch-fidelity)"},
        )
        self.net = net

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.shape[1] == 1:  # grayscale -> 3 identical channels
            images = images.expand(-1, 3, -1, -1)
        features, logits = self.net(images.contiguous())
        return features.float(), logits.float()


@torch.no_grad()
def extract(
    extractor: FeatureExtractor, images: Tensor, batch_size: int = 256, device: str | torch.device = "cpu"
) -> tuple[Tensor, Tensor]:
    """(features, logits) of uint8 images (N, C, H, W), computed in batches on ``device``, returned on the CPU."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"extract needs uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}; "
            "convert generator output with tailgan.data.to_uint8"
        )
    extractor = extractor.to(device).eval()
    feats, logits = [], []
    for i in range(0, len(images), batch_size):
        f, lg = extractor(images[i : i + batch_size].to(device))
        feats.append(f.float().cpu())
        logits.append(lg.float().cpu())
    if not feats:
        return torch.zeros(0, extractor.feature_dim), torch.zeros(0, 0)
    return torch.cat(feats), torch.cat(logits)
