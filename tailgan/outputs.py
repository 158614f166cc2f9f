"""Protecting what the user owns: one owner per output, a marker in every output, no output inside an input.

The rules every command with an output follows (README, "Guarantees"):

- **One lock rule.** An output ``OUT`` (a run folder, an export, a sample folder, a classify output, ...) is
  locked by an exclusive ``flock`` on ``.OUT.tailgan.lock`` beside it, held for as long as the writing
  process lives (:class:`FolderLock`); the OS releases it on any death. A folder locked by a live tailgan
  process is refused to every other command, naming the pid (:func:`check_unlocked`).
- **A marker in every output.** Every folder tailgan creates holds ``.tailgan-output.json`` naming its kind
  (``run``, ``export``, ``samples``, ``augment``, ``classify``, ``bench``, ``demo``) and whether it was
  finished (:func:`write_marker`). ``--overwrite`` replaces only a tailgan folder of the same kind; a folder of
  another kind or with files tailgan did not write is refused in one line saying what it is
  (:func:`claim_output`).
- **Never inside an input.** :func:`check_not_inside` refuses an output that is, contains or lies inside a
  protected input (the data root, a run folder), so ``--overwrite`` can never delete one.
- :func:`remove_stale_temp` removes the temp files and folders of writers that died.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tailgan.errors import TailganError
from tailgan.version import __version__

LOCK_NAME = ".tailgan.lock"  # OUT/.tailgan.lock: the lock of run folders before the one lock rule (still honoured)
MARKER = ".tailgan-output.json"
EXPLAIN_TAG = "tailgan explain"  # the PNG "Software" text of explain's figures: a file explain --out may replace
# what each kind of output is, for the refusals; and how a folder of that kind written before markers looks
KINDS = {
    "run": "training run (tailgan train)",
    "export": "dataset export (tailgan data export)",
    "samples": "folder of generated images (tailgan sample)",
    "augment": "augmented dataset (tailgan augment)",
    "classify": "classify output (tailgan classify)",
    "bench": "bench output (tailgan bench classify)",
    "demo": "demo folder (tailgan demo)",
}
# how to continue an unfinished output of a kind that can be continued
CONTINUE = {"run": "tailgan train --resume {out}", "classify": "the same tailgan classify command with --resume"}


def _legacy_kind(out: Path) -> str | None:
    """The kind of a tailgan folder written before markers existed (None: not recognisably tailgan's)."""
    names = {p.name for p in out.iterdir()}
    if LOCK_NAME in names or ((out / "config.yaml").is_file() and (out / "checkpoints").is_dir()):
        return "run"
    if ".tailgan-demo" in names:
        return "demo"
    if {"manifest.json", "classes.json", "train"} <= names:
        try:
            manifest = json.loads((out / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict):
            return None
        return "samples" if manifest.get("generated") else "augment" if "files" in manifest else "export"
    if {"bench.json", "bench.md"} <= names:
        return "bench"
    if "metrics.json" in names and any(n.startswith("seed") for n in names) or "confusion.png" in names:
        return "classify"
    return None


def read_marker(out: str | os.PathLike) -> dict | None:
    """``{"kind", "complete", ...}`` of a tailgan output (markerless older outputs recognised by their files);
    None for a folder tailgan did not write."""
    out = Path(out)
    path = out / MARKER
    if path.is_file():
        try:
            marker = json.loads(path.read_text())
        except (OSError, ValueError):
            marker = None
        if isinstance(marker, dict) and marker.get("kind") in KINDS:
            return marker
    kind = _legacy_kind(out) if out.is_dir() else None
    return {"kind": kind, "complete": True, "legacy": True} if kind else None


def write_marker(out: str | os.PathLike, kind: str, complete: bool = False) -> None:
    """Mark ``out`` as a tailgan output of ``kind`` (``complete``: its writer finished)."""
    path = Path(out) / MARKER
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{MARKER}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"kind": kind, "complete": complete, "tailgan": __version__}, f)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(target: Path) -> Path:
    """A temp folder beside ``target`` (to be renamed onto it), with the umask's mode like any new folder."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=temp_name(target)))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    return tmp


def check_output_dir(out: str | os.PathLike, is_ours: Callable[[Path], bool], what: str = "output folder") -> str:
    """``"absent"``, ``"empty"`` or ``"ours"`` (tailgan's lock file is there, or ``is_ours(out)``); a TailganError
    for a file, a folder tailgan cannot write to, or a non-empty folder that is not tailgan's."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise TailganError(
            f"{what} {out} is a symbolic link to {os.readlink(out)}, which does not exist; remove the link or give "
            "another folder"
        )
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
    if MARKER in entries or LOCK_NAME in entries or is_ours(out):
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


def lock_path(folder: str | os.PathLike) -> Path:
    """The one lock of an output ``OUT``: ``.OUT.tailgan.lock`` beside it (a folder that is replaced by a
    rename keeps its lock)."""
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}{LOCK_NAME}"


