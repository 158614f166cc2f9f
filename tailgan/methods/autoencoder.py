"""Autoencoder / VAE pre-training shared by BAGAN, BAGAN-GP and IDA-GAN, and BAGAN's per-class Gaussians.

Pre-training is the first phase of these methods (``Method.pretrain``, called once before GAN training on a
fresh run). :func:`run_pretraining` trains the autoencoder modules a method hands it, logs one record per
epoch through the run's log (``{"phase": "pretrain", "step": epoch, "pretrain/loss": ...}``), and saves
them atomically to ``RUN/checkpoints/pretrain.pt``. When that file (or ``options.pretrain_checkpoint``)
already holds a pre-training with the same settings, it is loaded instead of trained again; a file made with
other settings is an error rather than silently reused. ``options.pretrain=false`` skips the phase (the
"Pre-trained FALSE" rows of ECOGAN's table 3).

Pre-training draws its batches and noise from its own generators seeded by ``seed``, so the GAN phase that
follows sees the same random numbers whether the autoencoder was trained now or loaded. Under DDP every
rank pre-trains on the full training set (identical work), then rank 0's weights are broadcast.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from tailgan.data import to_float
from tailgan.errors import TailganError
from tailgan.runs import load_checkpoint, save_checkpoint

PRETRAIN_FILE = "pretrain.pt"

# (images in [-1, 1], labels, noise generator or None for a deterministic pass) -> {"loss": ..., parts}
LossFn = Callable[[Tensor, Tensor, "torch.Generator | None"], dict[str, Tensor]]


@dataclass
class PretrainOptions:
    """The ``options`` every autoencoder-initialised method shares (its own Options add to these)."""

    pretrain: bool = True  # false: no pre-training, the GAN starts from random weights
    pretrain_epochs: int = 30
    pretrain_batch_size: int | None = None  # None: optim.batch_size
    pretrain_lr: float | None = None  # None: optim.g_lr
    pretrain_betas: tuple[float, float] | None = None  # None: optim.betas
    pretrain_checkpoint: str | None = None  # a pretrain.pt to reuse (e.g. another run's, same settings)
    ae_loss: Literal["mse", "l1"] = "mse"  # reconstruction loss, a mean over pixels


def check_pretrain_options(o: PretrainOptions) -> None:
    """ValueError (naming the option) for values pre-training cannot use."""
    if o.pretrain_epochs < 1:
        raise TailganError(
            f"options.pretrain_epochs must be >= 1, got {o.pretrain_epochs} (or set options.pretrain=false)"
        )
    if o.pretrain_batch_size is not None and o.pretrain_batch_size < 1:
        raise TailganError(f"options.pretrain_batch_size must be >= 1, got {o.pretrain_batch_size}")
    if o.pretrain_lr is not None and not o.pretrain_lr > 0:
        raise TailganError(f"options.pretrain_lr must be > 0, got {o.pretrain_lr}")


def reconstruction_loss(x_hat: Tensor, x: Tensor, kind: str) -> Tensor:
    """Mean squared ("mse") or mean absolute ("l1") error over all pixels of the batch."""
    if kind == "mse":
        return F.mse_loss(x_hat.float(), x)
    if kind == "l1":
        return F.l1_loss(x_hat.float(), x)
    raise ValueError(f"ae_loss must be 'mse' or 'l1', got {kind!r}")


def vae_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)), summed over latent dimensions, averaged over the batch."""
    mean, logvar = mean.float(), logvar.float()
    return (-0.5 * (1.0 + logvar - mean.pow(2) - logvar.exp()).sum(dim=1)).mean()


