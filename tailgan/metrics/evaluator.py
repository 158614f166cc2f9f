"""Training, caching and loading the evaluator classifier (``--feature evaluator``).

The evaluator of a dataset is trained on its full, balanced training split (recipe "none") and cached
under ``$TAILGAN_CACHE`` (default ``~/.cache/tailgan``) in ``evaluators/<source>-<hash>/``, where the
hash covers the data's manifest fingerprint and the ``EvaluatorConfig``: ``model.pt`` (a state dict,
loaded with ``weights_only=True``) and ``evaluator.json`` (test accuracy, per-class test accuracy,
config, data fingerprint). Both are written through a temp file and ``os.replace``; the JSON is written
last, so a folder without it is an unfinished training and counts as absent.

The evaluator sees real and generated images through the same pixels as the run: it is trained on the
source at the run's resolution, channels and fit (``evaluator_data_config``), then brought down to at
most ``EvaluatorConfig.max_resolution`` px (antialiased bilinear, the same ``fit_images`` call the
extractor makes at evaluation time). Training on the native 28-px Fashion-MNIST and evaluating 64-px
images resized back to 28 px would test the classifier on blurrier images than it learnt from (on
8-px digits upsampled to 32 px, that costs a quarter of its accuracy), so each run resolution gets its
own evaluator: ``tailgan evaluator train fashion_mnist --resolution 64 --channels 3``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tailgan.data import DataConfig, LongTailedData, fit_images, load_data, to_float
from tailgan.engine.fit import fit, logits_loss
from tailgan.errors import TailganError
from tailgan.io import atomic_write_text, load_checkpoint, save_checkpoint
from tailgan.metrics.features import EvaluatorExtractor
from tailgan.nets.evaluator import EvaluatorNet
from tailgan.nets.inference import predict

# the largest / smallest class of a training split the evaluator calls balanced (the digits: 1.04)
BALANCED_RATIO = 1.5
ARCH = "EvaluatorNet-v1"  # bump when EvaluatorNet changes, so old cached weights are not loaded into it


@dataclass
class EvaluatorConfig:
    """How the evaluator is trained; every field is part of its cache key."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3  # AdamW peak learning rate of a one-cycle schedule
    weight_decay: float = 5e-4
    width: int = 16  # channels of the first conv block (then 2x, 4x)
    feature_dim: int = 128  # penultimate layer = the feature space of FID / KID / PRDC
    translate: int = 2  # augmentation: random shift of up to this many pixels
    hflip: bool = False  # augmentation: random horizontal flips (wrong for digits, so off by default)
    max_resolution: int = 32  # larger images are resized down to this (CPU cost grows with the area)
    seed: int = 0


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$TAILGAN_CACHE``, else ``~/.cache/tailgan``."""
    return Path(cache_dir or os.environ.get("TAILGAN_CACHE") or "~/.cache/tailgan").expanduser()


def evaluator_data_config(config: DataConfig) -> DataConfig:
    """The full, balanced dataset (recipe "none") with the pixels of ``config``: the evaluator's training data.

    A resolution or channel count equal to the source's native one is dropped (``None``), so that
    ``resolution=28`` on Fashion-MNIST finds the evaluator trained at the native size.
    """
    resolution, channels = config.resolution, config.channels
    if resolution is not None or channels is not None:
        native = _native_shape(config.source, config.root)
        if native is not None and resolution == native[1] == native[2]:
            resolution = None
        if native is not None and channels == native[0]:
            channels = None
    return DataConfig(
        source=config.source,
        root=config.root,
        recipe="none",
        resolution=resolution,
        channels=channels,
        fit=config.fit if resolution is not None else "resize",  # fit does nothing at the native size
        skip_bad=config.skip_bad,
    )


@functools.lru_cache(maxsize=8)
def _native_shape(source: str, root: str | None) -> tuple[int, ...] | None:
    """(C, H, W) of a source's training images, None when they have no single size (a mixed folder)."""
    try:
        return tuple(load_data(DataConfig(source=source, root=root, recipe="none")).train.images.shape[1:])
    except TailganError:
        return None


