"""Train a classifier on long-tailed data with one rebalancing strategy and score it on the real test set.

Protocol (the honest one):
- a stratified validation split is carved from the long-tailed *training* data (seeded; at least one
  image of every class that has two or more), unless the dataset ships its own validation split;
- the checkpoint with the best validation ACSA is kept (model selection never sees the test set; the
  seeds' code selected its checkpoint on the test set, which flatters every number it reports);
- synthetic images (``gan``, ``folder``) and resampling only ever touch the training part, so the
  validation and test sets are real images only; a classifier that judges synthetic images (the filter
  and the guard) is trained on the real training part only;
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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from tailgan.classify.joint import train_joint
from tailgan.classify.metrics import classification_metrics
from tailgan.classify.strategies import (
    Strategy,
    parse_strategy,
    prior_adjust,
    resample_indices,
    smote_images,
    synthetic_counts,
)
from tailgan.classify.synthetic import (
    check_recognition,
    filter_synthetic,
    generate_synthetic,
    load_synthetic_folder,
    recognition_rates,
)
from tailgan.classify.transfer import TransferConfig, resolve_source, train_and_score_transfer
from tailgan.data import BatchStream, ImageSet, LongTailedData, to_float
from tailgan.data.splits import carve_validation, split_validation
from tailgan.errors import TailganError
from tailgan.losses.classification import (
    balanced_softmax_loss,
    class_balanced_loss,
    class_balanced_weights,
    cross_entropy,
    drw_cross_entropy,
    drw_weights,
    focal_loss,
    inverse_frequency_weights,
    ldam_loss,
    ldam_margins,
    logit_adjusted_loss,
    weighted_cross_entropy,
)
from tailgan.nets.classifiers import build_classifier, init_prior_bias
from tailgan.nets.precision import COMPILE_MIN_STEPS, compile_decision, resolve_precision  # noqa: F401

__all__ = [
    "ClassifyConfig",
    "StrategyLoss",
    "build_training_set",
    "init_model",
    "predict_proba",
    "resolve_steps",
    "split_validation",  # re-exported from tailgan.data.splits
    "tail_classes",
    "train_and_score",
    "train_classifier",
    "train_reference",
]

TAU_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


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
    split_seed: int | None = None  # seed of the validation split; None: the training seed
    evals: int = 10  # validation evaluations spread over training (model selection)
    select: Literal["valid", "last"] = "valid"  # keep the best-on-validation checkpoint, or the last one
    beta: float = 0.9999  # class-balanced loss beta (overridden by a "cbl:beta" strategy name)
    focal_gamma: float = 1.0
    ldam_max_margin: float = 0.5
    ldam_scale: float = 30.0
    drw_start: float = 0.8  # fraction of training after which LDAM-DRW and CE-DRW re-weight
    la_tau: float = 1.0  # logit-adjusted loss temperature (Menon et al.)
    tau_grid: tuple[float, ...] = TAU_GRID  # la-posthoc: candidate tau, chosen on the validation split
    smote_k: int = 5
    # synthetic images (gan / folder strategies)
    synthetic: str = "fill"  # how many: fill | ratio:R | target:N[,N1,...] | add:N[,N1,...]
    synthetic_classes: str = "all"  # which classes: all | below:N | a list of class indices "5,7,9"
    synthetic_weight: float = 1.0  # a synthetic image counts as this many images in the loss
    filter: float | None = None  # keep a synthetic image only if the reference classifier gives p(y) >= this
    filter_rounds: int = 3  # generation rounds to make up for filtered-out images (gan only)
    reference: str = "la"  # strategy of the reference classifier (trained on the real training part only)
    guard: bool = True  # measure how often the reference recognises synthetic images; warn / refuse
    guard_warn: float = 0.5  # mean recognition rate below which a loud warning is printed
    guard_refuse: float | None = 0.15  # ... below which the run is refused (None: never)
    finetune: Literal["none", "all", "head"] = "none"  # two-stage: then fine-tune on real images only
    finetune_fraction: float = 0.2  # share of the step budget spent on the real-only stage
    finetune_lr: float | None = None  # learning rate of that stage (default: lr / 10)
    eval_batch_size: int = 1000
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast + channels-last where native
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile the network (auto: where measured to pay)
    # cyclegan-aug / cyclegan-alt (tailgan.classify.joint)
    joint_gan_steps: int = 1000  # CycleGAN updates before the classifier trains (aug: all of them; alt: warm-up)
    joint_batch_size: int = 16  # real images per class in each CycleGAN / classifier update
    # the classifier's batch in a joint strategy: "classifier" = batch_size real images per update (half per
    # domain for the CycleGAN) and their translations, at lr, as every other strategy sees; "translator" =
    # the translator's batch (joint_batch_size per class) at an lr scaled down to match (the first version)
    joint_cls_batch: Literal["classifier", "translator"] = "classifier"
    joint_options: tuple[str, ...] = ()  # more cyclegan-cls overrides, e.g. ("options.ngf=16",)
    joint_grid_dir: str | None = None  # write the trained translator's grid there (<strategy>_seed<N>.png)
    # original / finetune / delta / dfg (tailgan.classify.transfer)
    source: str | None = None  # a source weights file, or a data spec to pre-train the source on (e.g. mnist)
    source_root: str | None = None  # the source data's folder (default: the target data's root)
    transfer_dir: str | None = None  # where the dfg runs live (<transfer_dir>/dfg_seed<N>; resumed)

    def check(self) -> None:
        """Refuse settings outside their range, naming the field and the range."""
        ranges = {
            "epochs": (self.epochs, 0.0, None, False),
            "batch_size": (self.batch_size, 1, None, True),
            "lr": (self.lr, 0.0, None, False),
            "valid_fraction": (self.valid_fraction, 0.0, 1.0, False),
            "evals": (self.evals, 1, None, True),
            "la_tau": (self.la_tau, 0.0, None, True),
            "synthetic_weight": (self.synthetic_weight, 0.0, None, True),
            "finetune_fraction": (self.finetune_fraction, 0.0, 1.0, False),
            "filter_rounds": (self.filter_rounds, 1, None, True),
            "joint_gan_steps": (self.joint_gan_steps, 0, None, True),
            "joint_batch_size": (self.joint_batch_size, 1, None, True),
        }
        for name, (v, lo, hi, lo_closed) in ranges.items():
            if v < lo or (v == lo and not lo_closed) or (hi is not None and v >= hi):
                bound = f"{'>=' if lo_closed else '>'} {lo}" + (f" and < {hi}" if hi is not None else "")
                raise TailganError(f"classifier setting {name}={v} must be {bound}")
        if self.steps is not None and self.steps < 1:
            raise TailganError(f"classifier setting steps={self.steps} must be >= 1")
        if self.filter is not None and not 0.0 <= self.filter <= 1.0:
            raise TailganError(f"--filter {self.filter} must be a probability in [0, 1], e.g. 0.9")
        if not self.tau_grid or any(t < 0 for t in self.tau_grid):
            raise TailganError(f"tau_grid={self.tau_grid} must hold one or more values >= 0")
        if self.finetune not in ("none", "all", "head"):
            raise TailganError(f"--finetune {self.finetune!r} is unknown; use none, all or head")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise TailganError(f"classifier setting precision={self.precision!r} is unknown; use auto, fp32 or bf16")
        if self.joint_cls_batch not in ("classifier", "translator"):
            raise TailganError(f"joint_cls_batch={self.joint_cls_batch!r} is unknown; use classifier or translator")
        if self.compile not in ("auto", "on", "off"):
            raise TailganError(f"classifier setting compile={self.compile!r} is unknown; use auto, on or off")


# What runs did before a ClassifyConfig field existed, where that differs from the field's default (reports
# written then lack the field; tailgan.classify.bench.config_differences reads them with these values).
BEFORE_FIELD = {"joint_cls_batch": "translator"}


def build_training_set(
    real: ImageSet,
    strategy: Strategy,
    cfg: ClassifyConfig,
    seed: int,
    generator: Any = None,
    synthetic_dir: str | Path | None = None,
    reference: nn.Module | None = None,
    log: Callable[[str], None] = print,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """The images and labels the classifier trains on (uint8, int64), which of them are synthetic (bool),
    and a JSON-ready record of what was done to get them.

    With synthetic images, ``reference`` (a classifier trained on ``real`` only, see
    :func:`train_reference`) runs the guard (``cfg.guard``) and the filter (``cfg.filter``).
    """
    images, labels = real.images, real.labels
    info: dict = {"real_counts": real.counts()}
    syn_x = syn_y = None
    if strategy.synthetic == "gan":
        if generator is None:
            raise TailganError("strategy 'gan' needs a generator: pass --generator RUN (a tailgan training run)")
        want = synthetic_counts(real.counts(), cfg.synthetic, cfg.synthetic_classes)
        syn_x, syn_y = generate_synthetic(generator, want, images, seed)
        info["synthetic_requested"] = want
    elif strategy.synthetic == "folder":
        if synthetic_dir is None:
            raise TailganError("strategy 'folder' needs --synthetic-dir DIR (a folder of synthetic images)")
        syn_x, syn_y = load_synthetic_folder(synthetic_dir, real.classes, images)
    if syn_x is not None:
        if reference is not None and len(syn_y) and cfg.guard:
            rates = recognition_rates(syn_x, syn_y, reference, cfg.eval_batch_size)
            info["recognition_rate"] = rates
            info["recognition_mean"] = check_recognition(
                rates, real.classes, cfg.guard_warn, cfg.guard_refuse, log=log
            )
        if cfg.filter is not None:
            if reference is None:
                raise TailganError("the synthetic-image filter needs a reference classifier trained on the real data")
            syn_x, syn_y, info["filter_acceptance"] = _filtered(
                syn_x, syn_y, reference, cfg, generator if strategy.synthetic == "gan" else None, info, seed
            )
            rates = ", ".join("-" if a is None else f"{a:.2f}" for a in info["filter_acceptance"])
            log(
                f"filter (p >= {cfg.filter:g}): kept {len(syn_y)} of {info['synthetic_scored']} synthetic "
                f"images; acceptance per class: {rates}"
            )
        info["synthetic_counts"] = torch.bincount(syn_y, minlength=real.num_classes).tolist()
        images, labels = torch.cat([images, syn_x]), torch.cat([labels, syn_y])
    synthetic = torch.zeros(len(labels), dtype=torch.bool)
    synthetic[len(real) :] = True
    if strategy.sampler == "smote":
        n = len(labels)
        images, labels = smote_images(images, labels, k_neighbors=cfg.smote_k, random_state=seed)
        synthetic = torch.cat([synthetic, torch.zeros(len(labels) - n, dtype=torch.bool)])
    elif strategy.sampler != "none":
        idx = torch.from_numpy(resample_indices(labels, strategy.sampler, random_state=seed))
        images, labels, synthetic = images[idx], labels[idx], synthetic[idx]
    info["train_counts"] = torch.bincount(labels, minlength=real.num_classes).tolist()
    return images, labels, synthetic, info


def _filtered(
    syn_x: torch.Tensor,
    syn_y: torch.Tensor,
    reference: nn.Module,
    cfg: ClassifyConfig,
    generator: Any,
    info: dict,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, list[float | None]]:
    """Filter synthetic images; with a generator, draw again (new seeds) for what the filter dropped."""
    num_classes = len(info["real_counts"])
    want = torch.bincount(syn_y, minlength=num_classes)
    kept_x, kept_y, scored_y, scored_keep = [], [], [], []
    x, y = syn_x, syn_y
    for round_ in range(cfg.filter_rounds):
        if len(y):
            keep, _ = filter_synthetic(x, y, reference, cfg.filter, cfg.eval_batch_size)
            kept_x.append(x[keep])
            kept_y.append(y[keep])
            scored_y.append(y)
            scored_keep.append(keep)
        have = torch.bincount(torch.cat(kept_y), minlength=num_classes) if kept_y else torch.zeros_like(want)
        missing = (want - have).clamp(min=0)
        if generator is None or int(missing.sum()) == 0 or round_ == cfg.filter_rounds - 1:
            break
        x, y = generate_synthetic(generator, missing.tolist(), syn_x, seed + 100_003 * (round_ + 1))
    all_y, all_keep = torch.cat(scored_y), torch.cat(scored_keep)
    n = torch.bincount(all_y, minlength=num_classes)
    k = torch.bincount(all_y[all_keep], minlength=num_classes)
    acceptance = [None if int(n[c]) == 0 else float(k[c]) / float(n[c]) for c in range(num_classes)]
    info["synthetic_scored"] = len(all_y)
    if not kept_y:
        return syn_x[:0], syn_y[:0], acceptance
    return torch.cat(kept_x), torch.cat(kept_y), acceptance


class StrategyLoss:
    """The training loss of a strategy, as a function of (logits, labels, progress in [0, 1]).

    ``counts`` are the class counts the loss corrects for (floats allowed: with weighted synthetic
    images they are the effective counts n_real + weight * n_synthetic).
    """

    def __init__(self, strategy: Strategy, counts: Sequence[float], cfg: ClassifyConfig) -> None:
        self.strategy, self.cfg, self.counts = strategy, cfg, list(counts)
        self.weights = None
        if strategy.loss == "cs":
            self.weights = inverse_frequency_weights(self.counts)
        elif strategy.loss == "cbl":
            self.weights = class_balanced_weights(self.counts, strategy.beta)
        elif strategy.loss == "ldam-drw":
            self.margins = ldam_margins(self.counts, cfg.ldam_max_margin)

    def __call__(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        progress: float,
        sample_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss, cfg, s = self.strategy.loss, self.cfg, sample_weight
        if loss == "ce":
            return cross_entropy(logits, labels, s)
        if loss == "cs":
            return weighted_cross_entropy(logits, labels, self.weights, s)
        if loss == "cbl":
            return class_balanced_loss(logits, labels, self.weights, self.strategy.cb_loss_type, cfg.focal_gamma, s)
        if loss == "focal":
            return focal_loss(logits, labels, cfg.focal_gamma, sample_weight=s)
        if loss == "la":
            return logit_adjusted_loss(logits, labels, self.counts, cfg.la_tau, s)
        if loss == "balanced-softmax":
            return balanced_softmax_loss(logits, labels, self.counts, s)
        if loss == "ce-drw":
            return drw_cross_entropy(logits, labels, self.counts, progress, cfg.drw_start, sample_weight=s)
        if loss == "ldam-drw":
            w = drw_weights(self.counts, progress, cfg.drw_start)
            return ldam_loss(logits, labels, self.margins, cfg.ldam_scale, w, s)
        raise ValueError(f"unknown loss {loss!r}")

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities (rows sum to 1) from the logits this loss was trained with."""
        if self.strategy.output == "sigmoid":
            p = torch.sigmoid(logits)
            return p / p.sum(dim=1, keepdim=True)
        if self.strategy.loss == "ldam-drw":
            logits = self.cfg.ldam_scale * logits  # cosine logits: the scale the loss trained them at
        return torch.softmax(logits, dim=1)


