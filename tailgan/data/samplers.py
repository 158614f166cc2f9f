"""Batches of an in-memory dataset: class-balanced draws (weights N / n_y, with replacement) or epochs.

``BatchStream`` is what the engine uses: it hands out index batches and can save and restore its exact
position, so that a resumed run draws the same batches it would have drawn without stopping. (For a
DataLoader, ``torch.utils.data.WeightedRandomSampler(balanced_weights(labels), n)`` draws the same way.)
"""

from __future__ import annotations

import torch

from tailgan.errors import TailganError


def balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-sample weights N / n_{y_i}: every class is drawn equally often in expectation."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(labels).double()
    return (len(labels) / counts)[labels]


def _stream_seed(seed: int, rank: int, epoch: int) -> int:
    # distinct, reproducible streams per (seed, rank, epoch)
    return (seed * 1_000_003 + rank * 7919 + epoch * 104_729) % (2**63 - 1)


class BatchStream:
    """Endless index batches over an in-memory dataset, resumable to the exact batch.

    ``balanced=True`` draws each batch with weights N / n_y (with replacement); otherwise it walks
    reshuffled epochs without replacement, each rank taking its own slice of the permutation
    (``drop_last``: an epoch's last partial batch is skipped, so every batch comes from one epoch).
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        balanced: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if len(self.labels) == 0:
            raise TailganError("the training set is empty")
        if batch_size < 1:
            raise TailganError(f"batch size must be >= 1, got {batch_size}")
        self.batch_size, self.balanced, self.drop_last = batch_size, balanced, drop_last
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
        if self.drop_last:
            if self.pos + self.batch_size > len(self.perm):
                self._new_epoch()
                if self.batch_size > len(self.perm):
                    raise TailganError(f"batch size {self.batch_size} is larger than the {len(self.perm)} images")
            take = self.perm[self.pos : self.pos + self.batch_size]
            self.pos += self.batch_size
            return take
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
