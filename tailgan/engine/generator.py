"""A trained run's recipe loaded back for sampling: ``load_generator(run).sample(labels, seed=0)``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tailgan.engine.config import TrainConfig, load_run_config
from tailgan.errors import TailganError
from tailgan.io import load_checkpoint
from tailgan.methods import get_method
from tailgan.methods.spec import DataShape, RunContext


def build_method(cfg: TrainConfig, shape: DataShape, ctx: RunContext | None = None) -> Any:
    """The recipe ``cfg.method`` with its networks and optimizers; identical initial weights on every rank."""
    torch.manual_seed(cfg.seed)
    return get_method(cfg.method)(cfg, shape, ctx or RunContext())


def checkpoint_path(run_dir: str | Path, checkpoint: str = "last") -> Path:
    """``last`` / ``best`` / a step number / a file path -> the checkpoint file of a run."""
    run_dir = Path(run_dir)
    if checkpoint in ("last", "best"):
        return run_dir / "checkpoints" / f"{checkpoint}.pt"
    if str(checkpoint).isdigit():
        return run_dir / "checkpoints" / f"step_{int(checkpoint):07d}.pt"
    return Path(checkpoint)


class TrainedGenerator(nn.Module):
    """A trained run's recipe, ready to sample any class: ``g.sample(labels, seed=0)``.

    ``output`` says what it makes (images in [-1, 1], or feature maps); ``require_images(what)`` raises a
    clear error where images are needed and the recipe makes something else.
    """

    def __init__(self, method: Any, run_dir: Path | None, step: int, data_config: Any) -> None:
        super().__init__()
        self.method = method
        self.nets = nn.ModuleDict(method.nets)  # registered, so .to() and .parameters() work
        self.run_dir, self.step, self.data_config = run_dir, step, data_config
        self.num_classes, self.img_channels, self.img_size = method.num_classes, method.img_channels, method.img_size
        self.output = method.output
        # the validation split the run held out of the generator's data (None: it trained on all of it)
        split_file = Path(run_dir) / "valid_split.json" if run_dir is not None else None
        has_split = split_file is not None and split_file.is_file()
        self.valid_split = json.loads(split_file.read_text()) if has_split else None

    def require_images(self, what: str) -> None:
        if self.output.kind != "image":
            shape = "x".join(map(str, self.output.shape))
            raise TailganError(
                f"{self.run_dir or 'this run'} makes {self.output.kind} maps ({shape}) for a classifier, not images, "
                f"so {what} cannot use it; use it through `tailgan classify` (its strategy) instead"
            )

    def sample(
        self,
        labels: torch.Tensor,
        seed: int | None = None,
        batch_size: int = 256,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Float outputs (N, *output.shape) for ``labels`` (images in [-1, 1]); the same seed gives the same
        outputs. ``source``: images to translate, for translating recipes."""
        chunks = list(self.iter_samples(labels, seed, batch_size, source))
        return torch.cat(chunks) if chunks else torch.zeros(0, *self.output.shape)

    @torch.no_grad()
    def iter_samples(
        self,
        labels: torch.Tensor,
        seed: int | None = None,
        batch_size: int = 256,
        source: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """``sample`` batch by batch (on the CPU), for writers whose memory must not grow with ``len(labels)``;
        the concatenated batches equal ``sample(labels, seed, batch_size, source)``."""
        labels = torch.as_tensor(labels, dtype=torch.long)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise TailganError(f"class labels must be in 0..{self.num_classes - 1}")
        if self.output.translates and source is None:
            raise TailganError("this recipe translates images: give the images to translate (--source DIR)")
        if source is not None and len(source) != len(labels):
            raise TailganError(f"{len(source)} source images for {len(labels)} labels; give one label per image")
        gen = torch.Generator(device=self.method.device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        for i in range(0, len(labels), batch_size):
            src = None if source is None else source[i : i + batch_size].to(self.method.device)
            out = self.method.sample(labels[i : i + batch_size], generator=gen, source=src).cpu()
            if not torch.isfinite(out).all():
                raise TailganError(
                    f"the generator of {self.run_dir or 'this run'} (step {self.step}) makes NaN/Inf outputs: its "
                    "weights are not usable; take an earlier checkpoint (--checkpoint N) or train again with a lower "
                    "learning rate"
                )
            yield out

    def forward(self, labels: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        return self.sample(labels, seed)


def load_generator(
    run_dir: str | Path, checkpoint: str = "last", device: str | torch.device = "cpu"
) -> TrainedGenerator:
    """The recipe of a run folder written by ``tailgan train`` (the EMA generator when the run kept one)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    state = load_checkpoint(checkpoint_path(run_dir, checkpoint), device)
    meta = state["meta"]
    shape = DataShape(
        meta["num_classes"], meta["img_channels"], meta["img_size"], tuple(meta.get("class_counts", ()))
    )
    method = build_method(cfg, shape, RunContext(device=torch.device(device)))
    try:
        method.load_state_dict(state["method"], weights_only=True)
    except RuntimeError as e:  # shapes that do not match config.yaml
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise TailganError(
            f"checkpoint {checkpoint_path(run_dir, checkpoint)} does not match {run_dir / 'config.yaml'} ({first}); "
            "the run folder was changed by hand or mixes two runs"
        ) from None
    return TrainedGenerator(method, run_dir, int(state["step"]), cfg.data)
