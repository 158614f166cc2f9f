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
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tailgan.baselines.joint import train_joint
from tailgan.baselines.transfer import TransferConfig, fit_transfer, resolve_source, source_meta
from tailgan.classify.config import SECOND_STAGE_FIELDS, SYNTHETIC_FIELDS, ClassifyConfig, validated
from tailgan.classify.decoupled import STAGES, HeadTask
from tailgan.classify.parts import LOSSES, RULES, SAMPLERS
from tailgan.classify.strategies import Strategy, parse_strategy, prior_adjust
from tailgan.classify.synthetic import SOURCES
from tailgan.data import BatchStream, ImageSet, LongTailedData, to_float
from tailgan.data.splits import carve_validation, split_validation
from tailgan.data.transforms import BatchAugment, cmo, cutmix, flips_by_default, mixed_loss, mixup
from tailgan.engine.fit import eval_steps, fit, warmup_cosine
from tailgan.errors import TailganError
from tailgan.nets.classifiers import build_classifier, init_prior_bias
from tailgan.nets.inference import predict
from tailgan.nets.precision import compile_decision
from tailgan.registry import Registry
from tailgan.scores import balanced_accuracy, score_test_set, tail_classes  # noqa: F401  (tail_classes: re-exported)
from tailgan.synthesis.images import check_recognition, filter_synthetic, generate_synthetic, recognition_rates

__all__ = [
    "TRAINERS",
    "ClassifyConfig",
    "Run",
    "StrategyLoss",
    "Trained",
    "build_training_set",
    "init_model",
    "predict_proba",
    "resolve_steps",
    "split_validation",  # re-exported from tailgan.data.splits
    "tail_classes",
    "train_and_score",
    "train_classifier",
    "train_reference",
    "trainer_kind",
]


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
    if strategy.synthetic is not None:
        syn_x, syn_y, record = SOURCES.get(strategy.synthetic)(real, cfg, seed, generator, synthetic_dir, reference)
        info.update(record)
        syn_x, syn_y = _judged(syn_x, syn_y, real, strategy, cfg, seed, generator, reference, info, log)
        info["synthetic_counts"] = torch.bincount(syn_y, minlength=real.num_classes).tolist()
        images, labels = torch.cat([images, syn_x]), torch.cat([labels, syn_y])
    synthetic = torch.zeros(len(labels), dtype=torch.bool)
    synthetic[len(real) :] = True
    images, labels, synthetic = SAMPLERS.get(strategy.sampler)(images, labels, synthetic, cfg, seed)
    info["train_counts"] = torch.bincount(labels, minlength=real.num_classes).tolist()
    return images, labels, synthetic, info


