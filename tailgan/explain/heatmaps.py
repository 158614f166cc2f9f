"""Where a classifier looks: Grad-CAM and RISE heat maps, and a figure comparing several classifiers.

* Grad-CAM (Selvaraju et al. 2017) through the maintained ``grad-cam`` package (``pytorch_grad_cam``):
  the target layer's activations weighted by the spatially averaged gradients of the class score,
  ReLU, upsampled to the input and scaled to [0, 1] per image.
* RISE (Petsiuk et al. 2018): neither ``captum`` nor ``grad-cam`` has it, so it is written here on top
  of torch. N random binary s x s grids (each cell kept with probability p) are upsampled bilinearly
  to (s + 1) cells and randomly shifted by up to one cell, giving smooth masks M_i of the input's size;
  the saliency of class c is S = 1 / (N p) sum_i P(c | x * M_i) M_i, the expected class probability
  when a pixel is visible. Hidden pixels take the value ``baseline`` (-1, black in tailgan's [-1, 1]
  images, which is RISE's multiplication by 0 on [0, 1] pixels). The masks come from a seeded
  ``torch.Generator``, so a map is reproducible.

Both return (N, H, W) maps with the input's spatial shape; the classifier is put in eval mode while
they run and given back its training flag afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

from tailgan.io import atomic_write
from tailgan.nets.classifier_io import eval_mode
from tailgan.nets.classifiers import CifarResNet, LeNet5
from tailgan.outputs import EXPLAIN_TAG

METHODS = {"gradcam": "Grad-CAM", "rise": "RISE"}


def default_target_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads: the last convolutional stage's output.

    LeNet-5: the ReLU after its second convolution (hooking the convolution itself would record a tensor
    that the in-place ReLU then overwrites); CIFAR ResNets: the last residual block; torchvision ResNets:
    ``layer4[-1]``; any other network: its last ``nn.Conv2d``.
    """
    if isinstance(model, LeNet5):
        return model.features[-2]
    if isinstance(model, CifarResNet):
        return model.layers[-1]
    if isinstance(model, torchvision.models.ResNet):
        return model.layer4[-1]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer for Grad-CAM; pass target_layer=")
    return convs[-1]


def _targets(model: nn.Module, images: Tensor, targets: Tensor | Sequence[int] | None) -> Tensor:
    """The class to explain for each image: ``targets`` if given, else the classifier's prediction."""
    if targets is None:
        with torch.no_grad():
            return model(images).argmax(1)
    targets = torch.as_tensor(targets, dtype=torch.long)
    if targets.shape != (images.shape[0],):
        raise ValueError(f"targets must be one class per image ({images.shape[0]},), got {tuple(targets.shape)}")
    return targets


