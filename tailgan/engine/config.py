"""The training config: typed sections loaded from presets, YAML and ``key=value`` overrides.

Defaults <- method preset <- config file <- ``--data``/``--root`` and other flags <- overrides. The
method's own ``options`` section is validated against its ``Options`` dataclass here, before any data is
loaded, and written back with every default filled in, so ``config.yaml`` holds the whole resolved run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tailgan.config import apply_overrides, bounded, from_dict, load_yaml, merge, missing_key, to_dict
from tailgan.data import DataConfig, resolve_data_config
from tailgan.errors import TailganError
from tailgan.methods import faithful_overrides, get_method, resolve_preset

DEFAULT_RESOLUTION = 32


@dataclass
class ModelConfig:
    arch: Literal["dcgan", "biggan"] = "biggan"
    z_dim: int | None = None  # None: the architecture's default (dcgan 128, biggan 80)
    conv_dim: int | None = None  # width; None: the architecture's default (biggan 96 full, 24 = "div4")
    shared_dim: int = 128  # biggan: shared class embedding (32 for div4)
    embed_dim: int = 512  # proxy / embedding head
    attention: bool = True  # biggan: self-attention at 16x16
    shortcut_after_relu: bool = False  # biggan D: StudioGAN's in-place ReLU feeds relu(x) to the shortcut


@dataclass
class LossConfig:
    adv: Literal["bce", "hinge", "wasserstein"] = "hinge"
    gp_weight: float = bounded(0.0, ge=0)  # gradient penalty weight (0: off)
    gp_alpha: Literal["uniform", "normal"] = "uniform"  # interpolation factor; "normal" is ECOGAN's code
    # the penalty's critic pass under precision=auto's autocast (issue 29: 2,000-step runs of ecogan-dcgan and
    # bagan-gp lie within or beyond their fp32 seeds' spread); false: the fp32 penalty (precision=fp32 is fp32)
    gp_autocast: bool = True
    gp_every: int = bounded(1, ge=1)  # lazy regularisation (StyleGAN2): the penalty every k-th D step, weight x k
    cond_lambda: float = bounded(1.0, ge=0)  # weight of the conditional (contrastive / classification) loss
    temperature: float = bounded(1.0, gt=0)
    m_p: float = bounded(0.98, ge=0, le=1)  # D2D-CE positive margin (m_n = 1 - m_p)
    max_shift: bool = True  # the original code's detached max shifts in ECO / D2D-CE
    gather: bool = True  # under DDP, contrastive losses see every rank's batch
    gather_grad: Literal["sum", "local"] = "sum"  # "local": StudioGAN's per-rank gradient of the gathered loss
    # limited-data regularisers (tailgan.methods.regularized), all off by default
    diffaug: str = ""  # DiffAugment policy, e.g. "color,translation,cutout"
    lecam_weight: float = bounded(0.0, ge=0)
    lecam_decay: float = bounded(0.99, ge=0, le=1)
    gsr_weight: float = bounded(0.0, ge=0)  # biggan only
    gsr_beta: float = bounded(0.99, ge=0, le=1)
    gsr_groups: int | None = bounded(None, ge=1)


@dataclass
class OptimConfig:
    batch_size: int = bounded(64, ge=1)  # per process
    g_lr: float = bounded(2e-4, gt=0)
    d_lr: float = bounded(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    eps: float = bounded(1e-6, gt=0)
    d_steps: int = bounded(5, ge=1)  # D updates per G update


@dataclass
class TrainConfig:
    method: str = "ecogan"
    preset: str | None = None
    faithful: bool = False  # every "original behaviour" option of the method at once (README's tables)
    data: DataConfig = field(default_factory=lambda: resolve_data_config("digits_lt"))
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    options: dict[str, Any] = field(default_factory=dict)  # the method's typed Options, resolved by make_config
    # the classifier's validation split, held out of the generator's data (tailgan.data.splits): 0 = none
    valid_fraction: float = bounded(0.0, ge=0, le=0.9)
    valid_seed: int = 0
    steps: int = bounded(2000, ge=1)  # steps of the method's main phase (generator updates for a GAN)
    seed: int = 0
    sampling: Literal["uniform", "balanced"] = "uniform"  # real data: as it is, or class-balanced resampling
    d_fake_labels: Literal["real", "uniform"] = "uniform"  # labels of the D-step fakes
    flip: bool = False  # random horizontal flips of real images
    ema: bool = False
    ema_decay: float = bounded(0.9999, ge=0, le=1)
    ema_start: int = bounded(1000, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 + channels-last where native
    amp: bool | None = None  # deprecated: true = precision bf16, false = fp32 (older run folders)
    # torch.compile of the networks a recipe declares compilable (auto: where measured to pay, CPU, >= 2000 steps)
    compile: Literal["auto", "on", "off"] = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = bounded(50, ge=1)
    sample_every: int = bounded(500, ge=0)  # 0: no grids
    sample_classes: int = bounded(50, ge=1)  # rows in the sample grid (at most this many classes)
    ckpt_every: int = bounded(500, ge=1)
    keep_checkpoints: bool = False  # also keep checkpoints/step_N.pt
    eval_every: int = bounded(0, ge=0)  # 0: no evaluation during training
    eval_metrics: list[str] = field(default_factory=lambda: ["fid", "kid"])
    eval_ref: Literal["train-lt", "test"] = "train-lt"
    eval_n: int | None = bounded(None, ge=2)
    eval_feature: str = "evaluator"
    best_metric: str = "fid"  # its direction (lower/higher is better) comes from the metric


def resolve_options(cfg: TrainConfig) -> TrainConfig:
    """Validate ``cfg.options`` against the method's Options dataclass and fill in every default; map the
    deprecated ``amp`` switch onto ``precision``."""
    if cfg.amp is not None:
        cfg.precision, cfg.amp = ("bf16" if cfg.amp else "fp32"), None
    options_cls = get_method(cfg.method).Options
    if options_cls is None:
        if cfg.options:
            raise TailganError(f"method {cfg.method!r} takes no options (got options.{next(iter(cfg.options))})")
        return cfg
    cfg.options = to_dict(from_dict(options_cls, cfg.options, prefix="options."))
    return cfg


def make_config(
    method: str | None = None,
    config_file: str | None = None,
    data: str | None = None,
    root: str | None = None,
    overrides: list[str] | None = None,
    **fields: Any,
) -> TrainConfig:
    """Defaults <- method preset <- config file <- --data/--root and other flags <- key=value overrides."""
    d: dict[str, Any] = {}
    file_cfg = load_yaml(config_file) if config_file else {}
    name = method or file_cfg.get("preset") or file_cfg.get("method") or "ecogan"
    d = merge(d, resolve_preset(name))
    d = merge(d, file_cfg)
    if method:  # --method on the command line wins over the file
        d = merge(d, resolve_preset(method))
    data_dict = to_dict(resolve_data_config(data if data else d.get("data", "digits_lt")))
    if isinstance(d.get("data"), dict) and not data:
        data_dict = merge(data_dict, d["data"])
    root = root or (os.environ.get("TAILGAN_DATA") if not data_dict.get("root") else None)
    if root:
        data_dict["root"] = root
    d["data"] = data_dict
    d = merge(d, {k: v for k, v in fields.items() if v is not None})
    d = apply_overrides(d, overrides or [])
    if d.get("faithful"):  # the original code's behaviour, under anything the user set explicitly
        original = faithful_overrides(d.get("preset") or d.get("method", "ecogan"))
        d = apply_overrides(merge(d, original), overrides or [])
    cfg = from_dict(TrainConfig, d)
    if cfg.data.resolution is None:
        cfg.data.resolution = DEFAULT_RESOLUTION
    return resolve_options(cfg)  # unknown method or option -> error now, not after loading data


# Keys added to TrainConfig after runs were written without them, each with the value that reproduces how those
# runs trained; a resumed run's config.yaml may lack these (and only these), everything else must be there.
ADDED_KEYS = {"loss.gp_every": 1, "loss.gp_autocast": False}


def with_later_keys(raw: dict) -> dict:
    """``raw`` with the :data:`ADDED_KEYS` it lacks set to their old behaviour."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for key, value in ADDED_KEYS.items():
        section, _, name = key.rpartition(".")
        target = raw.setdefault(section, {}) if section else raw
        if isinstance(target, dict):
            target.setdefault(name, value)
    return raw


def load_run_config(run_dir: str | Path, complete: bool = False) -> TrainConfig:
    """A run's ``config.yaml``. ``complete`` (resuming): every key must be there, none filled with a default,
    since a resumed run writes its config back."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise TailganError(
            f"{run_dir} is not a tailgan run (no config.yaml); give the folder `tailgan train --out` wrote"
        )
    raw = with_later_keys(load_yaml(path))  # a key added later reads as the behaviour the run trained with
    cfg = from_dict(TrainConfig, raw)
    if complete:
        options_cls = get_method(cfg.method).Options
        missing = missing_key(TrainConfig, raw) or (
            missing_key(options_cls, raw.get("options") or {}, "options.") if options_cls is not None else None
        )
        if missing:
            raise TailganError(
                f"{path} lacks the key '{missing}' (the file was cut or edited); a resumed run never fills a "
                "missing setting with a default: restore the file or add the key with the run's value"
            )
    return resolve_options(cfg)