def _judged(
    syn_x: torch.Tensor, syn_y: torch.Tensor, real: ImageSet, strategy: Strategy, cfg: ClassifyConfig, seed: int,
    generator: Any, reference: nn.Module | None, info: dict, log: Callable[[str], None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The guard (how often ``reference`` recognises the synthetic images) and the filter (``cfg.filter``);
    their records are added to ``info``."""  # fmt: skip
    if reference is not None and len(syn_y) and cfg.guard:
        rates = recognition_rates(syn_x, syn_y, reference, cfg.eval_batch_size)
        info["recognition_rate"] = rates
        info["recognition_mean"] = check_recognition(rates, real.classes, cfg.guard_warn, cfg.guard_refuse, log=log)
    if cfg.filter is None:
        return syn_x, syn_y
    if reference is None:
        raise TailganError("the synthetic-image filter needs a reference classifier trained on the real data")
    syn_x, syn_y, info["filter_acceptance"] = _filtered(
        syn_x, syn_y, reference, cfg, generator if strategy.synthetic == "gan" else None, info, seed
    )
    rates = ", ".join("-" if a is None else f"{a:.2f}" for a in info["filter_acceptance"])
    log(f"filter (p >= {cfg.filter:g}): kept {len(syn_y)} of {info['synthetic_scored']} synthetic images; "
        f"acceptance per class: {rates}")  # fmt: skip
    return syn_x, syn_y


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
        self.loss = LOSSES.get(strategy.loss)(self.counts, cfg, strategy)  # tailgan.classify.parts

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, progress: float, sample_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.loss(logits, labels, progress, sample_weight)

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
    with), so it can be handed to :func:`tailgan.synthesis.images.filter_synthetic`.
    """

    def __init__(self, model: nn.Module, loss: StrategyLoss, priors: torch.Tensor | None = None, tau: float = 0.0):
        super().__init__()
        self.model, self.loss, self.priors, self.tau = model, loss, priors, tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.loss.probabilities(self.model(x).float())
        if self.priors is not None:
            p = prior_adjust(p, self.priors.to(p.device), self.tau)
        return torch.log(p.clamp_min(1e-30))


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
    if len(images) == 0:
        return torch.zeros(0, len(loss.counts))
    probs = loss.probabilities(predict(model, images, device, batch_size))
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


def _best_tau(
    probs: torch.Tensor, labels: torch.Tensor, priors: torch.Tensor | None, taus: Sequence[float]
) -> tuple[float, float | None]:
    """(validation ACSA, tau) of the best prior exponent; ties go to the first tau of the grid."""
    if priors is None:
        return balanced_accuracy(labels, probs.argmax(1)), None
    best = (-1.0, None)
    for tau in taus:
        acsa = balanced_accuracy(labels, prior_adjust(probs, priors, tau).argmax(1))
        if acsa > best[0]:
            best = (acsa, float(tau))
    return best


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
    synthetic: torch.Tensor | None = None,
) -> tuple[nn.Module, StrategyLoss, dict]:
    """Train on uint8 ``images``/``labels`` for ``steps`` (:func:`tailgan.engine.fit.fit`), keeping the state with
    the best validation ACSA. ``priors`` (C,) are divided out at prediction to the power tau, the best of ``taus``
    on validation (``(1.0,)``: TS). ``counts``: what the loss corrects for (default: ``labels``'); ``sample_weights``
    (N,): per-image loss weights; ``model``: fine-tune a copy of it, kept unless a fine-tuned state beats it on
    validation (``head_only``: only ``fc`` trains); ``lr``, ``precision``: default ``cfg``'s; ``synthetic`` (N,)
    marks synthetic images (not augmented when ``cfg.augment_synthetic`` is False).

    Returns the model (eval mode), the loss (it also gives probabilities) and the record (``tau``: the exponent
    to predict with, None without priors)."""
    counts = torch.bincount(labels, minlength=num_classes).tolist() if counts is None else list(counts)
    loss_fn, start = StrategyLoss(strategy, counts, cfg), model
    model = init_model(strategy, cfg, num_classes, images.shape[1], seed) if start is None else copy.deepcopy(model)
    compiled, note = resolve_compile(cfg.compile, cfg.arch, steps, torch.device(device))
    if note:
        print(note, flush=True)
    opt = _optimizer(model.to(device), strategy, cfg, cfg.lr if lr is None else lr, head_only)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, cfg.warmup))
    batch = _batches(images, labels, strategy, cfg, seed, device, sample_weights, synthetic)

    def evaluate(net: nn.Module) -> dict:
        probs = predict_proba(net, valid.images, loss_fn, None, device, cfg.eval_batch_size)
        acsa, tau = _best_tau(probs, valid.labels, priors, taus)
        return {"valid_acsa": acsa, "tau": tau}

    model, record = fit(
        model, batch, _mixing_loss(loss_fn), opt, steps, scheduler=sched, device=device,
        precision=cfg.precision if precision is None else precision, compile=compiled, head="fc" if head_only else None,
        evaluate=evaluate if cfg.select == "valid" else None, eval_at=eval_steps(steps, cfg.evals),
        keep_start=start is not None, name=strategy.name,
    )  # fmt: skip
    best = record.pop("best")
    if best is not None:
        record.update(valid_acsa=best["valid_acsa"], tau=best["tau"])
    else:  # no validation: a fixed exponent (the first of the grid that is 1, i.e. TS, else the first)
        record.update(valid_acsa=None, tau=None if priors is None else (1.0 if 1.0 in taus else float(taus[0])))
    return model, loss_fn, record