def gradcam_maps(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | Sequence[int] | None = None,
    target_layer: nn.Module | None = None,
) -> Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] of ``targets`` (default: the predicted classes) for float images
    (N, C, H, W) in [-1, 1]."""
    layer = target_layer if target_layer is not None else default_target_layer(model)
    with eval_mode(model), torch.enable_grad():
        classes = _targets(model, images, targets)
        with GradCAM(model=model, target_layers=[layer]) as cam:
            maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))


def rise_masks(
    n: int, size: tuple[int, int], grid: int = 7, p: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    """RISE's ``n`` smooth random masks (n, H, W) in [0, 1] (see the module docstring)."""
    if not 0 < p <= 1:
        raise ValueError(f"RISE keep probability p must be in (0, 1], got {p}")
    h, w = size
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    cells = (torch.rand(n, 1, grid, grid, generator=generator) < p).float()
    up = F.interpolate(cells, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear", align_corners=False)
    dy = torch.randint(cell_h, (n,), generator=generator)
    dx = torch.randint(cell_w, (n,), generator=generator)
    return torch.stack([up[i, 0, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


@torch.no_grad()
def rise_maps(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | Sequence[int] | None = None,
    *,
    n_masks: int = 2000,
    grid: int = 7,
    p: float = 0.5,
    baseline: float = -1.0,
    seed: int = 0,
    batch_size: int = 500,
) -> Tensor:
    """RISE saliency (N, H, W) of ``targets`` (default: the predicted classes): per pixel, the classifier's
    expected probability of the class when that pixel is visible. One seeded mask set serves every image."""
    with eval_mode(model):
        classes = _targets(model, images, targets)
        masks = rise_masks(n_masks, tuple(images.shape[-2:]), grid, p, torch.Generator().manual_seed(seed))
        masks = masks.to(images)
        out = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.float32, device=images.device)
        for i, (x, c) in enumerate(zip(images, classes)):
            for m in masks.split(batch_size):
                masked = baseline + m[:, None] * (x[None] - baseline)
                prob = F.softmax(model(masked).float(), dim=1)[:, c]
                out[i] += torch.einsum("n,nhw->hw", prob, m.float())
        return out / (n_masks * p)


def heatmaps(
    classifiers: Mapping[str, nn.Module],
    images: Tensor,
    methods: Sequence[str] = ("gradcam", "rise"),
    targets: Tensor | Sequence[int] | None = None,
    *,
    n_masks: int = 2000,
    grid: int = 7,
    seed: int = 0,
) -> dict[str, Tensor]:
    """``{"<classifier> <method>": (N, H, W) map}`` for every classifier and method, in that order
    (``n_masks`` and ``grid`` are RISE's settings)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown heat-map method {unknown[0]!r}; use {', '.join(METHODS)}")
    maps = {}
    for name, model in classifiers.items():
        for method in methods:
            if method == "gradcam":
                maps[f"{name} {METHODS[method]}"] = gradcam_maps(model, images, targets)
            else:
                maps[f"{name} {METHODS[method]}"] = rise_maps(
                    model, images, targets, n_masks=n_masks, grid=grid, seed=seed
                )
    return maps


def _display(image: Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) in [0, 1] for imshow."""
    x = ((image.detach().float().cpu() + 1) / 2).clamp(0, 1)
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def plot_heatmaps(
    images: Tensor,
    maps: Mapping[str, Tensor],
    path: str | Path,
    row_titles: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """One row per image: the image, then each map over a grey copy of it (jet, alpha 0.5), one column per
    entry of ``maps``; written as a PNG atomically. Each map is min-max scaled for display only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, cols = images.shape[0], 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.7 * cols, 1.7 * n + (0.4 if title else 0)), squeeze=False)
    for i in range(n):
        shown = _display(images[i])
        grey = shown if shown.ndim == 2 else shown.mean(axis=2)
        axes[i, 0].imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=7)
        for j, (name, m) in enumerate(maps.items(), start=1):
            h = m[i].detach().float().cpu().numpy()
            span = h.max() - h.min()
            h = (h - h.min()) / span if span > 0 else np.zeros_like(h)
            axes[i, j].imshow(grey, cmap="gray", vmin=0, vmax=1)
            axes[i, j].imshow(h, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if i == 0:
                axes[i, j].set_title(name, fontsize=7)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, metadata={"Software": EXPLAIN_TAG}))
    plt.close(fig)
    return path


def explain_heatmaps(
    classifiers: Mapping[str, nn.Module],
    images: Tensor,
    path: str | Path,
    methods: Sequence[str] = ("gradcam", "rise"),
    targets: Tensor | Sequence[int] | None = None,
    row_titles: Sequence[str] | None = None,
    *,
    n_masks: int = 2000,
    grid: int = 7,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Heat maps of several classifiers side by side: computes :func:`heatmaps` and writes them with
    :func:`plot_heatmaps` to ``path``. Pass the true labels as ``targets`` to compare what each classifier
    looks at for the same class. Returns the maps."""
    maps = heatmaps(classifiers, images, methods, targets, n_masks=n_masks, grid=grid, seed=seed)
    what = "true class" if targets is not None else "predicted class"
    plot_heatmaps(images, maps, path, row_titles, title=f"heat maps of the {what}")
    return maps
