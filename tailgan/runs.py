"""Run folders: atomic checkpoints, and loading a trained generator back for sampling."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tailgan.errors import TailganError


def save_checkpoint(state: dict, path: str | Path) -> None:
    """torch.save through a temp file + rename: a crash never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load a checkpoint as untrusted input: tensors and plain containers only (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise TailganError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # pickle errors, truncated files, foreign objects
        raise TailganError(f"cannot load checkpoint {path}: {e}") from None


def checkpoint_path(run_dir: str | Path, checkpoint: str = "last") -> Path:
    """``last`` / ``best`` / a step number / a file path -> the checkpoint file of a run."""
    run_dir = Path(run_dir)
    if checkpoint in ("last", "best"):
        return run_dir / "checkpoints" / f"{checkpoint}.pt"
    if str(checkpoint).isdigit():
        return run_dir / "checkpoints" / f"step_{int(checkpoint):07d}.pt"
    return Path(checkpoint)


class TrainedGenerator(nn.Module):
    """A trained run's generator, ready to sample any class: ``g.sample(labels, seed=0)``."""

    def __init__(self, method: Any, run_dir: Path, step: int, data_config: Any) -> None:
        super().__init__()
        self.method = method
        self.net = method.generator_for_sampling()  # registered, so .to() and .parameters() work
        self.run_dir, self.step, self.data_config = run_dir, step, data_config
        self.num_classes, self.img_channels, self.img_size = method.num_classes, method.img_channels, method.img_size

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, seed: int | None = None, batch_size: int = 256) -> torch.Tensor:
        """Float images in [-1, 1] (N, C, H, W) for ``labels``; the same seed gives the same images."""
        labels = torch.as_tensor(labels, dtype=torch.long)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise TailganError(f"class labels must be in 0..{self.num_classes - 1}")
        gen = torch.Generator(device=self.method.device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        chunks = [
            self.method.sample(labels[i : i + batch_size], generator=gen).cpu()
            for i in range(0, len(labels), batch_size)
        ]
        if not chunks:
            return torch.zeros(0, self.img_channels, self.img_size, self.img_size)
        return torch.cat(chunks)

    def forward(self, labels: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        return self.sample(labels, seed)


def load_generator(
    run_dir: str | Path, checkpoint: str = "last", device: str | torch.device = "cpu"
) -> TrainedGenerator:
    """The generator of a run folder written by ``tailgan train`` (the EMA copy when the run kept one)."""
    from tailgan.train import build_method, load_run_config

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    state = load_checkpoint(checkpoint_path(run_dir, checkpoint), device)
    meta = state["meta"]
    method = build_method(cfg, meta["num_classes"], meta["img_channels"], meta["img_size"], torch.device(device))
    method.load_state_dict(state["method"], weights_only=True)
    return TrainedGenerator(method, run_dir, int(state["step"]), cfg.data)