def _batches(
    images: torch.Tensor, labels: torch.Tensor, strategy: Strategy, cfg: ClassifyConfig, seed: int, device: Any,
    sample_weights: torch.Tensor | None, synthetic: torch.Tensor | None,
) -> Callable[[int], tuple]:  # fmt: skip
    """The training batches: drawn, augmented (``cfg.augment``; synthetic images only if ``augment_synthetic``) and
    mixed (``strategy.mix``: labels then are ``(y_a, y_b, lam)``); validation and test images never come here."""
    stream = BatchStream(labels, min(cfg.batch_size, len(labels)), seed=seed)
    augment = BatchAugment(cfg.augment, flip=cfg.flip != "off", seed=seed)
    as_is = None if synthetic is None or cfg.augment_synthetic else synthetic
    # CMO's second stream: images drawn with weights 1 / n_c (class-balanced), its boxes pasted into the first
    minority = BatchStream(labels, min(cfg.batch_size, len(labels)), balanced=True, seed=seed + 1)
    mixer = torch.Generator().manual_seed(seed + 2)

    def augmented(idx: torch.Tensor) -> torch.Tensor:
        x = to_float(images[idx]).to(device)
        if as_is is None:
            return augment(x)
        return torch.where(as_is[idx].to(device)[:, None, None, None], x, augment(x))

    def batch(step: int) -> tuple:
        idx = stream.next()
        x, y = augmented(idx), labels[idx].to(device)
        w = None if sample_weights is None else sample_weights[idx].to(device)
        if strategy.mix == "none":
            return x, y, w
        if strategy.mix == "cmo":
            if float(torch.rand(1, generator=mixer)) >= cfg.mix_prob:  # an unmixed batch needs no second stream
                return x, y, w
            idx2 = minority.next()[: len(idx)]
            x, y_a, y_b, lam = cmo(x, y, augmented(idx2), labels[idx2].to(device), mixer, cfg.mix_alpha, prob=1.0)
        else:
            x, y_a, y_b, lam = (mixup if strategy.mix == "mixup" else cutmix)(x, y, cfg.mix_alpha, mixer)
        return x, (y_a, y_b, lam), w

    return batch


def _mixing_loss(loss_fn: StrategyLoss) -> Callable[..., torch.Tensor]:
    """The strategy's loss as the supervised loop calls it; a mixed batch's labels ``(y_a, y_b, lam)`` give
    ``lam L(y_a) + (1 - lam) L(y_b)`` (the sample weights are those of the instance-sampled images)."""

    def loss(forward: Callable, x: torch.Tensor, y: Any, w: Any, progress: float) -> torch.Tensor:
        logits = forward(x)
        if isinstance(y, tuple):
            y_a, y_b, lam = y
            return mixed_loss(lambda t: loss_fn(logits, t, progress, w), y_a, y_b, lam)
        return loss_fn(logits, y, progress, w)

    return loss


def resolve_steps(cfg: ClassifyConfig, n_real_train: int) -> int:
    """Optimizer steps: ``cfg.steps``, else ``cfg.epochs`` passes over the real training part (at least
    ``cfg.min_steps``)."""
    if cfg.steps is not None:
        return int(cfg.steps)
    return max(cfg.min_steps, math.ceil(cfg.epochs * n_real_train / cfg.batch_size))


def _prediction_rule(
    strategy: Strategy, counts: Sequence[float], cfg: ClassifyConfig
) -> tuple[torch.Tensor | None, tuple[float, ...]]:
    """(priors, candidate tau) of a strategy's prediction rule (``tailgan.classify.parts.RULES``)."""
    return RULES.get(strategy.adjust)(counts, cfg)


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


@dataclass
class Run:
    """One seed of one strategy: what every trainer kind reads."""

    data: LongTailedData
    strategy: Strategy
    seed: int
    cfg: ClassifyConfig
    device: Any = "cpu"
    log: Callable[[str], None] = print
    generator: Any = None
    synthetic_dir: str | Path | None = None
    reference: nn.Module | None = None
    references: dict | None = None
    backbones: dict | None = None  # trained backbones of second stages, shared by rows on the same one


