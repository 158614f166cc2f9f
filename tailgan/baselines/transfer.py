"""Transfer from a source network: its pre-training and cache, and the classifiers of DFG's table.

Source networks (spec 5.2): a DFG backbone (``lenet5``, ``vgg16``, ``resnet50``) trained by tailgan on a
named source dataset -- any tailgan data spec -- and cached under ``$TAILGAN_CACHE/dfg_sources`` (default
``~/.cache/tailgan``), keyed by the source data's fingerprint, the backbone and the training settings, with
its test accuracy recorded; or a weights file the user gives. DFG's Fashion-MNIST and SVHN sources were
LeNet-5s trained on EMNIST, which is not available offline here: MNIST (``../shared/data/MNIST``) is the
stand-in handwriting source, so the numbers are not the paper's setting.

Strategies on a target dataset, all scored with the classify protocol (a stratified validation split
carved from the long-tailed training data selects the checkpoint; the test set is used once):

- ``original``: the backbone trained from scratch (cross-entropy);
- ``finetune``: every layer initialised from the source, cross-entropy;
- ``delta``: fine-tuning with DELTA's regulariser (spec 5.9): CE + alpha * attentive feature-map distance to
  the frozen source on the hooked layers (channel weights from filter ablation, L^(-j) - L over 4 batches,
  z-score / 5 / softmax) + beta * 1/2 ||last layer||^2;
- ``dfg``: the ``dfg`` recipe (``tailgan.methods.dfg``) trained through the engine in a run folder (resumable),
  its selected extractor + classifier scored.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tailgan.config import from_dict, to_dict
from tailgan.data import BatchStream, LongTailedData, load_data, to_float
from tailgan.data.splits import carve_validation
from tailgan.engine.config import TrainConfig, make_config, resolve_options
from tailgan.engine.fit import fit
from tailgan.engine.run import run_recipe
from tailgan.errors import TailganError
from tailgan.io import atomic_write_json, load_checkpoint, save_checkpoint
from tailgan.losses.dfg import classifier_channel_weights, classify_with_omega1, head_l2, regularizer_weights
from tailgan.methods.dfg import FAITHFUL, classifier_scores
from tailgan.nets.dfg import NATIVE_SIZE, SplitNet, build_source
from tailgan.nets.inference import predict
from tailgan.scores import score_test_set

TRANSFER_STRATEGIES = ("original", "finetune", "delta", "dfg")
SOURCE_VERSION = 1  # bump when the pre-training procedure changes: old cache entries are then not reused

# DELTA's hooked layers, as names inside the whole network: the extractor conv (its output channels are the
# feature channels) and the classifier layers DFG hooks (LeNet-5: conv1, conv2; VGG-16: conv1_2, conv5_3;
# ResNet-50: the last conv3 of layer1..layer4, as DELTA)
DELTA_LAYERS = {
    "lenet5": ("features.0", "features.3"),
    "vgg16": ("features.2", "features.28"),
    "resnet50": ("layer1.2.conv3", "layer2.3.conv3", "layer3.5.conv3", "layer4.2.conv3"),
}
_FC = {"lenet5": "classifier.4", "vgg16": "classifier.6", "resnet50": "fc"}


# -- source networks -----------------------------------------------------------------------------------------------
@dataclass
class SourceConfig:
    """How a source network is pre-trained (everything here is part of its cache key)."""

    backbone: Literal["lenet5", "vgg16", "resnet50"] = "lenet5"
    epochs: float = 3.0
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    seed: int = 0


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where source networks are cached: ``cache``, else ``$TAILGAN_CACHE``, else ``~/.cache/tailgan``."""
    return Path(cache or os.environ.get("TAILGAN_CACHE") or "~/.cache/tailgan").expanduser() / "dfg_sources"


