"""Protecting what the user owns: one owner per output folder, no output inside an input, no stale temp files.

- :func:`check_output_dir` says what a folder is (absent, empty, a tailgan output, a file, or somebody
  else's folder) and refuses, before any data is loaded, what cannot be written to.
- :class:`FolderLock` is an exclusive ``flock`` on ``FOLDER/.tailgan.lock`` held for the whole run; the OS
  releases it on any death, so a killed run never leaves a folder locked. A second writer is refused with
  the holder's pid.
- :func:`check_not_inside` refuses an output that is, contains or lies inside a protected input (the data
  root, a run folder), so ``--overwrite`` can never delete one.
- :func:`remove_stale_temp` removes the temp files and folders of writers that died.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tailgan.errors import TailganError

LOCK_NAME = ".tailgan.lock"


def check_output_dir(out: str | os.PathLike, is_ours: Callable[[Path], bool], what: str = "output folder") -> str:
    """``"absent"``, ``"empty"`` or ``"ours"`` (tailgan's lock file is there, or ``is_ours(out)``); a TailganError
    for a file, a folder tailgan cannot write to, or a non-empty folder that is not tailgan's."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TailganError(f"{what} {out} is a file, not a folder; choose a folder path")
    resolved = out.resolve()
    if str(resolved).startswith(("/proc/", "/sys/", "/dev/")) or str(resolved) in ("/proc", "/sys", "/dev"):
        raise TailganError(f"{what} {out} is inside a system folder ({resolved.parts[1]}); choose a folder of yours")
    if not out.exists():
        parent = next((p for p in resolved.parents if p.exists()), Path("/"))
        if not os.access(parent, os.W_OK):
            raise TailganError(f"cannot create {what} {out}: {parent} is not writable")
        return "absent"
    if not os.access(out, os.W_OK | os.X_OK):
        raise TailganError(f"cannot write to {what} {out}: it is not writable (read-only file system or permissions)")
    entries = [p.name for p in out.iterdir()]
    if not entries:
        return "empty"
    if LOCK_NAME in entries or is_ours(out):
        return "ours"
    raise TailganError(
        f"{what} {out} already holds files that tailgan did not write ({', '.join(sorted(entries)[:3])}"
        f"{', ...' if len(entries) > 3 else ''}); choose an empty or new folder"
    )


def check_writable(out: Path, what: str = "output folder") -> None:
    """Create ``out`` and prove it takes a file (read-only mounts pass ``os.access`` as root)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".tailgan-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TailganError(f"cannot write to {what} {out}: {e.strerror or e}") from None


class FolderLock:
    """An exclusive lock on a folder for as long as this object lives (or until ``release``).

    A run folder holds its lock file (``RUN/.tailgan.lock``); an output that is written elsewhere and renamed
    into place (``beside=True``: exports, augmented sets, classify results) is locked by a file beside it,
    ``.OUT.tailgan.lock``.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "run folder", beside: bool = False) -> None:
        folder = Path(folder)
        if beside:
            folder.parent.mkdir(parents=True, exist_ok=True)
        self.path = folder.parent / f".{folder.name}{LOCK_NAME}" if beside else folder / LOCK_NAME
        self.beside = beside
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise TailganError(
                    f"{what} {folder} is in use by process {holder}; wait for it to finish or choose another folder"
                ) from None
            raise
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            if self.beside:  # a lock file beside an output is litter once the output is written
                self.path.unlink(missing_ok=True)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_not_inside(out: str | os.PathLike, protected: list[str | os.PathLike | None]) -> None:
    """Refuse an output that is, contains or lies inside one of the ``protected`` inputs (data roots, runs)."""
    o = Path(out).resolve()
    for path in protected:
        if not path:
            continue
        p = Path(path).resolve()
        if o == p or p in o.parents or o in p.parents:
            raise TailganError(
                f"output folder {out} overlaps {path}, an input tailgan must not write into; choose another --out"
            )


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_name(target: Path, kind: str = "tmp") -> str:
    """A temp name beside ``target`` that records its writer's pid: ``.NAME.tmp-PID-``."""
    return f".{target.name}.{kind}-{os.getpid()}-"


def remove_stale_temp(target: Path) -> int:
    """Remove temp files/folders beside ``target`` left by writers that are no longer running; their count."""
    removed = 0
    parent = target.parent
    if not parent.is_dir():
        return 0
    for p in parent.glob(f".{target.name}.*-*-*"):
        parts = p.name[len(target.name) + 2 :].split("-")
        if len(parts) < 2 or not parts[1].isdigit() or pid_alive(int(parts[1])):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed += 1
    return removed