@dataclass
class Trained:
    """What a trainer kind hands back to be scored on the test set."""

    probs: Callable[[torch.Tensor], torch.Tensor]  # uint8 images -> class probabilities (the prediction rule's)
    model: nn.Module | None  # the selected network (for ``keep_model``), None where there is no single one
    record: dict  # steps, selected step, validation score, history, ...
    real_counts: list[int]  # the real training part's counts (which classes are the tail)
    info: dict  # counts, synthetic-image records, the validation split


# a trainer kind: Run -> Trained (plain, two-stage, joint, transfer); ``trainer_kind`` picks one
TRAINERS: Registry[Callable[[Run], Trained]] = Registry("trainer")


def trainer_kind(strategy: Strategy, cfg: ClassifyConfig) -> str:
    if strategy.stage != "none":
        return "decoupled"
    if strategy.transfer:
        return "transfer"
    if strategy.joint is not None:
        return "joint"
    return "plain" if cfg.finetune == "none" else "two-stage"


def _split(run: Run) -> tuple[ImageSet, ImageSet, dict, int]:
    """(real training part, validation part, split record, steps): the generator's held-out split for ``gan``."""
    cfg, strat = run.cfg, run.strategy
    fraction, split_seed = cfg.valid_fraction, run.seed if cfg.split_seed is None else cfg.split_seed
    run_split = _generator_split(run.generator) if strat.synthetic == "gan" else None
    if run_split is not None and cfg.split_seed is None:
        # the generator held out a validation split: select on exactly that one, so it never saw it
        fraction, split_seed = run_split["fraction"], run_split["seed"]
    real, valid, split = carve_validation(run.data, fraction, split_seed)
    if strat.synthetic == "gan":
        check_generator_split(run.generator, split, run.log)
    if cfg.select == "valid" and len(valid) == 0:
        raise TailganError(
            "no class has two training images, so no validation split can be carved for model selection; "
            "use select='last' (--select last)"
        )
    return real, valid, split, resolve_steps(cfg, len(real))


def _reference(run: Run, real: ImageSet, valid: ImageSet, split: dict, steps: int) -> nn.Module | None:
    """The classifier that judges synthetic images (guard, filter) and that M2m translates with, trained once per
    key in ``run.references``."""
    cfg, source = run.cfg, run.strategy.synthetic
    if not source or run.reference is not None or not (cfg.guard or cfg.filter is not None or source == "m2m"):
        return run.reference
    key = _reference_key(cfg, real, split, steps, run.seed, run.device)
    reference = (run.references or {}).get(key)
    if reference is None:
        run.log(f"training the reference classifier ({cfg.reference}) on the real training images ...")
        reference = train_reference(real, valid, cfg, steps, run.seed, run.device)
        if run.references is not None:
            run.references[key] = reference
    return reference


def _first_stage(run: Run, real: ImageSet, valid: ImageSet, split: dict, steps: int, stage_steps: int) -> tuple:
    """Training set -> loss counts and sample weights -> train: (model, loss, priors, record, info)."""
    cfg, strat, k = run.cfg, run.strategy, run.data.num_classes
    images, labels, synthetic, info = build_training_set(
        real, strat, cfg, run.seed, run.generator, run.synthetic_dir, _reference(run, real, valid, split, steps),
        run.log,
    )  # fmt: skip
    counts: list[float] = [float(n) for n in info["train_counts"]]
    weights = None
    if bool(synthetic.any()) and cfg.synthetic_weight != 1.0:
        weights = torch.where(synthetic, cfg.synthetic_weight, 1.0)
        syn = torch.bincount(labels[synthetic], minlength=k).double()
        counts = (torch.bincount(labels[~synthetic], minlength=k).double() + cfg.synthetic_weight * syn).tolist()
        info["effective_counts"] = counts
    priors, taus = _prediction_rule(strat, counts, cfg)
    model, loss_fn, record = train_classifier(
        images, labels, valid, strat, cfg, k, stage_steps, run.seed, run.device, priors, taus=taus, counts=counts,
        sample_weights=weights, synthetic=synthetic,
    )  # fmt: skip
    return model, loss_fn, priors, record, {**info, "valid_counts": valid.counts(), "valid_split": split}