class Scorer(nn.Module):
    """A trained model as a classifier of float images: log of its (prior-adjusted) class probabilities.

    Its outputs are logits in the usual sense (softmax gives the probabilities the strategy predicts
    with), so it can be handed to :func:`tailgan.classify.synthetic.filter_synthetic`.
    """

    def __init__(self, model: nn.Module, loss: StrategyLoss, priors: torch.Tensor | None = None, tau: float = 0.0):
        super().__init__()
        self.model, self.loss, self.priors, self.tau = model, loss, priors, tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.loss.probabilities(self.model(x).float())
        if self.priors is not None:
            p = prior_adjust(p, self.priors.to(p.device), self.tau)
        return torch.log(p.clamp_min(1e-30))


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    images: torch.Tensor,
    loss: StrategyLoss,
    priors: torch.Tensor | None,
    device: str | torch.device,
    batch_size: int = 1000,
    tau: float = 1.0,
) -> torch.Tensor:
    """Class probabilities (N, C) for uint8 images; divided by ``priors ** tau`` when priors are given
    (``tau = 1``: threshold shifting; other tau: post-hoc logit adjustment)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = to_float(images[i : i + batch_size]).to(device)
        out.append(loss.probabilities(model(x).float()).cpu())
    probs = torch.cat(out) if out else torch.zeros(0, len(loss.counts))
    return prior_adjust(probs, priors, tau) if priors is not None else probs


def init_model(strategy: Strategy, cfg: ClassifyConfig, num_classes: int, in_channels: int, seed: int) -> nn.Module:
    """The freshly initialised network of a strategy (seeded; the caller's RNG is left untouched).

    LDAM gets a cosine head; the one-vs-all class-balanced losses start the output bias at -log(C - 1).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(cfg.arch, num_classes, in_channels, cosine_head=strategy.loss == "ldam-drw")
    if strategy.output == "sigmoid":
        init_prior_bias(model.fc, num_classes)
    return model


def _optimizer(
    model: nn.Module, strategy: Strategy, cfg: ClassifyConfig, lr: float, head_only: bool
) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if head_only and not name.startswith("fc."):
            continue
        # the CB sigmoid/focal output bias carries the -log(C-1) prior: no weight decay on it (as the paper)
        (no_decay if strategy.output == "sigmoid" and name == "fc.bias" else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=lr)
    raise TailganError(f"optimizer {cfg.optimizer!r} is unknown; use sgd or adam")


def _lr_factor(step: int, total: int, warmup: float) -> float:
    warm = int(warmup * total)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _best_tau(
    probs: torch.Tensor, labels: torch.Tensor, priors: torch.Tensor | None, taus: Sequence[float], num_classes: int
) -> tuple[float, float | None]:
    """(validation ACSA, tau) of the best prior exponent; ties go to the first tau of the grid."""
    if priors is None:
        return balanced_acsa(labels, probs.argmax(1), num_classes), None
    best = (-1.0, None)
    for tau in taus:
        acsa = balanced_acsa(labels, prior_adjust(probs, priors, tau).argmax(1), num_classes)
        if acsa > best[0]:
            best = (acsa, float(tau))
    return best


def balanced_acsa(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> float:
    """ACSA (mean per-class recall) over the classes present in ``y_true``."""
    return classification_metrics(y_true, y_pred, None, num_classes, minority_class=0)["acsa"]


# torch.compile of a classifier on the CPU (benchmarks/results/compile_speed.md, one thread): ResNet-32 steps
# 1.41x faster with bf16 (1.05x fp32) after 62 s of compiling, paid back after ~570 steps; LeNet-5 steps are
# too small for the compiled graph's overhead (0.41x-0.47x: slower). ``compile=auto`` compiles only the
# networks measured to gain, on runs long enough to pay the compile time back with margin.
COMPILE_PAYS = frozenset({"resnet32"})


def resolve_compile(setting: str, arch: str, steps: int, device: torch.device) -> tuple[bool, str | None]:
    """Whether to ``torch.compile`` the classifier (``tailgan.nets.precision.compile_decision``: ``auto``
    compiles the architectures in :data:`COMPILE_PAYS` on runs of at least ``COMPILE_MIN_STEPS`` steps)."""
    return compile_decision(setting, arch in COMPILE_PAYS, steps, device, f"the {arch} classifier")


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
    *,
    taus: Sequence[float] = (1.0,),
    counts: Sequence[float] | None = None,
    sample_weights: torch.Tensor | None = None,
    model: nn.Module | None = None,
    head_only: bool = False,
    lr: float | None = None,
    precision: str | None = None,
) -> tuple[nn.Module, StrategyLoss, dict]:
    """Train on uint8 ``images``/``labels`` for ``steps``; keep the checkpoint with the best validation ACSA.

    - ``priors`` (C,) are divided out of the posteriors at prediction, raised to the power tau; with
      several ``taus`` the best one on validation is chosen at each evaluation (``la-posthoc``);
      ``(1.0,)`` is threshold shifting (``ts``).
    - ``counts``: the class counts the loss corrects for (default: those of ``labels``).
    - ``sample_weights`` (N,): per-image weights in the loss (synthetic images).
    - ``model``: start from a copy of this network (fine-tuning; default: :func:`init_model`);
      ``head_only`` trains only its final layer ``fc`` (the rest stays frozen, in eval mode).
    - ``lr``: the peak learning rate (default ``cfg.lr``).
    - ``precision``: "auto" (bf16 autocast + channels-last where the hardware has native bf16, else fp32),
      "fp32" (exact) or "bf16" (default ``cfg.precision``); forward passes run under the autocast, the loss
      and its reduction in fp32, evaluation in fp32.

    Returns the model (on ``device``, in eval mode), the loss (which also turns logits into
    probabilities) and a record of the run (``first_loss``: the loss of step 1, before any update;
    ``tau``: the prior exponent to predict with, None without priors).
    """
    if steps < 1:
        raise TailganError(f"steps={steps}: train for at least one step")
    counts = torch.bincount(labels, minlength=num_classes).tolist() if counts is None else list(counts)
    loss_fn = StrategyLoss(strategy, counts, cfg)
    if model is None:
        model = init_model(strategy, cfg, num_classes, images.shape[1], seed)
    else:
        model = copy.deepcopy(model)
    model.to(device)
    prec, _ = resolve_precision(cfg.precision if precision is None else precision, torch.device(device))
    prec.module(model)
    compiled, note = resolve_compile(cfg.compile, cfg.arch, steps, torch.device(device))
    if note:
        print(note, flush=True)
    # the training forward runs compiled; evaluation, selection and the returned model stay the eager network
    # (same parameters), so eval mode costs no second compile and the state dict keeps its keys
    forward = torch.compile(model) if compiled else model
    scaler = torch.amp.GradScaler(prec.device_type) if prec.needs_scaler else None  # fp16 (auto on some GPUs)
    if head_only:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("fc."))
    opt = _optimizer(model, strategy, cfg, cfg.lr if lr is None else lr, head_only)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, cfg.warmup))
    stream = BatchStream(labels, min(cfg.batch_size, len(labels)), seed=seed)
    eval_at = set(np.linspace(0, steps, cfg.evals + 1).round().astype(int)[1:].tolist()) | {steps}
    best = {"acsa": -1.0, "step": 0, "state": None, "tau": None}
    history = []
    first_loss = None
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        model.train()
        if head_only:  # frozen body: no batch-norm statistics updates either
            model.eval()
            model.fc.train()
        idx = stream.next()
        x, y = prec.tensor(to_float(images[idx]).to(device)), labels[idx].to(device)
        s = None if sample_weights is None else sample_weights[idx].to(device)
        with prec.autocast():
            logits = forward(x)
        loss = loss_fn(logits.float(), y, (step - 1) / steps, s)  # the loss and its reduction in fp32
        if not torch.isfinite(loss):
            raise TailganError(f"the {strategy.name} loss became {loss.item()} at step {step}; lower --lr")
        if first_loss is None:
            first_loss = loss.item()
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        sched.step()
        if step in eval_at and cfg.select == "valid":
            probs = predict_proba(model, valid.images, loss_fn, None, device, cfg.eval_batch_size)
            acsa, tau = _best_tau(probs, valid.labels, priors, taus, num_classes)
            history.append({"step": step, "loss": loss.item(), "valid_acsa": acsa, "tau": tau})
            if acsa > best["acsa"]:
                best = {"acsa": acsa, "step": step, "state": copy.deepcopy(model.state_dict()), "tau": tau}
    if cfg.select == "valid" and best["state"] is not None:
        model.load_state_dict(best["state"])
    else:
        # no validation: a fixed exponent (the first of the grid that is 1, i.e. TS, else the first)
        best["step"] = steps
        best["tau"] = None if priors is None else (1.0 if 1.0 in taus else float(taus[0]))
    model.eval()
    record = {
        "steps": steps,
        "selected_step": best["step"],
        "valid_acsa": best["acsa"] if cfg.select == "valid" else None,
        "tau": best["tau"],
        "first_loss": first_loss,
        "history": history,
        "train_seconds": round(time.perf_counter() - t0, 2),
        "precision": prec.name,
        "compiled": compiled,
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


def _prediction_rule(
    strategy: Strategy, counts: Sequence[float], cfg: ClassifyConfig
) -> tuple[torch.Tensor | None, tuple[float, ...]]:
    """(priors, candidate tau) of a strategy's prediction rule."""
    if strategy.adjust == "none":
        return None, (1.0,)
    n = torch.tensor(counts, dtype=torch.float32)
    return n / n.sum(), ((1.0,) if strategy.adjust == "ts" else tuple(cfg.tau_grid))


# the synthetic-data protocol's fields: the reference classifier (trained on real images only) ignores them
SYNTHETIC_FIELDS = ("synthetic", "synthetic_classes", "synthetic_weight", "filter", "filter_rounds", "guard",
                    "guard_warn", "guard_refuse", "finetune", "finetune_fraction", "finetune_lr")  # fmt: skip


def _reference_key(cfg: ClassifyConfig, real: ImageSet, split: dict, steps: int, seed: int, device: Any) -> str:
    """What a reference classifier depends on (one ``references`` dict serves one dataset)."""
    fields = {k: v for k, v in asdict(cfg).items() if k not in SYNTHETIC_FIELDS}
    return json.dumps([fields, real.counts(), split, steps, seed, str(device)], sort_keys=True, default=str)


def train_reference(
    real: ImageSet, valid: ImageSet, cfg: ClassifyConfig, steps: int, seed: int, device: str | torch.device = "cpu"
) -> nn.Module:
    """The classifier that judges synthetic images: ``cfg.reference`` trained on the *real* training part
    only (never the validation or test split, never the evaluator), as a :class:`Scorer`."""
    strat = parse_strategy(cfg.reference, beta=cfg.beta)
    if strat.synthetic or strat.sampler != "none":
        raise TailganError(f"reference={cfg.reference!r}: use a loss or prediction strategy such as la or ts")
    priors, taus = _prediction_rule(strat, real.counts(), cfg)
    model, loss, record = train_classifier(
        real.images, real.labels, valid, strat, cfg, real.num_classes, steps, seed, device, priors, taus=taus
    )
    return Scorer(model, loss, priors, record["tau"] or 0.0).eval()


def train_and_score(
    data: LongTailedData,
    strategy: str,
    seed: int = 0,
    config: ClassifyConfig | None = None,
    *,
    generator: Any = None,
    synthetic_dir: str | Path | None = None,
    reference: nn.Module | None = None,
    references: dict | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    keep_model: Callable[[nn.Module], None] | None = None,
    **overrides: Any,
) -> dict:
    """Train one classifier with ``strategy`` on ``data.train`` and score it on ``data.test`` (real images).

    ``generator`` is a loaded tailgan generator (``load_generator``) for the ``gan`` strategies;
    ``synthetic_dir`` a folder of synthetic images for ``folder``. With synthetic images and the guard
    or the filter on, a reference classifier is trained on the real training part (or ``reference`` is
    used: a classifier of float images returning logits). ``references`` is a dict that keeps the reference
    classifiers trained here, keyed by everything they depend on, so runs that differ only in the synthetic
    protocol (filter, weight, amount, fine-tuning) train each one once. Keyword ``overrides`` change fields of
    ``config`` (e.g. ``epochs=5``). Returns a JSON-ready dict with the test metrics (``acsa``,
    ``macro_f1``, ``accuracy``, ``auc_ovr_macro``, per-class ``recall_per_class``/``f1_per_class``,
    ``confusion_matrix``, ``tail_recall``) and the run record (counts, steps, selected step, timings).
    ``keep_model(model)`` receives the selected classifier (e.g. to save it for ``tailgan explain``).
    """
    cfg = config or ClassifyConfig()
    if overrides:
        unknown = sorted(set(overrides) - set(asdict(cfg)))
        if unknown:
            raise TailganError(f"unknown classifier setting {unknown[0]!r}; valid: {', '.join(asdict(cfg))}")
        cfg = ClassifyConfig(**{**asdict(cfg), **overrides})
    cfg.check()
    strat = parse_strategy(strategy, beta=cfg.beta)
    _warn_unused(strat, generator, synthetic_dir, cfg)
    if len(data.test) == 0:
        raise TailganError("the dataset has no test split to score on; use a source with a test split")
    if strat.transfer:
        return _train_and_score_transfer(data, strat.name, seed, cfg, device, log)
    t0 = time.perf_counter()
    fraction, split_seed = cfg.valid_fraction, seed if cfg.split_seed is None else cfg.split_seed
    run_split = _generator_split(generator) if strat.synthetic == "gan" else None
    if run_split is not None and cfg.split_seed is None:
        # the generator held out a validation split: select on exactly that one, so it never saw it
        fraction, split_seed = run_split["fraction"], run_split["seed"]
    real, valid, split = carve_validation(data, fraction, split_seed)
    if strat.synthetic == "gan":
        check_generator_split(generator, split, log)
    if cfg.select == "valid" and len(valid) == 0:
        raise TailganError(
            "no class has two training images, so no validation split can be carved for model selection; "
            "use select='last' (--select last)"
        )
    steps = resolve_steps(cfg, len(real))
    if strat.joint is not None:
        # a CycleGAN between the two classes trained with the classifier (tailgan.classify.joint)
        loss_fn = StrategyLoss(parse_strategy("vanilla"), real.counts(), cfg)

        def valid_acsa(model: nn.Module) -> float:
            probs = predict_proba(model, valid.images, loss_fn, None, device, cfg.eval_batch_size)
            return balanced_acsa(valid.labels, probs.argmax(1), data.num_classes)

        eval_at = set(np.linspace(0, steps, cfg.evals + 1).round().astype(int)[1:].tolist()) | {steps}
        model, record = train_joint(
            real, valid, strat.name, cfg, steps, seed, data, device,
            evaluate=valid_acsa if cfg.select == "valid" else None, eval_at=eval_at, lr_factor=_lr_factor, log=log,
        )  # fmt: skip
        record["train_seconds"] = round(time.perf_counter() - t0, 2)
        info = {"real_counts": real.counts(), "train_counts": real.counts(), "synthetic": "translated in every batch"}
        priors = None
    else:
        if strat.synthetic and reference is None and (cfg.guard or cfg.filter is not None):
            key = _reference_key(cfg, real, split, steps, seed, device)
            reference = (references or {}).get(key)
            if reference is None:
                log(f"training the reference classifier ({cfg.reference}) on the real training images ...")
                reference = train_reference(real, valid, cfg, steps, seed, device)
                if references is not None:
                    references[key] = reference
        images, labels, synthetic, info = build_training_set(
            real, strat, cfg, seed, generator, synthetic_dir, reference=reference, log=log
        )
        counts: list[float] = [float(n) for n in info["train_counts"]]
        weights = None
        if bool(synthetic.any()) and cfg.synthetic_weight != 1.0:
            weights = torch.where(synthetic, cfg.synthetic_weight, 1.0)
            syn = torch.bincount(labels[synthetic], minlength=data.num_classes).double()
            real_n = torch.bincount(labels[~synthetic], minlength=data.num_classes).double()
            counts = (real_n + cfg.synthetic_weight * syn).tolist()
            info["effective_counts"] = counts
        two_stage = cfg.finetune != "none"
        if two_stage and not strat.synthetic:
            raise TailganError(
                f"--finetune fine-tunes on real images after training with synthetic ones; strategy {strat.name!r} "
                "has none: use it with gan, gan+S, folder or folder+S"
            )
        steps2 = max(1, round(cfg.finetune_fraction * steps)) if two_stage else 0
        if two_stage and steps - steps2 < 1:
            raise TailganError(
                f"{steps} steps leave none for the first stage; give more steps or a lower finetune_fraction"
            )
        priors, taus = _prediction_rule(strat, counts, cfg)
        model, loss_fn, record = train_classifier(
            images, labels, valid, strat, cfg, data.num_classes, steps - steps2, seed, device, priors,
            taus=taus, counts=counts, sample_weights=weights,
        )
        if two_stage:
            # stage 2: real images only, from the selected stage-1 network; the prior is the real data's
            priors, taus = _prediction_rule(strat, real.counts(), cfg)
            stage1 = record
            model, loss_fn, record = train_classifier(
                real.images, real.labels, valid, strat, cfg, data.num_classes, steps2, seed + 1, device, priors,
                taus=taus, model=model, head_only=cfg.finetune == "head",
                lr=cfg.finetune_lr if cfg.finetune_lr is not None else cfg.lr / 10,
            )
            record = {**record, "steps": steps, "stage1": stage1, "finetune_steps": steps2}
    if keep_model is not None:
        keep_model(model)
    probs = predict_proba(model, data.test.images, loss_fn, priors, device, cfg.eval_batch_size, record["tau"] or 0.0)
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
        "valid_split": split,
        **record,
        "seconds": round(time.perf_counter() - t0, 2),
        "config": asdict(cfg),
    }


