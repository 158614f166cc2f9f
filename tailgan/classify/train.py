"""Train a classifier on long-tailed data with one rebalancing strategy and score it on the real test set.

Protocol (the honest one):
- a stratified validation split is carved from the long-tailed *training* data (seeded; at least one
  image of every class that has two or more), unless the dataset ships its own validation split;
- the checkpoint with the best validation ACSA is kept (model selection never sees the test set; the
  seeds' code selected its checkpoint on the test set, which flatters every number it reports);
- synthetic images (``gan``, ``folder``) and resampling only ever touch the training part, so the
  validation and test sets are real images only;
- every strategy gets the same number of optimizer steps: ``epochs`` counts passes over the real
  long-tailed training part, whatever size the resampled set has (over-sampling would otherwise buy
  six times the compute on Fashion-MNIST-LT, under-sampling a tenth).
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tailgan.classify.metrics import classification_metrics
from tailgan.classify.strategies import (
    Strategy,
    parse_strategy,
    resample_indices,
    smote_images,
    synthetic_counts,
    threshold_shift,
)
from tailgan.data import (
    BatchStream,
    DataConfig,
    ImageSet,
    LongTailedData,
    fit_images,
    load_data,
    to_float,
    to_uint8,
)
from tailgan.errors import TailganError
from tailgan.losses.classification import (
    class_balanced_loss,
    class_balanced_weights,
    drw_weights,
    focal_loss,
    inverse_frequency_weights,
    ldam_loss,
    ldam_margins,
    weighted_cross_entropy,
)
from tailgan.nets.classifiers import build_classifier, init_prior_bias


@dataclass
class ClassifyConfig:
    """Training settings shared by every strategy (defaults: LeNet-5 at a small CPU budget)."""

    arch: str = "lenet5"  # lenet5 | resnet32 | resnet18
    epochs: float = 20.0  # passes over the real long-tailed training part (same steps for every strategy)
    steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 128
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.05  # fraction of steps with a linear learning-rate ramp, then cosine decay to 0
    valid_fraction: float = 0.1  # of each class, carved from the long-tailed training split
    evals: int = 10  # validation evaluations spread over training (model selection)
    select: Literal["valid", "last"] = "valid"  # keep the best-on-validation checkpoint, or the last one
    beta: float = 0.9999  # class-balanced loss beta (overridden by a "cbl:beta" strategy name)
    focal_gamma: float = 1.0
    ldam_max_margin: float = 0.5
    ldam_scale: float = 30.0
    drw_start: float = 0.8  # fraction of training after which LDAM-DRW re-weights
    smote_k: int = 5
    synthetic: str = "fill"  # gan/folder: "fill" or "ratio:R"
    eval_batch_size: int = 1000


def split_validation(labels: torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, valid) index split: ``round(fraction * n_c)`` images of class c go to validation,
    at least one when the class has two or more images and never all of them.

    scikit-learn's ``train_test_split(stratify=...)`` can give a rare class no validation image at all,
    which would leave ACSA on validation blind to exactly the classes this is about.
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
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(valid_idx))


def generate_synthetic(
    generator: Any, add: list[int], like: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``add[c]`` images of each class c from a generator as uint8 shaped like ``like`` (N, C, H, W)."""
    if generator.num_classes != len(add):
        raise TailganError(
            f"the generator has {generator.num_classes} classes but the data has {len(add)}; "
            "use a run trained on this dataset"
        )
    labels = torch.repeat_interleave(torch.arange(len(add)), torch.as_tensor(add, dtype=torch.long))
    if len(labels) == 0:
        return like[:0].clone(), labels
    images = to_uint8(generator.sample(labels, seed=seed)).cpu()
    images = fit_images(images, like.shape[-1], like.shape[1])
    return images, labels