def _trained(run: Run, model: nn.Module, loss_fn: StrategyLoss, priors: Any, record: dict, real: ImageSet,
             info: dict) -> Trained:  # fmt: skip
    tau, bs = record["tau"] or 0.0, run.cfg.eval_batch_size
    probs = lambda images: predict_proba(model, images, loss_fn, priors, run.device, bs, tau)  # noqa: E731
    return Trained(probs, model, record, real.counts(), info)


@TRAINERS.register("plain")
def _plain(run: Run) -> Trained:
    real, valid, split, steps = _split(run)
    model, loss_fn, priors, record, info = _first_stage(run, real, valid, split, steps, steps)
    if run.backbones is not None and run.strategy.synthetic is None:  # a second stage may start from this one
        run.backbones[_backbone_key(run, split, steps)] = (model, record, info)
    return _trained(run, model, loss_fn, priors, record, real, info)


@TRAINERS.register("two-stage")
def _two_stage(run: Run) -> Trained:
    """Real + synthetic images, then fine-tuning on the real ones only (``cfg.finetune``: all layers or the head),
    which keeps the stage-1 network unless a fine-tuned one beats it on validation."""
    cfg, strat = run.cfg, run.strategy
    if not strat.synthetic:
        raise TailganError(
            f"--finetune fine-tunes on real images after training with synthetic ones; strategy {strat.name!r} "
            "has none: use it with gan, gan+S, folder or folder+S"
        )
    real, valid, split, steps = _split(run)
    steps2 = max(1, round(cfg.finetune_fraction * steps))
    if steps - steps2 < 1:
        raise TailganError(f"{steps} steps leave none for stage 1; give more steps or a lower finetune_fraction")
    model, _, _, stage1, info = _first_stage(run, real, valid, split, steps, steps - steps2)
    priors, taus = _prediction_rule(strat, real.counts(), cfg)  # stage 2 sees real images: their prior
    model, loss_fn, record = train_classifier(
        real.images, real.labels, valid, strat, cfg, run.data.num_classes, steps2, run.seed + 1, run.device, priors,
        taus=taus, model=model, head_only=cfg.finetune == "head",
        lr=cfg.finetune_lr if cfg.finetune_lr is not None else cfg.lr / 10,
    )  # fmt: skip
    # selected_step 0: no stage-2 network beat stage 1 on validation, so stage 1's is kept
    record = {**record, "steps": steps, "stage1": stage1, "finetune_steps": steps2,
              "stage": 1 if record["selected_step"] == 0 else 2}  # fmt: skip
    return _trained(run, model, loss_fn, priors, record, real, info)


def _backbone_key(run: Run, split: dict, steps: int) -> str:
    """What a trained network depends on when a second stage starts from it (a plain row of the same key is it)."""
    fields = {k: v for k, v in asdict(run.cfg).items() if k not in SECOND_STAGE_FIELDS}
    return json.dumps([run.strategy.name, run.strategy.beta, fields, split, steps, run.seed, str(run.device)],
                      sort_keys=True, default=str)  # fmt: skip


def _backbone(run: Run, real: ImageSet, valid: ImageSet, split: dict, steps: int) -> tuple[nn.Module, dict, dict]:
    """The network a second stage starts from (``strategy.backbone`` trained as a plain row of the same budget),
    trained once per key in ``run.backbones``: (model, record, info)."""
    back = replace(run, strategy=run.strategy.backbone, generator=None, synthetic_dir=None)
    key = _backbone_key(back, split, steps)
    if run.backbones is not None and key in run.backbones:
        run.log(f"backbone {back.strategy.name} (seed {run.seed}): trained already, re-used")
        return run.backbones[key]
    model, _, _, record, info = _first_stage(back, real, valid, split, steps, steps)
    if run.backbones is not None:
        run.backbones[key] = (model, record, info)
    return model, record, info


