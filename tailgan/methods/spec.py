"""What a recipe declares to the engine: its data streams, its phases, its output, and what it is given.

A recipe (a :class:`tailgan.methods.base.Method` subclass) never sees the training loop. It says
- which **streams** of real data it needs (:class:`StreamSpec`: all classes or some, balanced or not),
- which **phases** it trains in, in order (:class:`Phase`: a name, a step count, the step function),
- what it **outputs** (:class:`OutputSpec`: images or feature maps, and their shape),
and receives a :class:`RunContext` (run folder, device, ranks, logger, cache, evaluator) when it is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from tailgan.nets.precision import Precision


@dataclass(frozen=True)
class StreamSpec:
    """A named stream of real training batches.

    ``classes``: the classes it draws from (None: all). ``balanced``: each batch drawn with class-balanced
    weights (with replacement); otherwise reshuffled epochs without replacement. ``batch_size``: None means
    ``optim.batch_size``. ``shard``: under DDP each rank takes its own slice of an epoch (or its own balanced
    stream); ``shard=False`` gives every rank the same batches (identical work, e.g. a pre-training).
    ``drop_last``: an epoch's last partial batch is skipped. ``flip``: random horizontal flips.
    ``seed_offset`` separates the random streams of several streams of one run.
    """

    classes: tuple[int, ...] | None = None
    balanced: bool = False
    batch_size: int | None = None
    shard: bool = True
    drop_last: bool = False
    flip: bool = False
    seed_offset: int = 0


@dataclass
class Phase:
    """One phase of a recipe's training: ``steps`` calls of ``step(batches, step)``.

    ``begin(data) -> bool`` runs when the phase starts on a fresh run (True: skip the phase, e.g. a saved
    pre-training was reused); ``end(data)`` runs when its last step is done. ``log_every`` (None: the run's
    ``log_every``) sets its record cadence; ``record()`` adds fields to its log records. The ``main`` phase
    is the one whose length ``--steps`` sets (default: the last phase).
    """

    name: str
    steps: int
    step: Callable[[Any, int], dict[str, torch.Tensor]]
    begin: Callable[[Any], bool] | None = None
    end: Callable[[Any], None] | None = None
    log_every: int | None = None
    record: Callable[[Any, dict], dict] | None = None
    main: bool = False


def due(step: int, every: int, last: bool = False) -> bool:
    """Whether something done every ``every`` steps (logs, grids, checkpoints, a recipe's periodic update) runs
    at ``step``: at the multiples of ``every`` (0: at none) and, with ``last`` (a phase's last step), always."""
    return last or (every > 0 and step % every == 0)


@dataclass(frozen=True)
class OutputSpec:
    """What a recipe makes: ``image`` (values in [-1, 1]) or ``feature`` maps, of ``shape`` (C, H, W)."""

    kind: Literal["image", "feature"]
    shape: tuple[int, ...]
    translates: bool = False  # sample() takes a ``source`` batch of images (image-to-image recipes)


@dataclass(frozen=True)
class DataShape:
    """What a recipe knows of its data when it is built."""

    num_classes: int
    img_channels: int
    img_size: int
    class_counts: tuple[int, ...] = ()


@dataclass
class RunContext:
    """What the engine hands a recipe: where it runs and the services of the run.

    ``run_dir`` is None when a recipe is only loaded for sampling. ``log(record)`` writes a log record
    (rank 0). ``evaluator()`` returns the run's feature extractor for evaluation (trained and cached on first
    use) where the caller provides one. ``precision`` is how the recipe's networks run (autocast dtype,
    memory format).
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    run_dir: Path | None = None
    log: Callable[[dict], None] = lambda record: None
    evaluator: Callable[[], Any] | None = None
    precision: Precision = field(default_factory=Precision)  # fp32 unless the engine resolved a fast path

    @property
    def is_main(self) -> bool:
        return self.rank == 0