def source_data(
    spec: str | dict, root: str | None, backbone: str, channels: int | None, fit: str = "pad"
) -> LongTailedData:
    """The source dataset at the backbone's input side (32 px for LeNet-5 / VGG-16, 224 for ResNet-50) and the
    target's ``channels``; ``fit`` as the target's (``pad``: DFG's transforms.Pad(2) of 28 px images)."""
    return load_data(spec, root, resolution=NATIVE_SIZE[backbone], channels=channels, fit=fit)


def source_key(data: LongTailedData, cfg: SourceConfig) -> str:
    """Cache key: the source data's fingerprint, the backbone and the pre-training settings."""
    text = json.dumps({"data": data.manifest["fingerprint"], "cfg": asdict(cfg), "v": SOURCE_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pretrain_source(
    data: LongTailedData, cfg: SourceConfig, device: str | torch.device = "cpu", log: Callable[[str], None] = print
) -> tuple[nn.Module, float]:
    """Train the backbone on ``data.train`` with cross-entropy (Adam, ``cfg.epochs`` passes); returns the
    network and its top-1 accuracy on ``data.test``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = build_source(cfg.backbone, data.num_classes, data.train.images.shape[1]).network.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    steps = max(1, round(cfg.epochs * len(data.train) / cfg.batch_size))
    t0 = time.perf_counter()

    def progress(step: int, loss: float) -> None:
        if step % 500 == 0 or step == steps:
            log(f"source {cfg.backbone}: step {step}/{steps} loss {loss:.4f} ({time.perf_counter() - t0:.0f} s)")

    net, _ = fit(net, _batches(data, cfg.batch_size, cfg.seed, device), _CE, opt, steps, device=device,
                 on_step=progress, name="source pre-training")  # fmt: skip
    pred = predict(net, data.test.images, device, 500).argmax(1)
    return net, float((pred == data.test.labels).double().mean())


def source_network(
    spec: str | dict,
    root: str | None = None,
    cfg: SourceConfig | None = None,
    channels: int | None = None,
    cache: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    fit: str = "pad",
) -> Path:
    """The cached source network pre-trained on the data spec ``spec`` (trained and cached on first use).

    The file holds ``state_dict`` (the network's layout, which ``options.source`` of the ``dfg`` recipe and
    :func:`tailgan.nets.dfg.load_source_weights` read) and ``meta`` (source data, fingerprint, settings,
    ``test_accuracy``). ``fit`` brings the source images to the backbone's side as the target's were
    (``pad`` for 28 px MNIST -> 32, as the ``fashion_mnist_dfg40`` preset pads its images). Returns its path.
    """
    cfg = cfg or SourceConfig()
    data = source_data(spec, root, cfg.backbone, channels, fit)
    path = cache_dir(cache) / f"{cfg.backbone}-{data.config.preset or data.config.source}-{source_key(data, cfg)}.pt"
    if path.is_file():
        meta = source_meta(path)
        log(f"source network {path} (test accuracy {meta.get('test_accuracy', float('nan')):.4f}) reused")
        return path
    log(f"pre-training the {cfg.backbone} source on {data.config.preset or data.config.source} ...")
    net, acc = pretrain_source(data, cfg, device, log)
    meta = {
        "backbone": cfg.backbone,
        "source": data.config.source,
        "preset": data.config.preset,
        "fingerprint": data.manifest["fingerprint"],
        "num_classes": data.num_classes,
        "in_channels": int(data.train.images.shape[1]),
        "image_size": int(data.train.images.shape[-1]),
        "settings": asdict(cfg),
        "test_accuracy": acc,
        "train_images": len(data.train),
    }
    save_checkpoint({"state_dict": {k: v.cpu() for k, v in net.state_dict().items()}, "meta": meta}, path)
    log(f"source network cached at {path} (test accuracy {acc:.4f})")
    return path


def source_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` record of a source file tailgan wrote ({} for a plain weights file)."""
    state = load_checkpoint(path)
    return dict(state.get("meta", {})) if isinstance(state, dict) else {}


def resolve_source(
    source: str,
    backbone: str = "lenet5",
    root: str | None = None,
    channels: int | None = None,
    cfg: SourceConfig | None = None,
    cache: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    fit: str = "pad",
) -> Path:
    """``--source``: an existing weights file is used as it is; anything else is a data spec to pre-train on."""
    if Path(source).is_file():
        return Path(source)
    if source.endswith((".pt", ".pth")):
        raise TailganError(f"--source {source}: no such file; give a weights file or a dataset (e.g. mnist)")
    cfg = cfg or SourceConfig(backbone=backbone)
    if cfg.backbone != backbone:
        raise TailganError(f"the source settings are for {cfg.backbone}, the strategy uses {backbone}")
    return source_network(source, root, cfg, channels, cache, device, log, fit)


# -- the classifiers of DFG's table -----------------------------------------------------------------------------------
@dataclass
class TransferConfig:
    """Settings of the transfer strategies (defaults: DFG's LeNet-5 setting at a CPU budget).

    ``original``, ``finetune`` and ``delta`` use DFG's extractor/classifier optimiser (Adam 1e-4, betas
    (0.5, 0.9)) for ``steps`` updates, so the four rows differ in the method only; DELTA's own code used SGD
    0.01 (``optimizer=sgd lr=0.01``).
    """

    backbone: Literal["lenet5", "vgg16", "resnet50"] = "lenet5"
    steps: int = 2000  # updates of the classifier (DFG: generator steps, one E+Cl update each)
    batch_size: int = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    momentum: float = 0.9
    eval_every: int = 100  # validation evaluations (model selection), as DFG's cadence
    valid_fraction: float = 0.1
    split_seed: int | None = None  # None: the strategy's seed
    select_metric: Literal["acsa", "accuracy"] = "acsa"
    alpha: float = 0.01  # DELTA: feature-map distance
    beta: float = 0.01  # DELTA: head L2
    temperature: float = 5.0
    max_batches: int = 4
    faithful: bool = False  # dfg: the original code's options (spec 5.10), except selection on the test set
    dfg_options: dict[str, Any] = field(default_factory=dict)  # further options of the dfg recipe
    ckpt_every: int = 500  # dfg: checkpoint cadence of its run folder
    eval_batch_size: int = 500


def carve(data: LongTailedData, cfg: TransferConfig, seed: int) -> tuple[LongTailedData, dict]:
    """``data`` with its training split cut into train part + validation part (``valid``), and the record."""
    real, valid, split = carve_validation(data, cfg.valid_fraction, seed if cfg.split_seed is None else cfg.split_seed)
    if len(valid) == 0:
        raise TailganError("no class has two training images: no validation split can be carved for model selection")
    return LongTailedData(real, data.test, valid, data.config, data.manifest), split


def _optimizer(params, cfg: TransferConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas))


def delta_weights(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, layers: tuple[str, ...], cfg: TransferConfig, seed: int
) -> list[torch.Tensor]:
    """DELTA's channel weights of ``layers`` of the (source) network ``net``: filter-ablation loss increase
    over ``cfg.max_batches`` shuffled batches, z-score, / temperature, softmax."""
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + 99))
    b = cfg.batch_size
    device = next(net.parameters()).device
    batches = [
        (to_float(images[perm[i : i + b]]).to(device), labels[perm[i : i + b]].to(device))
        for i in range(0, min(len(perm), cfg.max_batches * b), b)
    ]
    scores = classifier_channel_weights(nn.Identity(), net, batches, layers, cfg.max_batches)
    return [regularizer_weights(s, cfg.temperature).to(device) for s in scores]


