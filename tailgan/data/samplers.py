"""Samplers: class-balanced draws (weights N / n_y, with replacement), for one process or many.

``ClassBalancedSampler`` is a torch ``Sampler`` for DataLoaders. ``BatchStream`` is what the GAN engine
uses: it hands out index batches of an in-memory dataset and can save and restore its exact position,
so that a resumed run draws the same batches it would have drawn without stopping.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from tailgan.errors import TailganError


def balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-sample weights N / n_{y_i}: every class is drawn equally often in expectation."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(labels).double()
    return (len(labels) / counts)[labels]


def _stream_seed(seed: int, rank: int, epoch: int) -> int:
    # distinct, reproducible streams per (seed, rank, epoch)
    return (seed * 1_000_003 + rank * 7919 + epoch * 104_729) % (2**63 - 1)


class ClassBalancedSampler(Sampler[int]):
    """Draws ``num_samples`` indices (default N) with probability proportional to N / n_y, with replacement.

    Under DistributedDataParallel give each process its ``rank`` and ``world_size``: each rank then draws
    its own ``num_samples // world_size`` indices from a stream seeded by (seed, rank, epoch), so ranks see
    different data and every run with the same seed sees the same data. Call ``set_epoch`` each epoch.
    """

    def __init__(
        self, labels: torch.Tensor, num_samples: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise TailganError(f"rank {rank} is not in 0..{world_size - 1}")
        self.weights = balanced_weights(labels)
        total = len(self.weights) if num_samples is None else num_samples
        self.num_samples = total // world_size
        self.seed, self.rank, self.epoch = seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(_stream_seed(self.seed, self.rank, self.epoch))
        return iter(torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchStream:
    """Endless index batches over an in-memory dataset, resumable to the exact batch.

    ``balanced=True`` draws each batch with weights N / n_y (with replacement); otherwise it walks
    reshuffled epochs without replacement, each rank taking its own slice of the permutation.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        balanced: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if len(self.labels) == 0:
            raise TailganError("the training set is empty")
        self.batch_size, self.balanced = batch_size, balanced
        self.rank, self.world_size = rank, world_size
        self.weights = balanced_weights(self.labels) if balanced else None
        self.generator = torch.Generator().manual_seed(_stream_seed(seed, rank if balanced else 0, 0))
        self.perm = torch.zeros(0, dtype=torch.long)
        self.pos = 0
        self.epoch = 0

    def _new_epoch(self) -> None:
        # every rank shuffles with the same generator, then takes a strided slice: a disjoint shard
        perm = torch.randperm(len(self.labels), generator=self.generator)
        self.perm = perm[self.rank :: self.world_size]
        self.pos = 0
        self.epoch += 1

    def next(self) -> torch.Tensor:
        """The next batch of indices (int64, ``batch_size``)."""
        if self.balanced:
            return torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.generator)
        parts, need = [], self.batch_size
        while need > 0:
            if self.pos >= len(self.perm):
                self._new_epoch()
            take = self.perm[self.pos : self.pos + need]
            self.pos += len(take)
            need -= len(take)
            parts.append(take)
        return torch.cat(parts)

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "perm": self.perm.clone(),
            "pos": self.pos,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.pos, self.epoch = state["perm"].clone(), int(state["pos"]), int(state["epoch"])