def _train_and_score_transfer(
    data: LongTailedData, strategy: str, seed: int, cfg: ClassifyConfig, device: Any, log: Callable[[str], None]
) -> dict:
    """The DFG family's rows through tailgan.classify.transfer, with this config's budget and split."""
    if strategy != "original" and not cfg.source:
        raise TailganError(
            f"strategy {strategy} transfers from a source network: give --source (a weights file, or a dataset "
            "to pre-train it on, e.g. --source mnist)"
        )
    source = None
    if strategy != "original":
        root = cfg.source_root or data.config.root
        source = resolve_source(cfg.source, root=root, channels=data.train.images.shape[1], fit=data.config.fit,
                                device=device, log=log)  # fmt: skip
    out = Path(cfg.transfer_dir) / f"{strategy}_seed{seed}" if cfg.transfer_dir and strategy == "dfg" else None
    steps = cfg.steps if cfg.steps is not None else TransferConfig.steps
    result = train_and_score_transfer(
        data, strategy, seed, source=source, out=out, device=device, log=log, steps=steps,
        batch_size=cfg.batch_size, valid_fraction=cfg.valid_fraction, split_seed=cfg.split_seed,
    )  # fmt: skip
    result.setdefault("strategy", strategy)
    result.setdefault("seed", seed)
    return result