def train_transfer(
    data: LongTailedData,
    strategy: Literal["original", "finetune", "delta"],
    source: str | os.PathLike | None,
    cfg: TransferConfig,
    seed: int,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict]:
    """Train ``original`` / ``finetune`` / ``delta`` on ``data.train``, selecting on ``data.valid``; returns the
    selected network (eval mode) and a record (steps, selected step, validation history)."""
    if strategy != "original" and source is None:
        raise TailganError(f"strategy {strategy!r} needs a source network (--source DATASET or FILE)")
    in_ch, k = data.train.images.shape[1], data.num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        split: SplitNet = build_source(cfg.backbone, k, in_ch, None if strategy == "original" else source)
    net = split.network.to(device)
    frozen = copy.deepcopy(net).eval().requires_grad_(False) if strategy == "delta" else None
    layers = DELTA_LAYERS[cfg.backbone]
    weights = delta_weights(frozen, data.train.images, data.train.labels, layers, cfg, seed) if frozen else []
    loss = _CE
    if frozen is not None:

        def loss(forward, x, y, w, progress):  # DELTA: the network runs with its hooks, beside the frozen source
            logits, omega = classify_with_omega1(net, frozen, x, x, layers, weights)
            omega2 = head_l2(net.get_submodule(_FC[cfg.backbone]))
            return F.cross_entropy(logits, y) + cfg.alpha * omega + cfg.beta * omega2

    def evaluate(model: nn.Module) -> dict:
        scores = classifier_scores(predict(model, data.valid.images, device, cfg.eval_batch_size), data.valid.labels, k)
        return {f"valid_{m}": v for m, v in scores.items()}

    eval_at = {s for s in range(1, cfg.steps + 1) if s % cfg.eval_every == 0} | {cfg.steps}
    net, record = fit(
        net, _batches(data, cfg.batch_size, seed, device), loss, _optimizer(net.parameters(), cfg), cfg.steps,
        device=device, evaluate=evaluate, metric=f"valid_{cfg.select_metric}", eval_at=eval_at, name=strategy,
    )  # fmt: skip
    key = f"valid_{cfg.select_metric}"
    keep = ("steps", "selected_step", "history", "train_seconds")
    return net, {**{k: record[k] for k in keep}, key: record["best"][key]}


