"""Autoencoder / VAE pre-training shared by BAGAN, BAGAN-GP and IDA-GAN, and BAGAN's per-class Gaussians.

Pre-training is the first phase of these methods (:class:`AutoencoderPretraining`: the ``pretrain`` phase
before ``gan``, resumable like any phase). It trains the autoencoder modules a method names, logs one record
per epoch (``{"phase": "pretrain", "epoch": e, "pretrain/loss": ...}``), and saves them atomically to
``RUN/checkpoints/pretrain.pt`` when the phase ends. When that file (or ``options.pretrain_checkpoint``)
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
from tailgan.io import load_checkpoint, save_checkpoint
from tailgan.methods.build import ARCH_DEFAULTS
from tailgan.methods.spec import Phase, StreamSpec

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
        "precision": method.precision.name,
        "epochs": o.pretrain_epochs,
        "batch_size": pretrain_batch_size(method),
        "lr": o.pretrain_lr or cfg.optim.g_lr,
        "betas": list(o.pretrain_betas or cfg.optim.betas),
        "eps": cfg.optim.eps,
        "ae_loss": o.ae_loss,
        **(extra or {}),
    }


def pretrain_batch_size(method: Any) -> int:
    n = sum(method.shape.class_counts) or method.cfg.optim.batch_size
    return min(method.options.pretrain_batch_size or method.cfg.optim.batch_size, n)


def _check_key(stored: dict | None, wanted: dict, path: Path) -> None:
    if stored == wanted:
        return
    stored = stored or {}
    diff = [f"{k}: {stored.get(k)!r} there, {wanted[k]!r} here" for k in wanted if stored.get(k) != wanted[k]]
    raise TailganError(
        f"{path} holds a pre-training with other settings ({'; '.join(diff)}); delete it, or point "
        "options.pretrain_checkpoint at a matching one, or set options.pretrain=false"
    )


class AutoencoderPretraining:
    """A ``pretrain`` phase before the ``gan`` phase, for methods whose G starts as a trained decoder.

    The recipe gives ``pretrain_modules() -> (modules, params)`` (the modules saved in ``pretrain.pt`` and the
    parameters the optimiser updates), ``ae_loss(x, y, generator) -> {"loss", "recon", ...}``,
    ``pretrain_key_extra()`` and ``after_pretrain(data)`` (runs when the phase ends, also when it is skipped).
    The phase is Adam over reshuffled epochs without replacement, the last partial batch dropped, the same
    batches on every rank (its own stream and noise generator, seeded by ``seed``, so the GAN phase sees the
    same random numbers whether the autoencoder was trained now or loaded); one log record per epoch.
    """

    def build_pretraining(self) -> None:
        o, cfg = self.options, self.cfg
        _, params = self.pretrain_modules()
        betas = tuple(o.pretrain_betas or cfg.optim.betas)
        lr = o.pretrain_lr or cfg.optim.g_lr
        self.optimizers["pretrain"] = torch.optim.Adam(params, lr=lr, betas=betas, eps=cfg.optim.eps)
        self.pretrain_noise = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + 103)  # VAE sampling
        self.pretrain_history: list[dict] = []

    def streams(self) -> dict:
        return {
            **super().streams(),
            "pretrain": StreamSpec(batch_size=pretrain_batch_size(self), shard=False, drop_last=True, seed_offset=101),
        }

    def pretrain_steps_per_epoch(self) -> int:
        return max(sum(self.shape.class_counts) // pretrain_batch_size(self), 1)

    def phases(self) -> list:
        o = self.options
        per_epoch = self.pretrain_steps_per_epoch()
        pretrain = Phase(
            "pretrain",
            o.pretrain_epochs * per_epoch if o.pretrain else 0,
            self.pretrain_step,
            begin=self.pretrain_begin,
            end=self.pretrain_end,
            log_every=per_epoch,
            record=self.pretrain_record,
        )
        return [pretrain, *super().phases()]

    def pretrain_step(self, batches: Any, step: int) -> dict[str, Tensor]:
        modules, _ = self.pretrain_modules()
        for module in modules.values():
            module.train()
        x, y = batches.next("pretrain")
        with self.autocast():
            parts = self.ae_loss(x, y, self.pretrain_noise)
        self.optimizer_step(self.optimizers["pretrain"], parts["loss"])  # identical on every rank: no sync
        return {f"pretrain/{k}": v.detach() for k, v in parts.items()}

    def pretrain_record(self, data: Any, record: dict) -> dict:
        """Per-epoch fields: the epoch, and the reconstruction error on the validation split when there is one."""
        extra: dict = {"epoch": int(record["step"]) // self.pretrain_steps_per_epoch()}
        valid = data.valid if getattr(data, "valid", None) is not None and len(data.valid) else None
        if valid is not None:
            modules, _ = self.pretrain_modules()
            extra["pretrain/valid_recon"] = evaluate_reconstruction(
                modules, self.ae_loss, valid.images, valid.labels, self.device, pretrain_batch_size(self)
            )
        self.pretrain_history.append({**record, **extra})
        return extra

    def _pretrain_files(self) -> tuple[Path | None, Path | None]:
        o, run = self.options, self.ctx.run_dir
        own = Path(run) / "checkpoints" / PRETRAIN_FILE if run is not None else None
        source = Path(o.pretrain_checkpoint) if o.pretrain_checkpoint else own
        if o.pretrain_checkpoint and not source.is_file():
            raise TailganError(f"options.pretrain_checkpoint={o.pretrain_checkpoint} does not exist")
        return own, source

    def pretrain_begin(self, data: Any) -> bool:
        """Load a saved pre-training with the same settings instead of training (True: the phase is skipped)."""
        if not self.options.pretrain:
            return True
        _, source = self._pretrain_files()
        if source is None or not source.is_file():
            return False
        state = load_checkpoint(source, self.device)
        _check_key(state.get("key"), pretrain_key(self, data, self.pretrain_key_extra()), source)
        modules, _ = self.pretrain_modules()
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        self.pretrain_history = list(state["history"])
        self.pretrain_reused = source
        self.ctx.log({"phase": "pretrain", "reused": str(source), "epochs": len(self.pretrain_history)})
        return True

    def pretrain_end(self, data: Any) -> None:
        if self.options.pretrain:
            modules, _ = self.pretrain_modules()
            if self.world_size > 1:  # identical work on every rank; make the weights bit-identical anyway
                for module in modules.values():
                    for t in list(module.parameters()) + list(module.buffers()):
                        dist.broadcast(t.data, 0)
            own, source = self._pretrain_files()
            reused = getattr(self, "pretrain_reused", None)
            if self.rank == 0 and own is not None and not (reused is not None and reused.resolve() == own.resolve()):
                state = {
                    "key": pretrain_key(self, data, self.pretrain_key_extra()),
                    "modules": {n: m.state_dict() for n, m in modules.items()},
                    "history": self.pretrain_history,
                }
                save_checkpoint(state, own)
        self.after_pretrain(data)

    def extra_state(self) -> dict:
        return {
            **super().extra_state(),
            "pretrain_noise": self.pretrain_noise.get_state(),
            "pretrain_history": self.pretrain_history,
        }

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        if "pretrain_noise" in state:
            self.pretrain_noise.set_state(state["pretrain_noise"])
            self.pretrain_history = list(state["pretrain_history"])


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
    if model.arch != "dcgan":
        raise TailganError(
            f"model.arch={model.arch!r}: the autoencoder-initialised methods use the DCGAN encoder/decoder; "
            "set model.arch=dcgan"
        )
    if img_size not in (32, 64):
        raise TailganError(f"the dcgan networks are 32 or 64 px; set data.resolution=32 or 64 (got {img_size})")
    d = ARCH_DEFAULTS["dcgan"]
    return model.z_dim or d["z_dim"], model.conv_dim or d["conv_dim"]
