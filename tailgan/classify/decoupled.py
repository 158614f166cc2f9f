"""The second stage of a strategy: the classifier head re-learnt on a trained backbone's penultimate features.

Decoupled training (Kang et al., ICLR 2020) keeps the representation a backbone learnt on the long-tailed data and
changes only its linear classifier: ``crt`` re-trains it from scratch on class-balanced batches, ``tau-norm``
divides each class's weight vector by its norm to the power tau (tau chosen on validation), ``lws`` learns a scale
per class on class-balanced batches. Feature generation (issue 27) re-trains the head as ``crt`` does, on the real
training features plus generated ones: ``feat-calibrate`` (distribution calibration, no training) and
``feat-diffusion`` (a class-conditional diffusion model), both in a dense space (Tukey's power transform) and
through DiffuLT's prototype filter (``tailgan.synthesis.features``).

Every stage is one function in ``STAGES`` taking a :class:`HeadTask` (the backbone's head and the features of the
real training part, the validation part and any synthetic images) and returning the new head and its record.
Features are computed once, without augmentation, from the real *training* part only: no validation or test image
reaches a feature generator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tailgan.classify.config import ClassifyConfig
from tailgan.classify.parts import LOSSES
from tailgan.classify.strategies import Strategy, synthetic_counts
from tailgan.data import BatchStream
from tailgan.engine.fit import eval_steps, fit, logits_loss, warmup_cosine
from tailgan.errors import TailganError
from tailgan.nets.heads import TAU_GRID, ScaledHead, tau_normalized
from tailgan.registry import Registry
from tailgan.scores import balanced_accuracy
from tailgan.synthesis.features import (
    DiffusionConfig,
    FeatureDiffusion,
    PowerSpace,
    calibrated_features,
    prototype_filter,
)


@dataclass
class HeadTask:
    """What a second stage sees: the backbone's trained head and features (N, D) with their labels."""

    fc: nn.Module  # the backbone's head
    train_z: torch.Tensor  # real training part
    train_y: torch.Tensor
    valid_z: torch.Tensor
    valid_y: torch.Tensor
    cfg: ClassifyConfig
    seed: int
    device: Any = "cpu"
    log: Callable[[str], None] = print
    extra_z: torch.Tensor | None = None  # features of synthetic images (gan / folder sources)
    extra_y: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return int(self.fc.out_features) if hasattr(self.fc, "out_features") else int(self.fc.weight.shape[1])


# a second stage: HeadTask -> (the new head, a JSON-ready record)
STAGES: Registry[Callable[[HeadTask], tuple[nn.Module, dict]]] = Registry("second stage")


def valid_acsa(head: nn.Module, task: HeadTask) -> float:
    with torch.no_grad():
        return balanced_accuracy(task.valid_y, head(task.valid_z.to(task.device)).argmax(1).cpu())


def train_head(
    head: nn.Module, task: HeadTask, z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[nn.Module, dict]:
    """Train ``head``'s parameters on features ``z`` (N, D) / ``y`` with :func:`tailgan.engine.fit.fit`, keeping the
    state with the best validation ACSA: ``cfg.head_loss`` on class-balanced batches (``head_sampling``), SGD with
    the config's momentum and weight decay at ``head_lr`` (default ``lr``), warm-up and cosine decay."""
    cfg, k = task.cfg, task.num_classes
    n_eff = torch.bincount(y, weights=None if weights is None else weights.double(), minlength=k).double()
    balanced = cfg.head_sampling == "balanced"
    # the loss corrects for the class frequencies of its batches: uniform when they are class-balanced
    counts = [1.0] * k if balanced else n_eff.clamp_min(1e-3).tolist()
    loss_fn = LOSSES.get(cfg.head_loss)(counts, cfg, Strategy(cfg.head_loss, loss=cfg.head_loss))
    batch_size = min(cfg.batch_size, len(y))
    steps = max(1, math.ceil(cfg.head_epochs * len(y) / batch_size))
    stream = BatchStream(y, batch_size, balanced=balanced, seed=task.seed)
    head = head.to(task.device)
    params = [p for p in head.parameters() if p.requires_grad]
    lr = cfg.head_lr if cfg.head_lr is not None else cfg.lr
    opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, cfg.warmup))

    def batch(step: int) -> tuple:
        idx = stream.next()
        w = None if weights is None else weights[idx].to(task.device)
        return z[idx].to(task.device), y[idx].to(task.device), w

    evaluate = (lambda net: {"valid_acsa": valid_acsa(net, task)}) if cfg.select == "valid" else None
    head, record = fit(
        head, batch, logits_loss(loss_fn), opt, steps, scheduler=sched, device=task.device,
        evaluate=evaluate, eval_at=eval_steps(steps, cfg.evals), name="head",
    )  # fmt: skip
    best = record.pop("best")
    record.update(valid_acsa=None if best is None else best["valid_acsa"], train_features=len(y))
    return head, record


def _linear(task: HeadTask) -> nn.Linear:
    """The backbone's head as an ``nn.Linear`` (tau-norm and LWS change a trained linear classifier)."""
    if not isinstance(task.fc, nn.Linear):
        raise TailganError(
            f"tau-norm and lws rescale a trained linear classifier; this backbone's head is a "
            f"{type(task.fc).__name__} (LDAM's cosine head): use crt, or a backbone loss with a linear head"
        )
    return task.fc


def _fresh_linear(task: HeadTask) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(task.seed)
        return nn.Linear(task.train_z.shape[1], task.num_classes)