def _CE(forward, x, y, w, progress) -> torch.Tensor:
    return F.cross_entropy(forward(x), y)


def _batches(data: LongTailedData, batch_size: int, seed: int, device) -> Callable:
    """batch(step) of :func:`tailgan.engine.fit.fit`: seeded batches of ``data.train``."""
    stream = BatchStream(data.train.labels, min(batch_size, len(data.train)), seed=seed)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, None]:
        idx = stream.next()
        return to_float(data.train.images[idx]).to(device), data.train.labels[idx].to(device), None

    return batch


def dfg_config(data: LongTailedData, source: str | os.PathLike, cfg: TransferConfig, seed: int) -> TrainConfig:
    """The run config of the ``dfg`` recipe for this target data, source and settings."""
    options = {**(FAITHFUL["dfg"]["options"] if cfg.faithful else {}), "backbone": cfg.backbone}
    options.update(source=str(source), select_on="valid", select_metric=cfg.select_metric, eval_every=cfg.eval_every)
    options.update(cfg.dfg_options)
    tc = make_config("dfg", steps=cfg.steps, seed=seed, precision="fp32", ckpt_every=cfg.ckpt_every, sample_every=0)
    tc.data = copy.deepcopy(data.config)
    tc.optim.batch_size = cfg.batch_size
    tc.options = options
    return resolve_options(from_dict(TrainConfig, to_dict(tc)))


def train_dfg(
    data: LongTailedData,
    source: str | os.PathLike,
    cfg: TransferConfig,
    seed: int,
    out: str | os.PathLike,
    device: str | torch.device = "cpu",
    steps: int | None = None,
) -> tuple[Any, dict]:
    """Train (or resume) the ``dfg`` recipe in run folder ``out`` on ``data`` (whose ``valid`` selects).

    ``out`` holds ``config.yaml``, ``log.jsonl``, ``checkpoints/last.pt`` and the recipe's ``dfg/`` figures;
    an existing ``checkpoints/last.pt`` is resumed (bit-exact on the CPU). ``steps``: stop after this many
    steps in this call (the run continues later). Returns the recipe and the last log record.
    """
    tc = dfg_config(data, source, cfg, seed)
    resume = (Path(out) / "checkpoints" / "last.pt").is_file()
    trainer, record = run_recipe(tc, data, out, resume=resume, device=device, steps=steps, finished_ok=True)
    return trainer.method, record