def load_synthetic_folder(
    folder: str | Path, classes: list[str], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic images from ``folder``, fitted to the shape of ``like`` and labelled by class name.

    A folder written by ``tailgan augment`` holds the real training images too: only the files its
    manifest marks synthetic are read (the real ones would leak validation images into training).
    Any other folder (``DIR/<class>/*`` or ``DIR/train/<class>/*``) is read whole, through the
    ``folder`` data source; its class folders must be named like the dataset's classes.
    """
    from tailgan.classify.augment import read_augment_manifest, read_png

    folder = Path(folder)
    if not folder.is_dir():
        raise TailganError(f"synthetic image folder {folder} does not exist")
    manifest = read_augment_manifest(folder)
    if manifest is not None:
        if manifest["classes"] != list(classes):
            raise TailganError(f"{folder} was made for classes {manifest['classes']}, not {classes}")
        files = [f for f in manifest["files"] if f["synthetic"]]
        if not files:
            return like[:0].clone(), torch.zeros(0, dtype=torch.long)
        images = torch.stack([read_png(folder / f["path"], like.shape[1]) for f in files])
        labels = torch.tensor([f["label"] for f in files], dtype=torch.long)
    else:
        extra = load_data(
            DataConfig(source="folder", root=str(folder), resolution=like.shape[-1], channels=like.shape[1])
        ).train
        unknown = [n for n in extra.classes if n not in classes]
        if unknown:
            raise TailganError(
                f"class folder {unknown[0]!r} in {folder} is not a class of the data ({', '.join(classes)})"
            )
        images, labels = (
            extra.images,
            torch.tensor([classes.index(extra.classes[y]) for y in extra.labels.tolist()]),
        )
    return fit_images(images, like.shape[-1], like.shape[1]), labels


def build_training_set(
    real: ImageSet,
    strategy: Strategy,
    cfg: ClassifyConfig,
    seed: int,
    generator: Any = None,
    synthetic_dir: str | Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The images and labels the classifier trains on (uint8, int64), and what was done to get them."""
    images, labels = real.images, real.labels
    info: dict = {"real_counts": real.counts()}
    if strategy.synthetic == "gan":
        if generator is None:
            raise TailganError("strategy 'gan' needs a generator: pass --generator RUN (a tailgan training run)")
        add = synthetic_counts(real.counts(), cfg.synthetic)
        syn_x, syn_y = generate_synthetic(generator, add, images, seed)
        images, labels = torch.cat([images, syn_x]), torch.cat([labels, syn_y])
        info["synthetic_counts"] = add
    elif strategy.synthetic == "folder":
        if synthetic_dir is None:
            raise TailganError("strategy 'folder' needs --synthetic-dir DIR (a folder of synthetic images)")
        syn_x, syn_y = load_synthetic_folder(synthetic_dir, real.classes, images)
        images, labels = torch.cat([images, syn_x]), torch.cat([labels, syn_y])
        info["synthetic_counts"] = torch.bincount(syn_y, minlength=real.num_classes).tolist()
    if strategy.sampler == "smote":
        images, labels = smote_images(images, labels, k_neighbors=cfg.smote_k, random_state=seed)
    elif strategy.sampler != "none":
        idx = torch.from_numpy(resample_indices(labels, strategy.sampler, random_state=seed))
        images, labels = images[idx], labels[idx]
    info["train_counts"] = torch.bincount(labels, minlength=real.num_classes).tolist()
    return images, labels, info


class StrategyLoss:
    """The training loss of a strategy, as a function of (logits, labels, progress in [0, 1])."""

    def __init__(self, strategy: Strategy, counts: list[int], cfg: ClassifyConfig) -> None:
        self.strategy, self.cfg, self.counts = strategy, cfg, counts
        self.weights = None
        if strategy.loss == "cs":
            self.weights = inverse_frequency_weights(counts)
        elif strategy.loss == "cbl":
            self.weights = class_balanced_weights(counts, strategy.beta)
        elif strategy.loss == "ldam-drw":
            self.margins = ldam_margins(counts, cfg.ldam_max_margin)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        loss = self.strategy.loss
        if loss == "ce":
            return F.cross_entropy(logits, labels)
        if loss == "cs":
            return weighted_cross_entropy(logits, labels, self.weights)
        if loss == "cbl":
            return class_balanced_loss(logits, labels, self.weights, self.strategy.cb_loss_type, self.cfg.focal_gamma)
        if loss == "focal":
            return focal_loss(logits, labels, self.cfg.focal_gamma)
        w = drw_weights(self.counts, progress, self.cfg.drw_start)
        return ldam_loss(logits, labels, self.margins, self.cfg.ldam_scale, w)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities (rows sum to 1) from the logits this loss was trained with."""
        if self.strategy.output == "sigmoid":
            p = torch.sigmoid(logits)
            return p / p.sum(dim=1, keepdim=True)
        if self.strategy.loss == "ldam-drw":
            logits = self.cfg.ldam_scale * logits  # cosine logits: the scale the loss trained them at
        return torch.softmax(logits, dim=1)


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    images: torch.Tensor,
    loss: StrategyLoss,
    priors: torch.Tensor | None,
    device: str | torch.device,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Class probabilities (N, C) for uint8 images; divided by ``priors`` when given (threshold shifting)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = to_float(images[i : i + batch_size]).to(device)
        out.append(loss.probabilities(model(x).float()).cpu())
    probs = torch.cat(out) if out else torch.zeros(0, len(loss.counts))
    return threshold_shift(probs, priors) if priors is not None else probs


def _optimizer(model: nn.Module, strategy: Strategy, cfg: ClassifyConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # the CB sigmoid/focal output bias carries the -log(C-1) prior: no weight decay on it (as the paper)
        (no_decay if strategy.output == "sigmoid" and name == "fc.bias" else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise TailganError(f"optimizer {cfg.optimizer!r} is unknown; use sgd or adam")


def _lr_factor(step: int, total: int, warmup: float) -> float:
    warm = int(warmup * total)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    valid: ImageSet,
    strategy: Strategy,
    cfg: ClassifyConfig,
    num_classes: int,
    steps: int,
    seed: int,
    device: str | torch.device = "cpu",
    priors: torch.Tensor | None = None,
) -> tuple[nn.Module, StrategyLoss, dict]:
    """Train on uint8 ``images``/``labels`` for ``steps``; keep the checkpoint with the best validation ACSA.

    ``priors`` (C,) are divided out of the posteriors at every prediction (the ``ts`` strategy).
    Returns the model (on ``device``, in eval mode), the loss (which also turns logits into
    probabilities) and a record of the run.
    """
    if steps < 1:
        raise TailganError(f"steps={steps}: train for at least one step")
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    loss_fn = StrategyLoss(strategy, counts, cfg)
    with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        model = build_classifier(cfg.arch, num_classes, images.shape[1], cosine_head=strategy.loss == "ldam-drw")
    if strategy.output == "sigmoid":
        init_prior_bias(model.fc, num_classes)
    model.to(device)
    opt = _optimizer(model, strategy, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, cfg.warmup))
    stream = BatchStream(labels, min(cfg.batch_size, len(labels)), seed=seed)
    eval_at = set(np.linspace(0, steps, cfg.evals + 1).round().astype(int)[1:].tolist()) | {steps}
    best = {"acsa": -1.0, "step": 0, "state": None}
    history = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        model.train()
        idx = stream.next()
        x, y = to_float(images[idx]).to(device), labels[idx].to(device)
        loss = loss_fn(model(x), y, (step - 1) / steps)
        if not torch.isfinite(loss):
            raise TailganError(f"the {strategy.name} loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step in eval_at and cfg.select == "valid":
            probs = predict_proba(model, valid.images, loss_fn, priors, device, cfg.eval_batch_size)
            acsa = classification_metrics(
                valid.labels, probs.argmax(1), None, num_classes, minority_class=int(np.argmin(counts))
            )["acsa"]
            history.append({"step": step, "loss": loss.item(), "valid_acsa": acsa})
            if acsa > best["acsa"]:
                best = {"acsa": acsa, "step": step, "state": copy.deepcopy(model.state_dict())}
    if cfg.select == "valid" and best["state"] is not None:
        model.load_state_dict(best["state"])
    else:
        best["step"] = steps
    model.eval()
    record = {
        "steps": steps,
        "selected_step": best["step"],
        "valid_acsa": best["acsa"] if cfg.select == "valid" else None,
        "history": history,
        "train_seconds": round(time.perf_counter() - t0, 2),
    }
    return model, loss_fn, record


def resolve_steps(cfg: ClassifyConfig, n_real_train: int) -> int:
    """Optimizer steps: ``cfg.steps``, else ``cfg.epochs`` passes over the real training part."""
    if cfg.steps is not None:
        return int(cfg.steps)
    if cfg.epochs <= 0:
        raise TailganError(f"epochs={cfg.epochs} must be > 0")
    return max(1, math.ceil(cfg.epochs * n_real_train / cfg.batch_size))


def tail_classes(counts: list[int], k: int = 3) -> list[int]:
    """The ``min(k, C - 1)`` classes with the fewest training images (ties: lower class index first)."""
    k = min(k, len(counts) - 1)
    return sorted(range(len(counts)), key=lambda c: (counts[c], c))[:k]


def train_and_score(
    data: LongTailedData,
    strategy: str,
    seed: int = 0,
    config: ClassifyConfig | None = None,
    *,
    generator: Any = None,
    synthetic_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> dict:
    """Train one classifier with ``strategy`` on ``data.train`` and score it on ``data.test`` (real images).

    ``generator`` is a loaded tailgan generator (``tailgan.load_generator``) for the ``gan`` strategy;
    ``synthetic_dir`` a folder of synthetic images for ``folder``. Keyword ``overrides`` change fields
    of ``config`` (e.g. ``epochs=5``). Returns a JSON-ready dict with the test metrics (``acsa``,
    ``macro_f1``, ``accuracy``, ``auc_ovr_macro``, per-class ``recall_per_class``/``f1_per_class``,
    ``confusion_matrix``, ``tail_recall``) and the run record (counts, steps, selected step, timings).
    """
    cfg = config or ClassifyConfig()
    if overrides:
        unknown = sorted(set(overrides) - set(asdict(cfg)))
        if unknown:
            raise TailganError(f"unknown classifier setting {unknown[0]!r}; valid: {', '.join(asdict(cfg))}")
        cfg = ClassifyConfig(**{**asdict(cfg), **overrides})
    strat = parse_strategy(strategy, beta=cfg.beta)
    _warn_unused(strat, generator, synthetic_dir)
    if len(data.test) == 0:
        raise TailganError("the dataset has no test split to score on; use a source with a test split")
    t0 = time.perf_counter()
    if data.valid is not None and len(data.valid):
        real, valid = data.train, data.valid
    else:
        train_idx, valid_idx = split_validation(data.train.labels, cfg.valid_fraction, seed)
        real, valid = (
            data.train.subset(torch.from_numpy(train_idx)),
            data.train.subset(torch.from_numpy(valid_idx)),
        )
    if cfg.select == "valid" and len(valid) == 0:
        raise TailganError(
            "no class has two training images, so no validation split can be carved for model selection; "
            "use select='last' (--select last)"
        )
    images, labels, info = build_training_set(real, strat, cfg, seed, generator, synthetic_dir)
    priors = None
    if strat.threshold_shift:
        counts = torch.tensor(info["train_counts"], dtype=torch.float32)
        priors = counts / counts.sum()
    steps = resolve_steps(cfg, len(real))
    model, loss_fn, record = train_classifier(
        images, labels, valid, strat, cfg, data.num_classes, steps, seed, device, priors
    )
    probs = predict_proba(model, data.test.images, loss_fn, priors, device, cfg.eval_batch_size)
    minority = int(np.argmin(real.counts()))
    metrics = classification_metrics(data.test.labels, probs.argmax(1), probs, data.num_classes, minority)
    tail = tail_classes(real.counts())
    metrics["tail_classes"] = tail
    metrics["tail_recall"] = float(np.mean([metrics["recall_per_class"][c] for c in tail]))
    return {
        "strategy": strat.name,
        "seed": seed,
        **metrics,
        **info,
        "valid_counts": valid.counts(),
        **record,
        "seconds": round(time.perf_counter() - t0, 2),
        "config": asdict(cfg),
    }


def save_json(obj: Any, path: str | Path) -> None:
    """Write JSON atomically (temp file + rename)."""
    from tailgan.config import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1))


def _warn_unused(strategy: Strategy, generator: Any, synthetic_dir: Any) -> None:
    if generator is not None and strategy.synthetic != "gan":
        warnings.warn(f"--generator is ignored by strategy {strategy.name!r} (only 'gan' uses it)", stacklevel=2)
    if synthetic_dir is not None and strategy.synthetic != "folder":
        warnings.warn(f"--synthetic-dir is ignored by strategy {strategy.name!r} (only 'folder' uses it)", stacklevel=2)