def _holder(path: Path) -> str | None:
    """The pid holding the lock file ``path`` (None: nobody)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)
    return None


def check_unlocked(folder: str | os.PathLike, what: str = "output folder") -> None:
    """Refuse ``folder`` when a live tailgan process holds it (its lock beside it, or an older tailgan's inside)."""
    folder = Path(folder)
    for path in (lock_path(folder), folder / LOCK_NAME):
        holder = _holder(path)
        if holder is not None and holder != str(os.getpid()):
            raise TailganError(
                f"{what} {folder} is in use by process {holder}; wait for it to finish or choose another folder"
            )


class FolderLock:
    """An exclusive lock on an output folder for as long as this object lives (or until ``release``): the one
    lock rule, ``.OUT.tailgan.lock`` beside ``OUT``. A second writer is refused naming the holder's pid."""

    def __init__(self, folder: str | os.PathLike, what: str = "output folder") -> None:
        folder = Path(folder)
        self.path = lock_path(folder)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_unlocked(folder, what)  # an older tailgan's lock inside the folder
        for _ in range(20):  # the holder may unlink the file between our open and our lock: open it again
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "another process"
                os.close(self.fd)
                self.fd = None
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    raise TailganError(
                        f"{what} {folder} is in use by process {holder}; wait for it to finish or choose another "
                        "folder"
                    ) from None
                raise
            if self.path.exists() and os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                break
            os.close(self.fd)
            self.fd = None
        else:
            raise TailganError(f"could not lock {what} {folder}: its lock file {self.path} keeps changing")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # litter once the output is written; see the inode check above
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class OutputClaim(FolderLock):
    """The lock of an output being written, with its kind: ``finish()`` marks it complete and releases it."""

    def __init__(self, folder: str | os.PathLike, kind: str, what: str = "output folder") -> None:
        super().__init__(folder, what)
        self.folder, self.kind = Path(folder), kind

    def finish(self) -> None:
        if self.folder.is_dir():
            write_marker(self.folder, self.kind, complete=True)
        self.release()


def claim_output(
    out: str | os.PathLike,
    kind: str,
    overwrite: bool = False,
    protected: list[str | os.PathLike | None] = (),
    resume: bool = False,
    in_place: bool = True,
) -> OutputClaim:
    """The one output check of every command that writes a folder, then its lock.

    Refused, in one line saying what the folder is: an output overlapping a ``protected`` input; a folder a
    live tailgan process holds; a non-empty folder tailgan did not write; a tailgan folder of another kind;
    a tailgan folder of this kind without ``overwrite`` (or ``resume``). With ``overwrite``, an ``in_place``
    output's old contents are removed now (nothing of an earlier output stays beside the new one); outputs
    written beside and renamed into place (``in_place=False``) are replaced by the rename. The folder is
    created and marked (unfinished) when ``in_place``.
    """
    out = Path(out)
    what = "--out"
    check_not_inside(out, list(protected))
    state = check_output_dir(out, lambda p: read_marker(p) is not None, what)
    claim = OutputClaim(out, kind, what)
    try:
        if state == "ours":
            _check_replaceable(out, kind, overwrite, resume)
            if overwrite and not resume and in_place:
                for p in out.iterdir():
                    if p.name != MARKER:
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        if in_place:
            out.mkdir(parents=True, exist_ok=True)
            if not (resume and state == "ours"):
                write_marker(out, kind, complete=False)
    except BaseException:
        claim.release()
        raise
    return claim


def _check_replaceable(out: Path, kind: str, overwrite: bool, resume: bool) -> None:
    """A tailgan output may be replaced (``overwrite``) or continued (``resume``) only by one of its kind."""
    marker = read_marker(out) or {}
    found = marker.get("kind")
    if found != kind:
        raise TailganError(
            f"--out {out} is a {KINDS.get(found, found)}, not a {KINDS[kind]}; --overwrite replaces only a {kind} "
            "output, so choose another --out"
        )
    if resume:
        return
    if not overwrite:
        unfinished = not marker.get("complete", True)
        hint = CONTINUE.get(kind, "").format(out=out) if unfinished else ""
        state = f"an unfinished {KINDS[kind]} (its writer stopped)" if unfinished else f"a {KINDS[kind]}"
        options = (f"continue it with {hint}, " if hint else "") + "replace it with --overwrite or choose another --out"
        raise TailganError(f"--out {out} already holds {state}; {options}")


def is_explain_figure(path: Path) -> bool:
    """A PNG that ``tailgan explain`` wrote (its Software text), which a later explain may replace."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            return img.format == "PNG" and img.info.get("Software") == EXPLAIN_TAG
    except OSError:
        return False


def check_output_file(out: str | os.PathLike, overwrite: bool, is_ours: Callable[[Path], bool],
                      protected: list[str | os.PathLike | None] = (), what: str = "--out",
                      ours: str = "a file this command wrote") -> Path:  # fmt: skip
    """The output check of commands that write one file (report, eval JSON, figures): never a folder, never
    over an existing file of a protected input, over another file only when it is ours or ``overwrite``."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise TailganError(f"{what} {out} is a symbolic link to {os.readlink(out)}, which does not exist")
    if out.is_dir():
        raise TailganError(f"{what} {out} is a folder; give a file name inside it")
    if out.exists() and not is_ours(out):
        o = out.resolve()
        for path in protected:
            if path and (o == Path(path).resolve() or Path(path).resolve() in o.parents):
                raise TailganError(
                    f"{what} {out} is a file of the input {path}, not a file this command wrote; choose another {what}"
                )
        if not overwrite:
            raise TailganError(f"{what} {out} exists and is not {ours}; choose another {what} or pass --overwrite")
    return out


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
