"""A trained classifier on disk (its weights plus what is needed to rebuild it), and in eval mode.

``tailgan classify`` keeps the selected weights only in memory, so ``tailgan explain`` reads classifier
checkpoints in this format (a plain dict, loaded with ``weights_only=True``)::

    {"format": "tailgan-classifier", "version": 1, "arch": "lenet5", "num_classes": 10,
     "in_channels": 1, "cosine_head": False, "classes": [...], "image_size": 28, "state_dict": {...}}
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from tailgan.errors import TailganError
from tailgan.io import load_checkpoint, save_checkpoint
from tailgan.nets.classifiers import CLASSIFIERS, NormedLinear, build_classifier

FORMAT = "tailgan-classifier"


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (fixed batch-norm statistics) and restore its training flag after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def save_classifier(
    model: nn.Module,
    path: str | Path,
    *,
    arch: str,
    num_classes: int,
    in_channels: int,
    classes: list[str] | None = None,
    image_size: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and its build arguments to ``path`` atomically; returns the path."""
    if arch not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {arch!r}; use one of {', '.join(CLASSIFIERS)}")
    state = {
        "format": FORMAT,
        "version": 1,
        "arch": arch,
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "cosine_head": isinstance(getattr(model, "fc", None), NormedLinear),
        "classes": list(classes) if classes is not None else None,
        "image_size": image_size,
        "extra": extra or {},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    save_checkpoint(state, path)
    return Path(path)


def load_classifier(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the classifier saved by :func:`save_classifier` (eval mode) and return it with its metadata."""
    state = load_checkpoint(path, device)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TailganError(
            f"{path} is not a tailgan classifier checkpoint (no format={FORMAT!r}); write one with "
            f"tailgan.explain.save_classifier(model, path, arch=..., num_classes=..., in_channels=...)"
        )
    model = build_classifier(
        state["arch"], state["num_classes"], state["in_channels"], cosine_head=bool(state["cosine_head"])
    )
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise TailganError(f"{path}: the weights do not fit a {state['arch']}: {str(e).splitlines()[0]}") from None
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k != "state_dict"}
    return model, meta