@TRAINERS.register("decoupled")
def _decoupled(run: Run) -> Trained:
    """A backbone (the strategy without its stage) -> the penultimate features of the real training and validation
    parts (and of synthetic images, for gan / folder sources) -> a second stage (``decoupled.STAGES``) -> the
    backbone with its new head. The step budget is the backbone's; the head's steps are listed beside it."""
    cfg, strat, bs = run.cfg, run.strategy, run.cfg.eval_batch_size
    real, valid, split, steps = _split(run)
    model, record, info = _backbone(run, real, valid, split, steps)
    body = copy.deepcopy(model)
    fc, body.fc = body.fc, nn.Identity()
    features = lambda images: predict(body, images, run.device, bs)  # noqa: E731
    extra_z = extra_y = None
    if strat.synthetic:
        source = Strategy(strat.name, synthetic=strat.synthetic)
        images, labels, synthetic, syn_info = build_training_set(
            real, source, cfg, run.seed, run.generator, run.synthetic_dir,
            _reference(run, real, valid, split, steps), run.log,
        )  # fmt: skip
        extra_z, extra_y = features(images[synthetic]), labels[synthetic]
        info = {**info, **{k: v for k, v in syn_info.items() if k != "train_counts"}}
    task = HeadTask(fc, features(real.images), real.labels, features(valid.images), valid.labels, cfg, run.seed,
                    run.device, run.log, extra_z, extra_y)  # fmt: skip
    head, stage = STAGES.get(strat.stage)(task)
    body.fc = head.to(run.device)
    record = {**record, "backbone": strat.backbone.name, "backbone_valid_acsa": record.get("valid_acsa"),
              "valid_acsa": stage.get("valid_acsa"), "second_stage": {"kind": strat.stage, **stage}}  # fmt: skip
    probs = lambda images: torch.softmax(predict(body, images, run.device, bs), 1)  # noqa: E731
    return Trained(probs, body, record, real.counts(), info)


@TRAINERS.register("joint")
def _joint(run: Run) -> Trained:
    """A translator trained with the classifier (tailgan.baselines.joint); predictions: the softmax."""
    cfg, device, bs = run.cfg, run.device, run.cfg.eval_batch_size
    real, valid, split, steps = _split(run)

    def valid_acsa(model: nn.Module) -> float:
        return balanced_accuracy(valid.labels, predict(model, valid.images, device, bs).argmax(1))

    model, record = train_joint(
        real, valid, run.strategy.name, cfg, steps, run.seed, run.data, device,
        evaluate=valid_acsa if cfg.select == "valid" else None, eval_at=eval_steps(steps, cfg.evals),
        lr_factor=warmup_cosine, log=run.log,
    )  # fmt: skip
    info = {"real_counts": real.counts(), "train_counts": real.counts(), "synthetic": "translated in every batch",
            "valid_counts": valid.counts(), "valid_split": split}  # fmt: skip
    probs = lambda images: torch.softmax(predict(model, images, device, bs), 1)  # noqa: E731
    return Trained(probs, model, record, real.counts(), info)


@TRAINERS.register("transfer")
def _transfer(run: Run) -> Trained:
    """The DFG family's rows (tailgan.baselines.transfer), with this config's budget, batch and split."""
    cfg, data, strategy = run.cfg, run.data, run.strategy.name
    if strategy != "original" and not cfg.source:
        raise TailganError(
            f"strategy {strategy} transfers from a source network: give --source (a weights file, or a dataset "
            "to pre-train it on, e.g. --source mnist)"
        )
    source = None
    if strategy != "original":
        root, channels = cfg.source_root or data.config.root, data.train.images.shape[1]
        source = resolve_source(cfg.source, root=root, channels=channels, fit=data.config.fit, device=run.device,
                                log=run.log)  # fmt: skip
    out = Path(cfg.transfer_dir) / f"{strategy}_seed{run.seed}" if cfg.transfer_dir and strategy == "dfg" else None
    steps = cfg.steps if cfg.steps is not None else TransferConfig.steps
    tcfg = TransferConfig(steps=steps, batch_size=cfg.batch_size, valid_fraction=cfg.valid_fraction,
                          split_seed=cfg.split_seed)  # fmt: skip
    net, record, carved, split = fit_transfer(data, strategy, run.seed, tcfg, source, out, run.device)
    probs = lambda images: torch.softmax(predict(net, images, run.device, tcfg.eval_batch_size), 1)  # noqa: E731
    info = {"train_counts": carved.train.counts(), "valid_counts": carved.valid.counts(), "valid_split": split,
            "source": None if source is None else {"path": str(source), **source_meta(source)},
            "transfer_config": asdict(tcfg)}  # fmt: skip
    return Trained(probs, None, record, carved.train.counts(), info)


