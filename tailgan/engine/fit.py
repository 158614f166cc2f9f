"""The one supervised loop: ``fit`` a network on batches with a loss, keeping the checkpoint that scores best.

Read top to bottom: set up precision, compile and head-only training; then for each step draw a batch, ask the
loss for a value (the loss object runs the network through ``forward``, so a loss with its own hooks such as
DELTA's can run it as it needs), step the optimiser and the schedule; at the evaluation steps score the
network and keep the best state. Used by the classifiers (``tailgan.classify``), the transfer baselines and the
evaluator's training (``tailgan.metrics.evaluator``); inference is :func:`tailgan.nets.inference.predict`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import torch
from torch import nn

from tailgan.errors import TailganError
from tailgan.nets.precision import Precision, resolve_precision
from tailgan.progress import progress

# loss(forward, x, y, sample_weight, progress): forward(x) gives fp32 logits under the run's precision;
# progress is the fraction of training done before this step (0 at step 1)
Loss = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor, Any, float], torch.Tensor]
# batch(step) -> (x, y, sample weights or None), x floats on the device
Batch = Callable[[int], tuple[torch.Tensor, torch.Tensor, Any]]


def logits_loss(fn: Callable[..., torch.Tensor]) -> Loss:
    """A loss of the logits ``fn(logits, y, progress, sample_weight)`` as a :data:`Loss`."""
    return lambda forward, x, y, w, progress: fn(forward(x), y, progress, w)


def _freeze_body(model: nn.Module, head: str) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(head + "."))


def _train_mode(model: nn.Module, head: str | None) -> None:
    model.train()
    if head is not None:  # frozen body: no batch-norm statistics updates either
        model.eval()
        model.get_submodule(head).train()


def _prepare(
    model: nn.Module, prec: Precision, compile: bool, head: str | None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.amp.GradScaler | None]:
    """Put ``model`` in the precision's form, freeze all but ``head``; returns the training forward (fp32 logits,
    through ``torch.compile`` when asked) and the gradient scaler fp16 needs (None otherwise)."""
    prec.module(model)
    compiled = torch.compile(model) if compile else model
    scaler = torch.amp.GradScaler(prec.device_type) if prec.needs_scaler else None  # fp16 (auto on some GPUs)
    if head is not None:
        _freeze_body(model, head)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with prec.autocast():
            return compiled(prec.tensor(x)).float()

    return forward, scaler


def _update(value: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """One optimiser step on the loss ``value`` (scaled when fp16 needs it)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(value).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        value.backward()
        optimizer.step()


class _Selection:
    """The scores of every evaluation and the state of the best one (ties: the earlier)."""

    def __init__(self, model: nn.Module, evaluate: Callable[[nn.Module], dict] | None, metric: str):
        self.model, self.evaluate, self.metric = model, evaluate, metric
        self.scores: dict | None = None
        self.step = 0
        self.state: dict | None = None
        self.history: list[dict] = []

    def score(self, step: int, last_loss: float | None) -> None:
        scores = self.evaluate(self.model)
        self.history.append({"step": step, "loss": last_loss, **scores})
        if self.scores is None or scores[self.metric] > self.scores[self.metric]:
            self.scores, self.step, self.state = scores, step, copy.deepcopy(self.model.state_dict())

    def load_best(self) -> None:
        if self.state is not None:
            self.model.load_state_dict(self.state)


def fit(
    model: nn.Module,
    batch: Batch,
    loss: Loss,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    scheduler: Any = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    compile: bool = False,
    head: str | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    metric: str = "valid_acsa",
    eval_at: Collection[int] = (),
    keep_start: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    name: str = "training",
) -> tuple[nn.Module, dict]:
    """Train ``model`` (already on ``device``) for ``steps``; returns it in eval mode and the run's record.

    - ``evaluate(model)`` -> a dict of scores (``metric`` among them) at the steps in ``eval_at``; the state
      with the highest ``metric`` is kept and loaded at the end (ties: the earlier). ``keep_start``: the incoming
      network is scored first (step 0) and kept unless a later state beats it (fine-tuning).
    - ``precision``: "auto" | "fp32" | "bf16" | "fp16" (:func:`tailgan.nets.precision.resolve_precision`); the
      forward runs under its autocast, the loss in fp32. ``compile``: the training forward runs
      ``torch.compile``d (evaluation and the returned network stay eager, same parameters).
    - ``head``: the name of the only submodule that trains (e.g. "fc"); the rest is frozen, in eval mode.
    - ``on_step(step, loss)`` after each update (logging).
    """
    if steps < 1:
        raise TailganError(f"steps={steps}: train for at least one step")
    prec, _ = resolve_precision(precision, torch.device(device))
    forward, scaler = _prepare(model, prec, compile, head)
    best = _Selection(model, evaluate, metric)
    if keep_start and evaluate is not None:
        best.score(0, None)
    first_loss, t0 = None, time.perf_counter()
    bar = progress(steps, name)  # a tqdm bar on a terminal, else a line at least every 30 s
    for step in range(1, steps + 1):
        _train_mode(model, head)
        x, y, w = batch(step)
        value = loss(forward, x, y, w, (step - 1) / steps)
        if not torch.isfinite(value):
            raise TailganError(f"the {name} loss became {value.item()} at step {step}; lower the learning rate (lr)")
        first_loss = value.item() if first_loss is None else first_loss
        _update(value, optimizer, scaler)
        if scheduler is not None:
            scheduler.step()
        bar.update(1)
        if on_step is not None:
            on_step(step, value.item())
        if evaluate is not None and step in eval_at:
            best.score(step, value.item())
    bar.close()
    best.load_best()
    model.eval()
    seconds = round(time.perf_counter() - t0, 2)
    record = {"steps": steps, "selected_step": best.step if best.state is not None else steps,
              "best": best.scores, "history": best.history, "first_loss": first_loss, "train_seconds": seconds,
              "precision": prec.name, "compiled": compile}  # fmt: skip
    return model, record


def warmup_cosine(step: int, total: int, warmup: float) -> float:
    """The learning-rate factor at ``step`` (0-based) of ``total``: a linear ramp over the first ``warmup`` share
    of the steps, then a cosine decay to 0 (a ``LambdaLR`` schedule)."""
    warm = int(warmup * total)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def eval_steps(steps: int, evals: int) -> set[int]:
    """``evals`` evaluation steps spread evenly over ``steps`` (the last step always among them)."""
    return set(np.linspace(0, steps, evals + 1).round().astype(int)[1:].tolist()) | {steps}