def _with_extra(task: HeadTask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict]:
    """Real features, plus the synthetic images' features (weight ``synthetic_weight``) where there are some."""
    if task.extra_z is None or not len(task.extra_y):
        return task.train_z, task.train_y, None, {}
    z, y = torch.cat([task.train_z, task.extra_z]), torch.cat([task.train_y, task.extra_y])
    w = torch.cat([torch.ones(len(task.train_y)), torch.full((len(task.extra_y),), task.cfg.synthetic_weight)])
    return z, y, w, {"synthetic_features": len(task.extra_y)}


@STAGES.register("crt")
def _crt(task: HeadTask) -> tuple[nn.Module, dict]:
    """Classifier re-training: a fresh linear head on the frozen features, class-balanced batches."""
    z, y, w, record = _with_extra(task)
    head, fit_record = train_head(_fresh_linear(task), task, z, y, w)
    return head, {**record, **fit_record}


@STAGES.register("lws")
def _lws(task: HeadTask) -> tuple[nn.Module, dict]:
    """Learnable weight scaling: per-class scales of the trained head, learnt on class-balanced batches."""
    z, y, w, record = _with_extra(task)
    head, fit_record = train_head(ScaledHead(_linear(task)), task, z, y, w)
    return head, {**record, **fit_record, "scales": [round(float(s), 4) for s in head.scales.detach().cpu()]}


@STAGES.register("tau-norm")
def _tau_norm(task: HeadTask) -> tuple[nn.Module, dict]:
    """tau-normalisation: the trained head's weight vectors divided by their norm ** tau, tau best on validation."""
    linear = _linear(task).cpu()
    best: tuple[float, float] = (-1.0, 0.0)
    scores = {}
    for tau in TAU_GRID:
        scores[tau] = valid_acsa(tau_normalized(linear, tau), _on_cpu(task))
        if scores[tau] > best[0]:  # ties: the smaller tau (closer to the trained head)
            best = (scores[tau], tau)
    return tau_normalized(linear, best[1]), {"tau_norm": best[1], "valid_acsa": best[0], "tau_scores": scores}


def _on_cpu(task: HeadTask) -> HeadTask:
    return HeadTask(task.fc, task.train_z, task.train_y, task.valid_z, task.valid_y, task.cfg, task.seed, "cpu")


# -- feature generators --------------------------------------------------------------------------------------------
def _generate_calibrated(z: torch.Tensor, y: torch.Tensor, add: list[int], task: HeadTask) -> tuple:
    g = torch.Generator().manual_seed(task.seed)
    cfg = task.cfg
    gz, gy = calibrated_features(z.double(), y, add, k=cfg.feat_k, alpha=cfg.feat_alpha, generator=g,
                                 shift=cfg.feat_shift)  # fmt: skip
    return gz.float(), gy, {}


def _generate_diffused(z: torch.Tensor, y: torch.Tensor, add: list[int], task: HeadTask) -> tuple:
    cfg = task.cfg
    dcfg = DiffusionConfig(steps=cfg.feat_steps, guidance=cfg.feat_guidance, sampler=cfg.feat_sampler,
                           sample_steps=cfg.feat_sample_steps, cbdm_tau=cfg.feat_cbdm_tau)  # fmt: skip
    model = FeatureDiffusion(z.shape[1], task.num_classes, dcfg, seed=task.seed, device=task.device)
    history = model.fit(z, y)
    gy = torch.repeat_interleave(torch.arange(len(add)), torch.tensor(add, dtype=torch.long))
    return model.sample(gy), gy, {"diffusion_loss": [round(v, 4) for v in history[-3:]]}


GENERATORS = {"feat-calibrate": _generate_calibrated, "feat-diffusion": _generate_diffused}


def generated_features(task: HeadTask, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Generated features, labels and loss weights (prototype filter x ``synthetic_weight``) of each class for the
    amount ``cfg.synthetic`` (of ``cfg.synthetic_classes``), fitted on the real training features only."""
    cfg, y, t0 = task.cfg, task.train_y, time.perf_counter()
    counts = torch.bincount(y, minlength=task.num_classes).tolist()
    add = synthetic_counts(counts, cfg.synthetic, cfg.synthetic_classes)
    space = PowerSpace(task.train_z) if cfg.feat_space == "power" else None
    dense = space.to_dense(task.train_z) if space is not None else task.train_z
    gz, gy, record = GENERATORS[kind](dense, y, add, task)
    fake = space.from_dense(gz) if space is not None else gz
    if cfg.feat_filter:
        weights, report = prototype_filter(task.train_z, y, fake, gy, cfg.feat_aid_weight)
    else:
        weights, report = torch.ones(len(gy)), {}
    keep = weights > 0
    zeros = lambda v: round(float((v == 0).float().mean()), 3) if len(v) else None  # noqa: E731  post-ReLU sparsity
    record.update(generated_counts=add, filter_report={str(c): list(v) for c, v in report.items()},
                  kept=int(keep.sum()), zero_share_real=zeros(task.train_z), zero_share_generated=zeros(fake),
                  generator_seconds=round(time.perf_counter() - t0, 2))  # fmt: skip
    return fake[keep], gy[keep], weights[keep] * cfg.synthetic_weight, record


def _feature_stage(kind: str) -> Callable[[HeadTask], tuple[nn.Module, dict]]:
    def stage(task: HeadTask) -> tuple[nn.Module, dict]:
        gz, gy, gw, record = generated_features(task, kind)
        z, y, w, extra = _with_extra(task)
        w = torch.ones(len(y)) if w is None else w
        head, fit_record = train_head(_fresh_linear(task), task, torch.cat([z, gz]), torch.cat([y, gy]),
                                      torch.cat([w, gw]))  # fmt: skip
        return head, {**extra, **record, **fit_record}

    stage.__doc__ = f"{kind}: the head re-trained (as crt) on real + generated, filtered features"
    return stage


for _kind in GENERATORS:
    STAGES.register(_kind, _feature_stage(_kind))
