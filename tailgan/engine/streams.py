"""The named real-data streams a recipe's steps draw from, each resumable to the exact batch."""

from __future__ import annotations

import torch

from tailgan.data import BatchStream, LongTailedData, to_float
from tailgan.errors import TailganError
from tailgan.methods.spec import StreamSpec
from tailgan.nets.precision import Precision


class Batches:
    """``batches.next(name) -> (images in [-1, 1], labels)`` for every stream a recipe declared.

    The training images are held once on the device; each stream is a :class:`BatchStream` over the
    indices of its classes, so checkpointing every stream's position keeps a resumed run bit-exact.
    """

    def __init__(
        self,
        data: LongTailedData,
        specs: dict[str, StreamSpec],
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        flip_generator: torch.Generator,
        rank: int = 0,
        world_size: int = 1,
        precision: Precision | None = None,
    ) -> None:
        # held once, in the memory format the networks run in (channels-last on the fast path)
        self.images = (precision or Precision()).tensor(to_float(data.train.images).to(device))
        self.labels = data.train.labels.to(device)
        self.specs, self.flip_generator, self.device = specs, flip_generator, device
        labels = data.train.labels
        self.index: dict[str, torch.Tensor] = {}
        self.streams: dict[str, BatchStream] = {}
        for name, spec in specs.items():
            if spec.classes is None:
                idx = torch.arange(len(labels))
            else:
                bad = [c for c in spec.classes if not 0 <= c < data.num_classes]
                if bad:
                    raise TailganError(
                        f"stream {name!r} asks for classes {bad}, but the data has classes 0..{data.num_classes - 1}"
                    )
                idx = torch.nonzero(torch.isin(labels, torch.tensor(spec.classes)), as_tuple=True)[0]
                if len(idx) == 0:
                    raise TailganError(f"stream {name!r}: no training images of classes {list(spec.classes)}")
            self.index[name] = idx.to(device)
            self.streams[name] = BatchStream(
                labels[idx],
                spec.batch_size or batch_size,
                balanced=spec.balanced,
                seed=seed + spec.seed_offset * 7_777_777,
                rank=rank if spec.shard else 0,
                world_size=world_size if spec.shard else 1,
                drop_last=spec.drop_last,
            )

    def next(self, name: str = "real") -> tuple[torch.Tensor, torch.Tensor]:
        if name not in self.streams:
            raise KeyError(f"no stream {name!r}; the recipe declared {', '.join(self.streams)}")
        idx = self.index[name][self.streams[name].next().to(self.device)]
        x = self.images[idx]
        if self.specs[name].flip:
            flip = torch.rand(len(idx), generator=self.flip_generator, device=self.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, self.labels[idx]

    def state_dict(self) -> dict:
        return {name: s.state_dict() for name, s in self.streams.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, s in self.streams.items():
            s.load_state_dict(state[name])