# -- per-class latent Gaussians (BAGAN, IDA-GAN) --------------------------------------------------------------
def fit_class_gaussians(codes: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class mean (K, d) and unbiased covariance (K, d, d) of ``codes`` (N, d), in float64, and counts (K,).

    The covariance is numpy's ``np.cov(codes_c, rowvar=False)`` (divides by n_c - 1); a class with a single
    image gets a zero covariance. A class without images is an error: its Gaussian cannot be fitted.
    """
    if codes.dim() != 2 or labels.shape != (codes.shape[0],):
        raise ValueError(f"codes must be (N, d) and labels (N,), got {tuple(codes.shape)} and {tuple(labels.shape)}")
    codes, labels = codes.double(), labels.to(codes.device)
    d = codes.shape[1]
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes].cpu()
    empty = [c for c in range(num_classes) if counts[c] == 0]
    if empty:
        raise TailganError(
            f"classes {empty} have no training images, so their latent Gaussian cannot be fitted; "
            "every class needs at least one image"
        )
    mean = torch.zeros(num_classes, d, dtype=torch.float64, device=codes.device)
    cov = torch.zeros(num_classes, d, d, dtype=torch.float64, device=codes.device)
    for c in range(num_classes):
        x = codes[labels == c]
        mean[c] = x.mean(dim=0)
        if len(x) > 1:
            cov[c] = torch.cov(x.T, correction=1)
    return mean, cov, counts


def gaussian_factors(cov: Tensor, counts: Tensor, jitter: float, names: list[str] | None = None) -> Tensor:
    """Factors A (K, d, d) with A A^T = Sigma_c, for sampling mu_c + A_c z with z ~ N(0, I).

    A class with no more images than latent dimensions (n_c <= d) has a singular covariance: its samples
    would stay in an (n_c - 1)-dimensional plane. Such classes get ``jitter`` times the mean variance of the
    other classes added to the diagonal, with a warning. The factor comes from an eigendecomposition
    (eigenvalues clamped at 0), which, like numpy's SVD-based sampler in the original, accepts any
    positive semi-definite matrix.
    """
    k, d, _ = cov.shape
    cov = cov.double().clone()
    full = counts > d
    ref = cov[full].diagonal(dim1=-2, dim2=-1).mean() if full.any() else cov.diagonal(dim1=-2, dim2=-1).mean()
    ref = float(ref) if float(ref) > 0 else 1.0
    small = [c for c in range(k) if counts[c] <= d]
    if small:
        label = [names[c] if names else str(c) for c in small]
        warnings.warn(
            f"classes {', '.join(label)} have no more images ({[int(counts[c]) for c in small]}) than latent "
            f"dimensions ({d}), so their covariance is singular; adding {jitter:g} x the mean variance "
            f"({ref:.3g}) to its diagonal",
            stacklevel=2,
        )
        eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
        for c in small:
            cov[c] += jitter * ref * eye
    vals, vecs = torch.linalg.eigh(cov)
    return vecs * vals.clamp_min(0).sqrt()[:, None, :]


def _as_float(images: Tensor, device: torch.device) -> Tensor:
    # uint8 images are converted a batch at a time, so no float copy of a whole set is kept
    return to_float(images).to(device) if images.dtype == torch.uint8 else images.to(device)


@torch.no_grad()
def encode_all(
    encode: Callable[[Tensor], Tensor], images: Tensor, device: torch.device, batch_size: int = 256
) -> Tensor:
    """``encode`` applied to images (uint8, or float in [-1, 1]) in chunks on ``device``, concatenated."""
    return torch.cat(
        [encode(_as_float(images[i : i + batch_size], device)).float() for i in range(0, len(images), batch_size)]
    )


# -- the pre-training phase --------------------------------------------------------------------------------------
def pretrain_key(method: Any, data: Any, extra: dict | None = None) -> dict:
    """What a saved pre-training must match to be reused: data, networks, seed and every AE setting."""
    cfg, o = method.cfg, method.options
    return {
        "method": cfg.method,
        "data": data.manifest["fingerprint"],
        "image": [method.img_channels, method.img_size],
        "model": {"arch": cfg.model.arch, "z_dim": cfg.model.z_dim, "conv_dim": cfg.model.conv_dim},
        "seed": cfg.seed,
        "amp": cfg.amp,
        "epochs": o.pretrain_epochs,
        "batch_size": pretrain_batch_size(method),
        "lr": o.pretrain_lr or cfg.optim.g_lr,
        "betas": list(o.pretrain_betas or cfg.optim.betas),
        "eps": cfg.optim.eps,
        "ae_loss": o.ae_loss,
        **(extra or {}),
    }


def pretrain_batch_size(method: Any) -> int:
    return method.options.pretrain_batch_size or method.cfg.optim.batch_size


def _check_key(stored: dict | None, wanted: dict, path: Path) -> None:
    if stored == wanted:
        return
    stored = stored or {}
    diff = [f"{k}: {stored.get(k)!r} there, {wanted[k]!r} here" for k in wanted if stored.get(k) != wanted[k]]
    raise TailganError(
        f"{path} holds a pre-training with other settings ({'; '.join(diff)}); delete it, or point "
        "options.pretrain_checkpoint at a matching one, or set options.pretrain=false"
    )


def run_pretraining(
    method: Any,
    data: Any,
    log: Callable[[dict], None],
    modules: dict[str, nn.Module],
    params: list[nn.Parameter],
    loss_fn: LossFn,
    key_extra: dict | None = None,
) -> bool:
    """Train (or load) the autoencoder ``modules`` of ``method``; True when a saved pre-training was reused.

    ``params`` are the parameters the optimiser updates (usually every parameter of ``modules``);
    ``loss_fn(x, y, generator)`` returns ``{"loss": ..., "recon": ..., ...}`` on a batch. The pre-training
    is written to ``method.run_dir / "checkpoints" / "pretrain.pt"`` (when the method has a run folder).
    """
    o = method.options
    key = pretrain_key(method, data, key_extra)
    own = Path(method.run_dir) / "checkpoints" / PRETRAIN_FILE if getattr(method, "run_dir", None) else None
    source = Path(o.pretrain_checkpoint) if o.pretrain_checkpoint else own
    if o.pretrain_checkpoint and not source.is_file():
        raise TailganError(f"options.pretrain_checkpoint={o.pretrain_checkpoint} does not exist")
    reused = source is not None and source.is_file()
    if reused:
        state = load_checkpoint(source, method.device)
        _check_key(state.get("key"), key, source)
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        history = state["history"]
        log({"phase": "pretrain", "reused": str(source), "epochs": len(history)})
    else:
        history = train_autoencoder(method, data, log, modules, params, loss_fn)
    if method.world_size > 1:  # identical work on every rank; make the weights bit-identical anyway
        for module in modules.values():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, 0)
    if method.rank == 0 and own is not None and not (reused and source.resolve() == own.resolve()):
        state = {"key": key, "modules": {n: m.state_dict() for n, m in modules.items()}, "history": history}
        save_checkpoint(state, own)
    return reused


def train_autoencoder(
    method: Any,
    data: Any,
    log: Callable[[dict], None],
    modules: dict[str, nn.Module],
    params: list[nn.Parameter],
    loss_fn: LossFn,
) -> list[dict]:
    """The pre-training loop: Adam, reshuffled epochs without replacement, the last partial batch dropped."""
    o, cfg, device = method.options, method.cfg, method.device
    images, labels = data.train.images, data.train.labels
    valid = data.valid if getattr(data, "valid", None) is not None and len(data.valid) else None
    n = len(labels)
    batch = min(pretrain_batch_size(method), n)
    opt = torch.optim.Adam(
        params, lr=o.pretrain_lr or cfg.optim.g_lr, betas=tuple(o.pretrain_betas or cfg.optim.betas), eps=cfg.optim.eps
    )
    order = torch.Generator().manual_seed(cfg.seed * 1000 + 101)  # batches: same on every rank
    noise = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 103)  # VAE sampling
    history: list[dict] = []
    for module in modules.values():
        module.train()
    for epoch in range(1, o.pretrain_epochs + 1):
        perm = torch.randperm(n, generator=order)
        sums: dict[str, float] = {}
        steps = n // batch
        for i in range(steps):
            idx = perm[i * batch : (i + 1) * batch]
            with method.autocast():
                parts = loss_fn(_as_float(images[idx], device), labels[idx].to(device), noise)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                raise TailganError(
                    f"pre-training loss became {loss.item()} at epoch {epoch}; lower options.pretrain_lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        record: dict = {"phase": "pretrain", "step": epoch}
        record.update({f"pretrain/{k}": v / steps for k, v in sums.items()})
        if valid is not None:
            record["pretrain/valid_recon"] = evaluate_reconstruction(
                modules, loss_fn, valid.images, valid.labels, device, batch
            )
        history.append(record)
        log(record)
    return history


@torch.no_grad()
def evaluate_reconstruction(
    modules: dict[str, nn.Module],
    loss_fn: LossFn,
    images: Tensor,
    labels: Tensor,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> float:
    """Mean "recon" part of ``loss_fn`` over images (uint8, or float in [-1, 1]), networks in eval mode,
    no sampling noise."""
    was = {name: m.training for name, m in modules.items()}
    for m in modules.values():
        m.eval()
    total = 0.0
    for i in range(0, len(labels), batch_size):
        x, y = _as_float(images[i : i + batch_size], device), labels[i : i + batch_size].to(device)
        total += float(loss_fn(x, y, None)["recon"]) * len(y)
    for name, m in modules.items():
        m.train(was[name])
    return total / max(len(labels), 1)


def refresh_ema(method: Any) -> None:
    """After pre-training changed the networks, restart their EMA copies from the new weights."""
    for name, ema in method.ema.items():
        ema.load_state_dict(method.nets[name].state_dict())


def dcgan_dims(model: Any, img_size: int) -> tuple[int, int]:
    """(z_dim, conv_dim) of the DCGAN-style encoder/decoder these methods use, with a clear error otherwise."""
    from tailgan.methods.build import ARCH_DEFAULTS

    if model.arch != "dcgan":
        raise TailganError(
            f"model.arch={model.arch!r}: the autoencoder-initialised methods use the DCGAN encoder/decoder; "
            "set model.arch=dcgan"
        )
    if img_size not in (32, 64):
        raise TailganError(f"the dcgan networks are 32 or 64 px; set data.resolution=32 or 64 (got {img_size})")
    d = ARCH_DEFAULTS["dcgan"]
    return model.z_dim or d["z_dim"], model.conv_dim or d["conv_dim"]
