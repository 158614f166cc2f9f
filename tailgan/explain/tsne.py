"""t-SNE of a classifier's penultimate features, coloured by class, real and generated points marked apart.

Every tailgan classifier names its last linear layer ``fc`` (:mod:`tailgan.nets.classifiers`), so the
penultimate features are the input of ``fc``, read with a forward pre-hook. Real and generated images
are embedded in one t-SNE run (scikit-learn), so their positions are comparable: generated points that
sit inside the clusters of their class are images the classifier treats like real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.manifold import TSNE
from torch import Tensor, nn

from tailgan.io import atomic_write
from tailgan.nets.classifier_io import eval_mode
from tailgan.outputs import EXPLAIN_TAG


@torch.no_grad()
def penultimate_features(
    model: nn.Module, images: Tensor, batch_size: int = 256, layer: nn.Module | None = None
) -> Tensor:
    """(N, D) inputs of the classifier's final layer (``model.fc`` unless ``layer`` is given), eval mode."""
    layer = layer if layer is not None else getattr(model, "fc", None)
    if not isinstance(layer, nn.Module):
        raise ValueError(f"{type(model).__name__} has no 'fc' layer; pass layer= (the classifier's last layer)")
    feats: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: feats.append(args[0].detach().flatten(1).cpu()))
    try:
        with eval_mode(model):
            for chunk in images.split(batch_size):
                model(chunk)
    finally:
        handle.remove()
    return torch.cat(feats) if feats else torch.zeros(0, 0)


def tsne_embedding(features: Tensor | np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of (N, D) features (PCA initialisation, seeded). The perplexity is capped at (N - 1) / 3
    so small sets work (t-SNE needs perplexity < N)."""
    x = features.numpy() if isinstance(features, Tensor) else np.asarray(features)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    perplexity = min(perplexity, max(1.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x.astype(np.float32))


def plot_tsne(
    model: nn.Module,
    real_images: Tensor,
    real_labels: Tensor,
    path: str | Path,
    fake_images: Tensor | None = None,
    fake_labels: Tensor | None = None,
    classes: Sequence[str] | None = None,
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    title: str | None = None,
) -> np.ndarray:
    """Embed the penultimate features of real (and generated) images with t-SNE and write a PNG: colour =
    class, circles = real, crosses = generated. Returns the (N_real + N_fake, 2) embedding, real first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if (fake_images is None) != (fake_labels is None):
        raise ValueError("give both fake_images and fake_labels, or neither")
    feats = [penultimate_features(model, real_images)]
    labels = [real_labels.long().cpu()]
    if fake_images is not None and len(fake_images):
        feats.append(penultimate_features(model, fake_images))
        labels.append(fake_labels.long().cpu())
    n_real = len(real_labels)
    emb = tsne_embedding(torch.cat(feats), seed=seed, perplexity=perplexity)
    y = torch.cat(labels).numpy()
    k = len(classes) if classes is not None else int(y.max()) + 1
    names = list(classes) if classes is not None else [str(c) for c in range(k)]
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    for c in range(k):
        real = np.flatnonzero(y[:n_real] == c)
        fake = n_real + np.flatnonzero(y[n_real:] == c)
        colour = cmap(c % cmap.N)
        if len(real):
            ax.scatter(emb[real, 0], emb[real, 1], s=12, marker="o", color=colour, label=f"{names[c]}")
        if len(fake):
            ax.scatter(emb[fake, 0], emb[fake, 1], s=22, marker="x", color=colour, label=f"{names[c]} (generated)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, loc="best", markerscale=1.2, ncol=2 if k > 5 else 1)
    ax.set_title(title or "t-SNE of penultimate features (o real, x generated)", fontsize=9)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120, metadata={"Software": EXPLAIN_TAG}))
    plt.close(fig)
    return emb
