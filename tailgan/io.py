"""Writing and reading what tailgan owns on disk: atomic writes and safe checkpoint I/O.

Every file tailgan writes goes through a temp file in the same folder and ``os.replace``, so a crash or
a kill never leaves half a file where a good one was. Checkpoints are loaded as untrusted input
(``weights_only=True``: tensors and plain containers only).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailgan.errors import TailganError

if TYPE_CHECKING:
    import torch


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed onto ``path``, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)  # mkstemp makes 0600 files; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """``write(tmp_path)`` then rename onto ``path``: for writers that take a file name (PIL, matplotlib)."""
    with atomic_path(path) as tmp:
        write(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """torch.save through a temp file + rename: a crash never leaves a truncated checkpoint, and a failed
    write (a full disk) leaves the previous file as it was."""
    import torch  # here, not at the top: tailgan's start-up (``--help``) does not load torch

    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as "RuntimeError: [enforce fail ..."
        reason = getattr(e, "strerror", None) or str(e).split("\n")[0][:160]
        raise TailganError(
            f"could not write checkpoint {path} ({reason}); is the disk full? The previous {Path(path).name}, "
            "if any, is intact"
        ) from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Load a checkpoint as untrusted input: tensors and plain containers only (``weights_only=True``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise TailganError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise TailganError(f"checkpoint {path} is empty (0 bytes): it was never completely written; delete it")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # pickle errors, truncated files, foreign objects
        reason = str(e).split("\n")[0]
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            reason = "it holds objects other than tensors and plain containers"
        raise TailganError(
            f"cannot load checkpoint {path}: {reason}. tailgan loads checkpoints safely (weights_only=True) "
            f"and this file is not a tailgan checkpoint"
        ) from None
