"""The joint translator + classifier strategies: ``cyclegan-aug`` / ``cyclegan-alt`` on a binary task,
``stargan-aug`` / ``stargan-alt`` on K classes.

``tailgan classify --strategy cyclegan-aug`` trains the recipe ``cyclegan-cls`` (``tailgan.methods.cyclegan``;
``stargan-*``: ``stargan-cls``, ``tailgan.methods.stargan``) in memory on the *training part* of the
imbalanced data (the validation split carved from it is never seen by the translators or the
classifier), and keeps the classifier checkpoint with the best validation
ACSA, exactly as the other strategies do; the caller scores it on the real test set.

Budget, so the table compares like with like: the classifier makes the same number of optimizer updates
as every other strategy (``resolve_steps``: ``epochs`` passes over the real training part), with the same
optimizer, learning rate, warm-up + cosine schedule and weight decay; the CycleGAN gets
``joint_gan_steps`` updates before the classifier starts (``aug``: the whole CycleGAN phase; ``alt``: its
warm-up; in ``alt`` every classifier update is paired with one more CycleGAN update). Each update draws
``joint_batch_size`` real images of each class, so a classifier batch holds 4 x that many images (real A,
real B, G_BA(B) labelled A, G_AB(A) labelled B).

:func:`binary_pair` makes the binary task from any dataset: two of its classes, relabelled 0 and 1, with
chosen training counts and the two classes' test images untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.utils import save_image

from tailgan.data import ImageSet, LongTailedData
from tailgan.engine import Trainer, make_config
from tailgan.engine.run import build_trainer
from tailgan.engine.trainer import Callback, StepEvent
from tailgan.errors import TailganError
from tailgan.io import atomic_write

# strategy -> (recipe, mode)
JOINT_MODES = {
    "cyclegan-aug": ("cyclegan-cls", "aug"),
    "cyclegan-alt": ("cyclegan-cls", "alt"),
    "stargan-aug": ("stargan-cls", "aug"),
    "stargan-alt": ("stargan-cls", "alt"),
}


def _pick(labels: torch.Tensor, c: int, n: int | None, seed: int, what: str) -> torch.Tensor:
    idx = torch.nonzero(labels == c, as_tuple=True)[0]
    if n is None:
        return idx
    if n < 1 or n > len(idx):
        raise TailganError(f"{what}: class {c} has {len(idx)} images, cannot keep {n}")
    # a seeded choice, kept in dataset order (so a smaller count is a subset of a larger one)
    perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed * 100_003 + c))
    return idx[perm[:n].sort().values]


def binary_pair(
    data: LongTailedData, classes: Sequence[int], counts: Sequence[int] | None = None, seed: int = 0
) -> LongTailedData:
    """The binary task of classes ``(c0, c1)`` of ``data``: relabelled 0 and 1 (in the order given), with
    ``counts`` = (n0, n1) training images (a seeded choice of the class's images; None keeps all) and every
    test image of the two classes. The manifest records the pair, the counts and the kept indices."""
    classes = [int(c) for c in classes]
    if len(classes) != 2 or classes[0] == classes[1]:
        raise TailganError(f"--pair {classes}: give two different class indices, e.g. --pair 7,9")
    bad = [c for c in classes if not 0 <= c < data.num_classes]
    if bad:
        raise TailganError(f"--pair: class {bad[0]} is not a class of this dataset (0..{data.num_classes - 1})")
    if counts is not None and len(counts) != 2:
        raise TailganError(f"--pair-counts {list(counts)}: give two counts, e.g. 6000,50")

    def cut(images: ImageSet, ns: Sequence[int | None], what: str) -> tuple[ImageSet, list[list[int]]]:
        parts = [_pick(images.labels, c, n, seed, what) for c, n in zip(classes, ns)]
        idx = torch.cat(parts)
        labels = torch.cat([torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(parts)])
        names = [images.classes[c] for c in classes]
        return ImageSet(images.images[idx], labels, names), [p.tolist() for p in parts]

    train, kept = cut(data.train, counts if counts is not None else (None, None), "--pair-counts")
    test, _ = cut(data.test, (None, None), "test split")
    valid = cut(data.valid, (None, None), "validation split")[0] if data.valid is not None else None
    manifest = {
        **data.manifest,
        "pair": classes,
        "pair_counts": train.counts(),
        "pair_seed": seed,
        "pair_kept_indices": kept,
        "fingerprint": f"{data.manifest.get('fingerprint')}-pair{classes[0]}-{classes[1]}-{train.counts()}-s{seed}",
    }
    return LongTailedData(train, test, valid, data.config, manifest)


class _Selection(Callback):
    """In the main phase: sets the classifier's learning rate by the shared schedule before each update and,
    at the evaluation steps, keeps the classifier state with the best validation ACSA."""

    def __init__(
        self,
        classifier: nn.Module,
        optimizer: torch.optim.Optimizer,
        lr: float,
        steps: int,
        schedule: Callable[[int], float],
        evaluate: Callable[[nn.Module], float] | None,
        eval_at: set[int],
    ) -> None:
        self.c, self.opt, self.lr, self.steps, self.schedule = classifier, optimizer, lr, steps, schedule
        self.evaluate, self.eval_at = evaluate, eval_at
        self.best = {"acsa": -1.0, "step": 0, "state": None}
        self.history: list[dict] = []

    def set_lr(self, k: int) -> None:
        for group in self.opt.param_groups:
            group["lr"] = self.lr * self.schedule(k)

    def on_start(self, trainer: Trainer) -> None:
        self.set_lr(0)  # the first update's rate (alt's cls_warmup, if any, runs at it too)

    def on_step(self, trainer: Trainer, event: StepEvent) -> None:
        if not event.phase.main:
            return
        self.set_lr(event.step)  # the next update is the (step + 1)-th: LambdaLR's factor(step)
        if self.evaluate is not None and event.step in self.eval_at:
            acsa = self.evaluate(self.c)
            loss = event.losses.get("c_loss")
            self.history.append({"step": event.step, "loss": None if loss is None else float(loss), "valid_acsa": acsa})
            if acsa > self.best["acsa"]:
                self.best = {"acsa": acsa, "step": event.step, "state": copy.deepcopy(self.c.state_dict())}


def write_grid(method: Any, path: Path, seed: int = 0) -> None:
    """The translator's grid (rows: real A, G_AB(A), cycled back; real B, G_BA(B), cycled back) as a PNG."""
    grid = method.sample_grid(2, 8, seed)
    if grid is not None:
        images, nrow = grid
        atomic_write(path, lambda tmp: save_image(images, tmp, nrow=nrow, normalize=True, value_range=(-1, 1)))


def joint_classifier_lr(strategy: str, cfg: Any) -> float:
    """The classifier's peak learning rate in a joint strategy: ``cfg.lr`` with ``joint_cls_batch=classifier``
    (its updates see ``batch_size`` real images); with ``translator``, ``cfg.lr`` scaled linearly by the images
    of one of its updates (CycleGAN: a, b, G_BA(b), G_AB(a), ``joint_batch_size`` each; StarGAN: x and G(x, t)) over
    ``cfg.batch_size`` (Goyal et al.'s rule), never above ``cfg.lr``: the joint updates see 32 images where
    the other strategies see 128, and at the full rate LeNet-5 collapsed to a constant output."""
    if cfg.joint_cls_batch == "classifier":
        return cfg.lr  # batch_size real images per update, as the other strategies: their rate
    groups = 4 if JOINT_MODES[strategy][0] == "cyclegan-cls" else 2
    return cfg.lr * min(1.0, groups * cfg.joint_batch_size / cfg.batch_size)


def joint_recipe_options(
    strategy: str, cfg: Any, counts: Sequence[int], seed: int, device: str | torch.device
) -> list[str]:
    """The recipe overrides a classify config implies (the user's ``joint_options`` come last)."""
    recipe, mode = JOINT_MODES[strategy]
    opt_name = "adamw" if cfg.optimizer == "adam" else "sgd"
    pair = [f"options.class_a={int(np.argmax(counts))}", f"options.class_b={int(np.argmin(counts))}"]
    options = [
        f"options.mode={mode}", *(pair if recipe == "cyclegan-cls" else []), f"options.classifier={cfg.arch}",
        f"options.cls_optim.name={opt_name}", f"options.cls_optim.lr={joint_classifier_lr(strategy, cfg)}",
        f"options.cls_optim.momentum={cfg.momentum}", "options.cls_optim.nesterov=true",
        f"options.cls_optim.weight_decay={cfg.weight_decay}", f"optim.batch_size={cfg.joint_batch_size}",
        f"precision={cfg.precision}", f"seed={seed}", f"device={device}",
    ]  # fmt: skip
    if cfg.joint_cls_batch == "classifier":  # the CycleGAN's is per domain: half each
        per_update = max(1, cfg.batch_size // 2) if recipe == "cyclegan-cls" else cfg.batch_size
        options.append(f"options.cls_batch_size={per_update}")
    if mode == "aug":
        options.append(f"options.{'cyclegan' if recipe == 'cyclegan-cls' else 'gan'}_steps={cfg.joint_gan_steps}")
    else:
        options += [f"options.gan_warmup={cfg.joint_gan_steps}", "options.cls_warmup=0"]
    return options + list(cfg.joint_options)


def _check_joint(strategy: str, real: ImageSet) -> tuple[str, str]:
    if strategy not in JOINT_MODES:
        raise TailganError(f"unknown joint strategy {strategy!r}; use one of {', '.join(JOINT_MODES)}")
    recipe, mode = JOINT_MODES[strategy]
    if recipe == "cyclegan-cls" and real.num_classes != 2:
        raise TailganError(
            f"strategy {strategy} needs a binary task, the data has {real.num_classes} classes; pick two with "
            "--pair A,B (and --pair-counts NA,NB), or use stargan-aug / stargan-alt"
        )
    return recipe, mode


def _joint_record(method: Any, recipe: str, mode: str, overrides: list, cls_lr: float, precision: str) -> dict:
    what = ({"gamma": method.gamma, "class_a": method.options.class_a, "class_b": method.options.class_b}
            if recipe == "cyclegan-cls" else {"targets": method.targets.tolist()})  # fmt: skip
    return {"recipe": recipe, "mode": mode, "recipe_options": overrides, "gan_updates": method.total_gan_updates(),
            "classifier_lr": cls_lr, "precision": precision, **what}


def train_joint(
    real: ImageSet,
    valid: ImageSet,
    strategy: str,
    cfg: Any,
    steps: int,
    seed: int,
    data: LongTailedData,
    device: str | torch.device = "cpu",
    *,
    evaluate: Callable[[nn.Module], float] | None = None,
    eval_at: set[int] = frozenset(),
    lr_factor: Callable[[int, int, float], float] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, dict]:
    """Train the recipe of ``strategy`` (``cyclegan-cls`` on a binary ``real``, ``stargan-cls`` on K classes)
    in its mode; returns the classifier (the best-on-``evaluate`` checkpoint when ``evaluate`` is given, else
    the last) in eval mode and a record.

    ``evaluate(model) -> validation ACSA`` runs at the main-phase steps ``eval_at``; ``lr_factor(step, total,
    warmup)`` is the classifier's learning-rate schedule (default: constant).
    """
    recipe, mode = _check_joint(strategy, real)
    counts = real.counts()
    if min(counts) < 1:
        raise TailganError(f"strategy {strategy}: both classes need training images, got counts {counts}")
    overrides = joint_recipe_options(strategy, cfg, counts, seed, device)
    tcfg = make_config(recipe, overrides=overrides, steps=steps)
    with torch.random.fork_rng(devices=[]):  # build_method seeds the global generator; leave the caller's as it was
        trainer = build_trainer(tcfg, replace(data, train=real, valid=None), device=device, log=log)
    method = trainer.method
    c, opt = method.nets["C"], method.optimizers["C"]
    schedule = (lambda k: lr_factor(k, steps, cfg.warmup)) if lr_factor is not None else (lambda k: 1.0)
    cls_lr = joint_classifier_lr(strategy, cfg)
    select = _Selection(c, opt, cls_lr, steps, schedule, evaluate, set(eval_at))
    trainer.callbacks.append(select)
    trainer.run()
    if cfg.joint_grid_dir is not None:
        write_grid(method, Path(cfg.joint_grid_dir) / f"{strategy}_seed{seed}.png", seed)
    if select.best["state"] is not None:
        c.load_state_dict(select.best["state"])
    c.eval()
    record = {
        "steps": steps,
        "selected_step": select.best["step"] if select.best["state"] is not None else steps,
        "valid_acsa": select.best["acsa"] if evaluate is not None else None,
        "tau": None,
        "history": select.history,
        "joint": _joint_record(method, recipe, mode, overrides, cls_lr, method.precision.name),
    }
    return c, record