def train_and_score(
    data: LongTailedData,
    strategy: str | Strategy,
    seed: int = 0,
    config: ClassifyConfig | None = None,
    *,
    generator: Any = None,
    synthetic_dir: str | Path | None = None,
    reference: nn.Module | None = None,
    references: dict | None = None,
    backbones: dict | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    keep_model: Callable[[nn.Module], None] | None = None,
    **overrides: Any,
) -> dict:
    """Train one classifier with ``strategy`` (a name, or one :func:`parse_strategy` already parsed) on
    ``data.train`` and score it on ``data.test`` (real images): split -> training set -> fit (the strategy's
    trainer kind, ``TRAINERS``) -> score.

    ``generator`` is a loaded tailgan generator (``load_generator``) for the ``gan`` strategies;
    ``synthetic_dir`` a folder of synthetic images for ``folder``. With synthetic images and the guard
    or the filter on, a reference classifier is trained on the real training part (or ``reference`` is
    used: a classifier of float images returning logits). ``references`` is a dict that keeps the reference
    classifiers trained here, keyed by everything they depend on, so runs that differ only in the synthetic
    protocol (filter, weight, amount, fine-tuning) train each one once; ``backbones`` does the same for the networks
    second stages (crt, tau-norm, lws, feat-*) start from. Keyword ``overrides`` change fields of
    ``config`` (e.g. ``epochs=5``). Returns a JSON-ready dict with the test metrics (``acsa``,
    ``macro_f1``, ``accuracy``, ``auc_ovr_macro``, per-class ``recall_per_class``/``f1_per_class``,
    ``confusion_matrix``, ``tail_recall``) and the run record (counts, steps, selected step, timings).
    ``keep_model(model)`` receives the selected classifier (e.g. to save it for ``tailgan explain``).
    """
    cfg = config or ClassifyConfig()
    unknown = sorted(set(overrides) - {f.name for f in fields(ClassifyConfig)})
    if unknown:
        raise TailganError(f"unknown classifier setting {unknown[0]!r}; valid: {', '.join(asdict(ClassifyConfig()))}")
    cfg = asked = validated(replace(cfg, **overrides))
    if cfg.flip == "auto":  # the source knows whether its classes survive a mirror
        cfg = replace(cfg, flip="on" if flips_by_default(data.config.source) else "off")
    strat = strategy if isinstance(strategy, Strategy) else parse_strategy(strategy, beta=cfg.beta)
    _warn_unused(strat, generator, synthetic_dir, cfg)
    if len(data.test) == 0:
        raise TailganError("the dataset has no test split to score on; use a source with a test split")
    t0 = time.perf_counter()
    run = Run(data, strat, seed, cfg, device, log, generator, synthetic_dir, reference, references, backbones)
    trained = TRAINERS.get(trainer_kind(strat, cfg))(run)
    if keep_model is not None and trained.model is not None:
        keep_model(trained.model)
    metrics = score_test_set(data.test.labels, trained.probs(data.test.images), data.num_classes, trained.real_counts)
    return {"strategy": strat.name, "seed": seed, **metrics, **trained.info, **trained.record,
            "seconds": round(time.perf_counter() - t0, 2), "config": asdict(asked)}  # fmt: skip


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
    if strategy.stage != "none" and cfg.finetune != "none":
        warnings.warn(f"--finetune is ignored by strategy {strategy.name!r}: its {strategy.stage} stage re-learns the "
                      "head on the backbone's features instead", stacklevel=3)  # fmt: skip