def evaluator_dir(data: LongTailedData, cfg: EvaluatorConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of the evaluator trained on ``data`` (balanced) with ``cfg``."""
    return _evaluator_dir(data.config.source, data.manifest["fingerprint"], cfg, cache_dir)


def _evaluator_dir(source: str, fingerprint: str, cfg: EvaluatorConfig, cache_dir: str | os.PathLike | None) -> Path:
    spec = json.dumps({"arch": ARCH, "data": fingerprint, "config": dataclasses.asdict(cfg)}, sort_keys=True)
    return cache_root(cache_dir) / "evaluators" / f"{source}-{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


def _augment(x: torch.Tensor, cfg: EvaluatorConfig, gen: torch.Generator) -> torch.Tensor:
    """Shift the batch by up to ``cfg.translate`` px (one shift per batch: cheap on a CPU) and flip half."""
    if cfg.translate:
        t = cfg.translate
        h, w = x.shape[-2:]
        dx, dy = torch.randint(0, 2 * t + 1, (2,), generator=gen).tolist()
        x = F.pad(x, (t, t, t, t), value=-1.0)[:, :, dy : dy + h, dx : dx + w]
    if cfg.hflip:
        flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def _check_trainable(data: LongTailedData) -> None:
    if data.config.recipe != "none":
        raise TailganError(
            f"the evaluator is trained on the full, balanced split, but this data uses recipe {data.config.recipe!r}; "
            "load it with load_data(evaluator_data_config(data.config))"
        )
    if len(data.test) == 0:
        raise TailganError(f"{data.config.source} has no test split to measure the evaluator on")


def _is_balanced(data: LongTailedData, counts: list[int], log: Callable[[str], None] | None) -> bool:
    """Whether the training counts are balanced (within ``BALANCED_RATIO``); warns through ``log`` when not."""
    balanced = max(counts) <= BALANCED_RATIO * max(min(counts), 1)
    if not balanced and log:
        log(
            f"warning: the training images of {data.config.source} are not balanced ({max(counts)} down to "
            f"{min(counts)} per class); the evaluator is trained on them as they are, so it recognises the rare "
            "classes less well, and that bounds every label-accuracy figure on this data (see labelacc_real)"
        )
    return balanced


def _fit_evaluator(
    net: EvaluatorNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: EvaluatorConfig,
    gen: torch.Generator,
    device: torch.device,
    log: Callable[[str], None] | None,
) -> float:
    """Train ``net`` for ``cfg.epochs`` epochs of augmented batches (a new order each epoch), AdamW with a
    one-cycle schedule, logging the mean loss of each epoch; returns the seconds it took."""
    steps_per_epoch = max(1, len(images) // cfg.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    t0, epoch = time.perf_counter(), {"perm": None, "total": 0.0}

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, None]:
        i = (step - 1) % steps_per_epoch
        if i == 0:  # a new epoch: a new order
            epoch["perm"], epoch["total"] = torch.randperm(len(images), generator=gen), 0.0
        idx = epoch["perm"][i * cfg.batch_size : (i + 1) * cfg.batch_size]
        return _augment(to_float(images[idx]).to(device), cfg, gen), labels[idx].to(device), None

    def progress(step: int, loss: float) -> None:
        epoch["total"] += loss
        if log and step % steps_per_epoch == 0:
            log(
                f"evaluator epoch {step // steps_per_epoch}/{cfg.epochs}: loss {epoch['total'] / steps_per_epoch:.4f} "
                f"({time.perf_counter() - t0:.0f} s)"
            )

    ce = logits_loss(lambda logits, y, progress, w: F.cross_entropy(logits, y))
    fit(net, batch, ce, opt, cfg.epochs * steps_per_epoch, scheduler=sched, device=device, on_step=progress,
        name="evaluator")  # fmt: skip
    return time.perf_counter() - t0


def _test_accuracy(
    net: EvaluatorNet, test_images: torch.Tensor, data: LongTailedData, device: torch.device
) -> tuple[float, list[float | None]]:
    """The accuracy on the test split, and per class (None for a class without test images)."""
    pred = predict(net, test_images, device).argmax(1)
    correct = (pred == data.test.labels).double()
    per_class = [
        float(correct[data.test.labels == c].mean()) if (data.test.labels == c).any() else None
        for c in range(data.num_classes)
    ]
    return float(correct.mean()), per_class


def train_evaluator(
    data: LongTailedData,
    cfg: EvaluatorConfig | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = print,
) -> EvaluatorExtractor:
    """Train the evaluator on ``data.train`` (which should be the balanced full split), test it, cache it.

    Returns the evaluator as a feature extractor; its ``info`` holds the test accuracy.
    """
    cfg = cfg or EvaluatorConfig()
    device = torch.device(device)
    _check_trainable(data)
    out = evaluator_dir(data, cfg, cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # weight init
    _, channels, data_resolution, _ = data.train.images.shape
    resolution = min(data_resolution, cfg.max_resolution)
    images = fit_images(data.train.images, resolution, None, "resize")
    test_images = fit_images(data.test.images, resolution, None, "resize")
    counts = data.train.counts()
    balanced = _is_balanced(data, counts, log)
    net = EvaluatorNet(data.num_classes, channels, cfg.width, cfg.feature_dim).to(device)
    seconds = _fit_evaluator(net, images, data.train.labels, cfg, gen, device, log)
    accuracy, per_class = _test_accuracy(net, test_images, data, device)
    meta = {
        "arch": ARCH,
        "source": data.config.source,
        "fingerprint": data.manifest["fingerprint"],
        "classes": list(data.classes),
        "num_classes": data.num_classes,
        "resolution": int(resolution),
        "data_resolution": int(data_resolution),
        "channels": int(channels),
        "feature_dim": cfg.feature_dim,
        "config": dataclasses.asdict(cfg),
        "train_images": len(images),
        "train_counts": counts,
        "train_balanced": balanced,
        "test_images": len(data.test),
        "test_accuracy": accuracy,
        "test_accuracy_per_class": per_class,
        "train_seconds": seconds,
        "device": str(device),
        "torch_version": torch.__version__,
    }
    net.cpu()
    save_checkpoint(net.state_dict(), out / "model.pt")
    atomic_write_text(out / "evaluator.json", json.dumps(meta, indent=1))  # last: marks the cache entry complete
    if log:
        log(f"evaluator test accuracy {meta['test_accuracy']:.4f}; saved to {out}")
    return _as_extractor(net, meta, out)


def _as_extractor(net: EvaluatorNet, meta: dict, folder: Path) -> EvaluatorExtractor:
    info = {k: meta[k] for k in ("source", "test_accuracy", "resolution", "channels", "train_images")}
    info["train_balanced"] = meta.get("train_balanced", True)  # caches older than the field: the standard sets
    return EvaluatorExtractor(
        net.eval(), meta["resolution"], meta["channels"], key=folder.name, info={**info, "path": str(folder)}
    )


def load_evaluator_from(folder: str | os.PathLike, device: str | torch.device = "cpu") -> EvaluatorExtractor:
    """Load a cached evaluator folder (``model.pt`` + ``evaluator.json``)."""
    folder = Path(folder)
    meta_file = folder / "evaluator.json"
    if not meta_file.is_file():
        raise TailganError(f"{folder} holds no finished evaluator ({meta_file.name} is missing)")
    try:
        state = load_checkpoint(folder / "model.pt")
    except TailganError:  # damaged, replaced or not tensors: never load it any other way
        raise TailganError(
            f"{folder / 'model.pt'} is not an evaluator tailgan wrote (damaged or replaced); delete {folder} and the "
            "evaluator is trained again"
        ) from None
    try:
        meta = json.loads(meta_file.read_text())
        net = EvaluatorNet(meta["num_classes"], meta["channels"], meta["config"]["width"], meta["feature_dim"])
        net.load_state_dict(state)
    except (OSError, KeyError, RuntimeError, json.JSONDecodeError) as e:
        raise TailganError(f"cannot load the evaluator in {folder}: {e}; delete that folder and train again") from None
    return _as_extractor(net, meta, folder).to(device)


def _balanced_fingerprint(config: DataConfig) -> str:
    return _fingerprint_of(json.dumps(dataclasses.asdict(config), sort_keys=True))


@functools.lru_cache(maxsize=8)
def _fingerprint_of(config_json: str) -> str:
    # loading a source just for its fingerprint costs seconds (Fashion-MNIST: ~3 s); training loops
    # evaluate many times, so remember it per process
    return load_data(DataConfig(**json.loads(config_json))).manifest["fingerprint"]


def evaluator_folder(
    config: DataConfig, cfg: EvaluatorConfig | None = None, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Where the evaluator for the source of ``config`` (any recipe) is, or would be, cached."""
    bal = evaluator_data_config(config)
    return _evaluator_dir(bal.source, _balanced_fingerprint(bal), cfg or EvaluatorConfig(), cache_dir)


def find_evaluators(config: DataConfig, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every finished cached evaluator for the pixels of ``config``'s source, whatever its training settings
    (newest first): an evaluator trained with e.g. ``--epochs 3`` is found too."""
    bal = evaluator_data_config(config)
    fingerprint = _balanced_fingerprint(bal)
    found = []
    for meta_file in (cache_root(cache_dir) / "evaluators").glob(f"{bal.source}-*/evaluator.json"):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("arch") == ARCH and meta.get("fingerprint") == fingerprint:
            found.append(meta_file.parent)
    return sorted(found, key=lambda f: (f / "evaluator.json").stat().st_mtime, reverse=True)


def train_command(config: DataConfig) -> str:
    """The ``tailgan evaluator train`` command that trains the evaluator for ``config``'s pixels."""
    flags = "".join(
        f" --{k} {v}"
        for k, v in (("root", config.root), ("resolution", config.resolution), ("channels", config.channels))
        if v is not None
    )
    return f"tailgan evaluator train {config.source}{flags}"


def load_evaluator(
    config: DataConfig,
    cfg: EvaluatorConfig | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> EvaluatorExtractor:
    """The cached evaluator for the source of ``config`` (any recipe); a TailganError telling how to train it,
    or which flag uses an evaluator trained with other settings."""
    folder = evaluator_folder(config, cfg, cache_dir)
    if not (folder / "evaluator.json").is_file():
        others = [f for f in find_evaluators(config, cache_dir) if f != folder]
        if others:
            raise TailganError(
                f"the evaluator for {config.source} at these pixels was trained with other settings; "
                f"use it with `--evaluator {others[0]}`, or train the default one with `{train_command(config)}`"
            )
        raise TailganError(
            f"no evaluator is trained for {config.source} at these pixels (looked in {folder}); train it once "
            f"with `{train_command(config)}` (a few CPU minutes), or use --feature inception"
        )
    return load_evaluator_from(folder, device)


def get_evaluator(
    config: DataConfig,
    cfg: EvaluatorConfig | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = print,
) -> EvaluatorExtractor:
    """The cached evaluator for ``config``'s source and pixels, training (and caching) it first when there is
    none. With ``cfg`` None an evaluator trained with other settings is used when the default one is absent."""
    folder = evaluator_folder(config, cfg, cache_dir)
    if (folder / "evaluator.json").is_file():
        return load_evaluator_from(folder, device)
    others = find_evaluators(config, cache_dir) if cfg is None else []
    if others:
        if log:
            log(f"using the evaluator in {others[0]} (trained with non-default settings)")
        return load_evaluator_from(others[0], device)
    if log:
        log(f"no evaluator is cached for {config.source} at these pixels; training it once (a few CPU minutes) ...")
    return train_evaluator(load_data(evaluator_data_config(config)), cfg, device, cache_dir, log)