def _generator_split(generator: Any) -> dict | None:
    """The validation split a generator's run held out (``generator.valid_split``), or None."""
    split = getattr(generator, "valid_split", None)
    if split is None:
        return None
    if not isinstance(split, dict) or not {"fraction", "seed", "fingerprint"} <= set(split):
        raise TailganError(f"the generator's valid_split {split!r} needs fraction, seed and fingerprint")
    return split


def check_generator_split(generator: Any, split: dict, log: Callable[[str], None] = print) -> None:
    """Check that a generator never saw the classifier's validation images.

    A generator whose run held out a validation split exposes it as ``generator.valid_split`` (the record
    of :func:`tailgan.data.splits.carve_validation`); it must be the classifier's split (same fingerprint).
    A run without one was trained on the whole training split: the classifier's validation ACSA (and so
    its model selection) is then optimistic, which is said loudly but allowed.
    """
    if split.get("source") == "dataset":
        return  # the dataset's own validation split is not part of the training split a generator learns from
    run_split = _generator_split(generator)
    run = getattr(generator, "run_dir", "the generator's run")
    if run_split is None:
        msg = (
            f"WARNING: {run} was trained on the whole training split, including the classifier's validation "
            "images, so the validation scores of this strategy are optimistic; train the generator with the "
            "same held-out validation split"
        )
        log(msg)
        warnings.warn(msg, stacklevel=3)
        return
    if split.get("fingerprint") != run_split["fingerprint"]:
        raise TailganError(
            f"{run} held out a different validation split (fraction {run_split['fraction']}, seed "
            f"{run_split['seed']}) than this classifier (fraction {split.get('fraction')}, seed {split.get('seed')}): "
            "its generator has seen validation images. Leave --split-seed unset (the run's split is then used) "
            f"or pass --split-seed {run_split['seed']} --valid-fraction {run_split['fraction']}"
        )


def _warn_unused(strategy: Strategy, generator: Any, synthetic_dir: Any, cfg: ClassifyConfig) -> None:
    if generator is not None and strategy.synthetic != "gan":
        warnings.warn(f"--generator is ignored by strategy {strategy.name!r} (only 'gan' uses it)", stacklevel=3)
    if synthetic_dir is not None and strategy.synthetic != "folder":
        warnings.warn(f"--synthetic-dir is ignored by strategy {strategy.name!r} (only 'folder' uses it)", stacklevel=3)
    if strategy.synthetic is None and cfg.filter is not None:
        warnings.warn(f"--filter is ignored by strategy {strategy.name!r} (no synthetic images)", stacklevel=3)
