"""The classify config: typed fields with their valid ranges beside them (``bounded``, ``Literal``).

:class:`ClassifyConfig` holds the training settings every strategy shares; :class:`RunFields` adds what a
``tailgan classify`` / ``tailgan bench classify`` output ran (strategies, seeds, generators), and
:class:`tailgan.classify.runconfig.ClassifyRunConfig` the data section. This module imports no torch, so the
command line can build its flags from these fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from tailgan.config import bounded, from_dict, to_dict
from tailgan.errors import TailganError

TAU_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


@dataclass
class ClassifyConfig:
    """Training settings shared by every strategy (defaults: LeNet-5 at a small CPU budget)."""

    arch: Literal["lenet5", "resnet32", "resnet18"] = "lenet5"
    epochs: float = bounded(20.0, gt=0)  # passes over the real long-tailed training part (same for every strategy)
    # at least this many optimizer steps: a small preset (digits_lt: 4 steps an epoch) still gets a usable budget
    min_steps: int = bounded(300, ge=1)
    steps: int | None = bounded(None, ge=1)  # optimizer steps; overrides epochs and min_steps
    batch_size: int = bounded(128, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = bounded(0.05, gt=0)
    momentum: float = bounded(0.9, ge=0, le=1)
    weight_decay: float = bounded(5e-4, ge=0)
    warmup: float = bounded(0.05, ge=0, le=1)  # fraction of steps with a linear lr ramp, then cosine decay to 0
    valid_fraction: float = bounded(0.1, ge=0, le=0.9)  # of each class, carved from the long-tailed training split
    split_seed: int | None = None  # seed of the validation split; None: the training seed
    evals: int = bounded(10, ge=1)  # validation evaluations spread over training (model selection)
    select: Literal["valid", "last"] = "valid"  # keep the best-on-validation checkpoint, or the last one
    # training-batch augmentation (tailgan.data.transforms; validation and test images never): standard =
    # pad-and-random-crop + horizontal flip where the classes survive a mirror, the long-tail field's recipe
    augment: Literal["none", "standard", "randaugment", "trivialaugment"] = "standard"
    flip: Literal["auto", "on", "off"] = "auto"  # auto: flip unless the source is digits or characters
    augment_synthetic: bool = True  # synthetic images get the real images' augmentation (False: as generated)
    mix_alpha: float = bounded(1.0, gt=0)  # mixup / cutmix / cmo: lambda ~ Beta(alpha, alpha)
    mix_prob: float = bounded(0.5, ge=0, le=1)  # cmo: share of batches mixed (the paper's 0.5)
    # second stage on the backbone's penultimate features (crt, lws, feat-*; tailgan.classify.decoupled)
    head_epochs: float = bounded(10.0, gt=0)  # passes over the (real + generated) training features
    head_lr: float | None = bounded(None, gt=0)  # default: lr
    head_loss: str = "ce"  # the head's loss (a registered loss: ce, la, balanced-softmax, ...)
    head_sampling: Literal["balanced", "instance"] = "balanced"  # class-balanced batches (Kang et al.) or not
    feat_space: Literal["power", "raw"] = "power"  # generate after Tukey's power transform (dense) or as they are
    feat_filter: bool = True  # DiffuLT's prototype filter on generated features
    feat_aid_weight: float = bounded(0.5, ge=0, le=1)  # weight of a feature between 1 and 2 class diameters away
    feat_k: int = bounded(2, ge=1)  # feat-calibrate: nearest larger classes a tail class borrows from
    feat_alpha: float = bounded(0.21, ge=0)  # feat-calibrate: covariance inflation
    # feat-calibrate: share of the borrowed classes' mean in each Gaussian's centre; None: the paper's k / (k + 1),
    # made for few-shot classes whose donors are other (base) classes; in a long-tailed set the donors are the
    # classes the tail competes with, so 0 (centres at the tail's own features, covariance borrowed) is the default
    feat_shift: float | None = bounded(0.0, ge=0, le=1)
    feat_steps: int = bounded(10000, ge=1)  # feat-diffusion: denoiser updates
    feat_guidance: float = bounded(1.0, ge=0)  # feat-diffusion: classifier-free guidance weight
    feat_sampler: Literal["ddim", "dpm"] = "ddim"  # feat-diffusion: diffusers sampler
    feat_sample_steps: int = bounded(50, ge=1)
    feat_cbdm_tau: float = bounded(0.0, ge=0)  # feat-diffusion: CBDM class-balancing regulariser weight (0: off)
    beta: float = bounded(0.9999, ge=0, le=0.999999)  # class-balanced loss beta (a "cbl:beta" name overrides it)
    focal_gamma: float = bounded(1.0, ge=0)
    ldam_max_margin: float = bounded(0.5, gt=0)
    ldam_scale: float = bounded(30.0, gt=0)
    drw_start: float = bounded(0.8, ge=0, le=1)  # fraction of training after which LDAM-DRW and CE-DRW re-weight
    la_tau: float = bounded(1.0, ge=0)  # logit-adjusted loss temperature (Menon et al.)
    tau_grid: tuple[float, ...] = TAU_GRID  # la-posthoc: candidate tau, chosen on the validation split
    smote_k: int = bounded(5, ge=1)
    # synthetic images (gan / folder strategies)
    synthetic: str = "fill"  # how many: fill | ratio:R | target:N[,N1,...] | add:N[,N1,...]
    synthetic_classes: str = "all"  # which classes: all | below:N | a list of class indices "5,7,9"
    synthetic_weight: float = bounded(1.0, ge=0)  # a synthetic image counts as this many images in the loss
    filter: float | None = bounded(None, ge=0, le=1)  # keep a synthetic image if the reference gives p(y) >= this
    filter_rounds: int = bounded(3, ge=1)  # generation rounds to make up for filtered-out images (gan only)
    reference: str = "la"  # strategy of the reference classifier (trained on the real training part only)
    guard: bool = True  # measure how often the reference recognises synthetic images; warn / refuse
    guard_warn: float = bounded(0.5, ge=0, le=1)  # mean recognition rate below which a loud warning is printed
    guard_refuse: float | None = bounded(0.15, ge=0, le=1)  # ... below which the run is refused (None: never)
    finetune: Literal["none", "all", "head"] = "none"  # two-stage: then fine-tune on real images only
    finetune_fraction: float = bounded(0.2, gt=0, le=0.99)  # share of the step budget of the real-only stage
    finetune_lr: float | None = bounded(None, gt=0)  # learning rate of that stage (default: lr / 10)
    eval_batch_size: int = bounded(1000, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast + channels-last where native
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile the network (auto: where measured to pay)
    # cyclegan-aug / cyclegan-alt / stargan-* (tailgan.baselines.joint)
    joint_gan_steps: int = bounded(1000, ge=0)  # translator updates before the classifier trains (alt: warm-up)
    joint_batch_size: int = bounded(16, ge=1)  # real images per class in each translator / classifier update
    # the classifier's batch in a joint strategy: "classifier" = batch_size real images per update and their
    # translations, at lr, as every other strategy sees; "translator" = the translator's batch at a scaled lr
    joint_cls_batch: Literal["classifier", "translator"] = "classifier"
    joint_options: tuple[str, ...] = ()  # more cyclegan-cls overrides, e.g. ("options.ngf=16",)
    joint_grid_dir: str | None = None  # write the trained translator's grid there (<strategy>_seed<N>.png)
    # original / finetune / delta / dfg (tailgan.baselines.transfer)
    source: str | None = None  # a source weights file, or a data spec to pre-train the source on (e.g. mnist)
    source_root: str | None = None  # the source data's folder (default: the target data's root)
    transfer_dir: str | None = None  # where the dfg runs live (<transfer_dir>/dfg_seed<N>; resumed)


# What runs did before a ClassifyConfig field existed, where that differs from the field's default (reports
# written then lack the field; tailgan.classify.bench.config_differences reads them with these values).
BEFORE_FIELD = {"joint_cls_batch": "translator", "min_steps": 1, "augment": "none"}

# the synthetic-data protocol's fields: the reference classifier (trained on real images only) ignores them
SYNTHETIC_FIELDS = ("synthetic", "synthetic_classes", "synthetic_weight", "filter", "filter_rounds", "guard",
                    "guard_warn", "guard_refuse", "finetune", "finetune_fraction", "finetune_lr")  # fmt: skip

# what only a second stage reads (a backbone trained with other values of these is the same backbone)
SECOND_STAGE_FIELDS = SYNTHETIC_FIELDS + tuple(f.name for f in dataclasses.fields(ClassifyConfig)
                                               if f.name.startswith(("head_", "feat_")))  # fmt: skip


@dataclass
class RunFields(ClassifyConfig):
    """The fields of a classify output's config beside the training settings and the data section."""

    command: Literal["classify", "bench classify"] = "classify"
    strategy: str = "all"  # classify: one strategy; bench classify: 'all' or a comma-separated list
    seeds: int = bounded(3, ge=1)  # how many seeds: first_seed .. first_seed + seeds - 1
    first_seed: int = bounded(0, ge=0)
    generator: list[str] = field(default_factory=list)  # gan strategies: [LABEL=]RUN, one per generator
    checkpoint: str = "last"  # generator checkpoint: last, best, a step or a path
    synthetic_dir: str | None = None  # strategy folder: a folder of synthetic images
    pair: list[int] | None = None  # a binary task: classes A and B of the data, relabelled 0 and 1
    pair_counts: list[int] | None = None  # training images kept of A and B (seeded choice)
    pair_seed: int = 0
    device: str = "cpu"


def validated(cfg: ClassifyConfig) -> ClassifyConfig:
    """The training settings of ``cfg`` (a run config's too) checked field by field (types, Literal choices,
    ranges) as a config file is."""
    names = {f.name for f in dataclasses.fields(ClassifyConfig)}
    checked = from_dict(ClassifyConfig, {k: v for k, v in to_dict(cfg).items() if k in names})
    from tailgan.classify.parts import LOSSES

    if checked.head_loss not in LOSSES:
        raise TailganError(
            f"config key 'head_loss': {checked.head_loss!r} is not a loss; use one of {', '.join(LOSSES)}"
        )
    if not checked.tau_grid or any(t < 0 for t in checked.tau_grid):
        raise TailganError(f"config key 'tau_grid': {list(checked.tau_grid)} must hold one or more values >= 0")
    return checked