def train_and_score_transfer(
    data: LongTailedData,
    strategy: str,
    seed: int = 0,
    config: TransferConfig | None = None,
    *,
    source: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    **overrides: Any,
) -> dict:
    """One of ``original``, ``finetune``, ``delta``, ``dfg`` on ``data``: validation split carved from the
    training data, selection on it, test metrics as :func:`tailgan.classify.train.train_and_score` reports
    them (``accuracy``, ``acsa``, ``macro_f1``, per class, confusion matrix) plus the run record.

    ``source``: a source weights file (see :func:`resolve_source`). ``out``: the run folder of ``dfg``
    (required for it; resumed when it holds a checkpoint). ``overrides`` change :class:`TransferConfig` fields.
    """
    cfg = config or TransferConfig()
    if overrides:
        unknown = sorted(set(overrides) - set(asdict(cfg)))
        if unknown:
            raise TailganError(f"unknown transfer setting {unknown[0]!r}; valid: {', '.join(asdict(cfg))}")
        cfg = TransferConfig(**{**asdict(cfg), **overrides})
    if strategy not in TRANSFER_STRATEGIES:
        raise TailganError(f"unknown transfer strategy {strategy!r}; use one of {', '.join(TRANSFER_STRATEGIES)}")
    t0 = time.perf_counter()
    net, record, carved, split = fit_transfer(data, strategy, seed, cfg, source, out, device)
    probs = torch.softmax(predict(net, data.test.images, device, cfg.eval_batch_size), 1)
    metrics = score_test_set(data.test.labels, probs, data.num_classes, carved.train.counts())
    result = {
        "strategy": strategy,
        "seed": seed,
        **metrics,
        "train_counts": carved.train.counts(),
        "valid_counts": carved.valid.counts(),
        "valid_split": split,
        **record,
        "source": None if source is None else {"path": str(source), **source_meta(source)},
        "seconds": round(time.perf_counter() - t0, 2),
        "config": asdict(cfg),
    }
    log(f"{strategy} seed {seed}: accuracy {metrics['accuracy']:.4f} ACSA {metrics['acsa']:.4f}")
    return result


def fit_transfer(
    data: LongTailedData,
    strategy: str,
    seed: int,
    cfg: TransferConfig,
    source: str | os.PathLike | None,
    out: str | os.PathLike | None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict, LongTailedData, dict]:
    """The selected network of a transfer strategy, its record, the carved data and the split record."""
    carved, split = carve(data, cfg, seed)
    if strategy != "dfg":
        net, record = train_transfer(carved, strategy, source, cfg, seed, device)
        return net, record, carved, split
    if source is None or out is None:
        raise TailganError("strategy dfg needs a source network (--source) and a run folder (--out)")
    method, last = train_dfg(carved, source, cfg, seed, out, device)
    selected = method.selected()
    record = {"steps": cfg.steps, "selected_step": method.best["step"] if method.best else cfg.steps,
              f"valid_{cfg.select_metric}": method.best["value"] if method.best else None,
              "run": str(out), "last_record": last}  # fmt: skip
    return nn.Sequential(selected.extractor, selected.classifier), record, carved, split


def write_result(result: dict, path: str | os.PathLike) -> None:
    """The JSON record of :func:`train_and_score_transfer` written atomically."""
    atomic_write_json(path, result)


__all__ = [
    "DELTA_LAYERS",
    "TRANSFER_STRATEGIES",
    "SourceConfig",
    "TransferConfig",
    "cache_dir",
    "carve",
    "delta_weights",
    "fit_transfer",
    "dfg_config",
    "pretrain_source",
    "resolve_source",
    "source_data",
    "source_key",
    "source_meta",
    "source_network",
    "train_and_score_transfer",
    "train_dfg",
    "train_transfer",
    "write_result",
]
