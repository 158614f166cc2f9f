"""``tailgan train``: a run folder, a recipe and the engine's trainer, composed.

Read top to bottom: config -> run folder -> data -> recipe (networks + optimizers) -> resume ->
``Trainer`` with its callbacks (divergence guard, sample grids, evaluation, sync check, log, checkpoints).
Under ``torchrun`` each process trains on its own batches, gradients are averaged over processes, and
only rank 0 writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

import torch

from tailgan.config import apply_overrides, from_dict, to_dict
from tailgan.data import load_data
from tailgan.data.dataset import LongTailedData, data_changes, load_manifest
from tailgan.data.splits import carve_validation
from tailgan.engine import (
    TrainConfig,
    TrainedGenerator,
    Trainer,
    TrainingDiverged,
    build_method,
    init_distributed,
    load_run_config,
    make_config,
)
from tailgan.engine.config import resolve_options
from tailgan.engine.distributed import abort_distributed, finish_distributed
from tailgan.engine.run import run_recipe
from tailgan.errors import TailganError
from tailgan.metrics import evaluate
from tailgan.metrics.evaluator import get_evaluator
from tailgan.outputs import (
    KINDS,
    FolderLock,
    check_output_dir,
    check_writable,
    read_marker,
    write_marker,
)

__all__ = ["TrainConfig", "TrainingDiverged", "build_method", "make_config", "load_run_config", "train"]


def evaluation_during_training(cfg: TrainConfig, out: Path):
    """``evaluate(trainer)``: overall figures of ``cfg.eval_metrics`` for the current generator (rank 0)."""

    def run(trainer: Trainer) -> dict:
        ctx, method = trainer.ctx, trainer.method
        if not ctx.is_main:
            return {}
        extractor = ctx.evaluator() if cfg.eval_feature == "evaluator" else cfg.eval_feature
        gen = TrainedGenerator(method, out, trainer.phase_step, cfg.data)
        result = evaluate(
            gen, trainer.data, metrics=cfg.eval_metrics, ref=cfg.eval_ref, n=cfg.eval_n, extractor=extractor,
            device=ctx.device,
        )  # fmt: skip
        return {k: v for k, v in result.get("overall", {}).items() if isinstance(v, (int, float))}

    return run


def lazy_evaluator(data_config, device: torch.device):
    """The run's evaluator, trained and cached on first use, so evaluation never stops a run."""
    held: dict = {}

    def get():
        if "ev" not in held:
            held["ev"] = get_evaluator(data_config, device=device, log=None)
        return held["ev"]

    return get


def is_run(folder: Path) -> bool:
    """A run folder of an older tailgan (no lock file): its config and checkpoints folder."""
    return (folder / "config.yaml").is_file() and (folder / "checkpoints").is_dir()


CHECKPOINTS = ("last.pt", "best.pt")
# what a run writes; removed when a run that died before its first checkpoint is started again
WRITTEN = ("config.yaml", "data_manifest.json", "valid_split.json", "log.jsonl", "tb", "samples", "eval")
# what a resumed run may change: cadence, evaluation, length, learning rates, device
RESUMABLE = {
    "steps", "log_every", "sample_every", "sample_classes", "ckpt_every", "keep_checkpoints", "eval_every",
    "eval_metrics", "eval_ref", "eval_n", "eval_feature", "best_metric", "optim.g_lr", "optim.d_lr", "device",
}  # fmt: skip


def has_checkpoint(out: Path) -> bool:
    ckpts = out / "checkpoints"
    return ckpts.is_dir() and any(
        p.name in CHECKPOINTS or (p.name.startswith("step_") and p.suffix == ".pt") for p in ckpts.iterdir()
    )


def check_run_folder(out: Path) -> str:
    """``check_output_dir`` for a run folder: a tailgan output of another kind is refused, saying what it is.
    (Whether a live process holds it is checked by taking its lock, on rank 0 only under torchrun.)"""
    state = check_output_dir(out, is_run, "run folder")
    kind = (read_marker(out) or {}).get("kind") if state == "ours" else "run"
    if kind != "run":
        raise TailganError(f"{out} is a {KINDS.get(kind, kind)}, not a training run; choose another --out")
    return state


def open_run_folder(out: Path, resume: bool) -> FolderLock:
    """Check ``out`` before any data is loaded, take its lock, and tidy what killed runs left behind.

    A fresh run goes into an absent or empty folder, or over a run that was killed before its first
    checkpoint (whose files are removed); never into a folder of somebody else's files or over a run with
    checkpoints. ``--resume`` needs a run. The lock is held until the process ends.
    """
    state = check_run_folder(out)
    if resume and not (out / "config.yaml").is_file():
        raise TailganError(f"{out} is not a tailgan run (no config.yaml); give the folder `tailgan train --out` wrote")
    check_writable(out, "run folder")
    lock = FolderLock(out, "run folder")
    try:
        for folder in (out, out / "checkpoints", out / "samples", out / "eval"):  # temp files of killed writers
            for tmp in folder.glob(".*.tmp*") if folder.is_dir() else []:
                tmp.unlink(missing_ok=True)
        if not resume and state == "ours":
            if has_checkpoint(out):
                raise TailganError(
                    f"{out} already holds a run; continue it with --resume {out} or choose another --out"
                )
            for name in WRITTEN:  # a run killed before its first checkpoint: start it again
                path = out / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        if resume and not (out / "checkpoints" / "last.pt").is_file():
            raise TailganError(
                f"{out} has no checkpoint yet (the run stopped before its first one); start it again with "
                f"tailgan train --out {out} and the same settings"
            )
        write_marker(out, "run")
    except BaseException:
        lock.release()
        raise
    return lock


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, overrides: dict | None = None,
          allow_data_change: bool = False, console: bool = True,
          data: LongTailedData | None = None) -> dict:  # fmt: skip
    """Train ``cfg`` into run folder ``out`` (or continue it); returns the last logged record.

    ``overrides``: the settings a resumed run changed (recorded in its log and config.yaml).
    ``allow_data_change``: resume even though the dataset differs from the one the run started on.
    ``console``: progress and log lines on the console (False: only the run folder's files).
    ``data``: images already in memory (``tailgan.data.arrays.in_memory_data``) instead of loading ``cfg.data``.
    """
    out = Path(out)
    rank, world, device = init_distributed(cfg.device)
    is_main = rank == 0
    lock = open_run_folder(out, resume) if is_main else None
    try:
        return _train(cfg, out, resume, overrides or {}, rank, world, device, allow_data_change, console, data)
    finally:
        if lock is not None:
            lock.release()


def hold_out_validation(data, cfg: TrainConfig):
    """``data`` without the validation split a classifier will select on (``valid_fraction`` > 0), and the
    split's record; the generator never sees those images."""
    if not cfg.valid_fraction:
        return data, None
    train_part, valid_part, record = carve_validation(data, cfg.valid_fraction, cfg.valid_seed)
    return dataclasses.replace(data, train=train_part, valid=valid_part), record


def check_same_data(out: Path, manifest: dict, allow_change: bool) -> None:
    """A resumed run trains on the data it started on: per-class counts, pixels and fingerprint are compared
    with the run's ``data_manifest.json``; a change is refused unless ``allow_change``."""
    path = out / "data_manifest.json"
    if not path.is_file():
        if allow_change:
            return
        raise TailganError(f"{path} is missing, so the run's data cannot be checked; pass --allow-data-change to "
                           "resume anyway")  # fmt: skip
    changes = data_changes(load_manifest(path), manifest)
    if changes and not allow_change:
        raise TailganError(
            f"the data of {out} changed since it was trained: {'; '.join(changes)}; restore it, or pass "
            "--allow-data-change to continue the run on the data as it is now"
        )
    if changes:
        print(f"warning: continuing {out} on changed data: {'; '.join(changes)}", file=sys.stderr)


def _train(cfg: TrainConfig, out: Path, resume: bool, overrides: dict, rank: int, world: int, device,
           allow_change: bool = False, console: bool = True, data: LongTailedData | None = None) -> dict:  # fmt: skip
    full = load_data(cfg.data) if data is None else data
    if resume:
        check_same_data(out, full.manifest, allow_change)
    data, split = hold_out_validation(full, cfg)
    _, record = run_recipe(
        cfg, data, out, resume=resume, evaluate=evaluation_during_training(cfg, out),
        evaluator=lazy_evaluator(data.config, device), device=device, rank=rank, world_size=world,
        overrides=overrides, write_data=allow_change, console=console,
        data_files={"valid_split.json": split} if split is not None else {},
    )  # fmt: skip
    return record


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def resume_config(run: str | Path, steps: int | None, overrides: list[str]) -> tuple[TrainConfig, dict]:
    """The run's config with ``--steps`` and the overrides a resumed run may change; the others are refused."""
    old = load_run_config(run, complete=True)
    d = to_dict(old)
    if steps is not None:
        d["steps"] = steps
    new = from_dict(TrainConfig, apply_overrides(d, overrides))
    before, after = flatten(to_dict(old)), flatten(to_dict(new))
    changed = {k: after[k] for k in after if after[k] != before.get(k)}
    frozen = [k for k in changed if k not in RESUMABLE]
    if frozen:
        k = frozen[0]
        raise TailganError(
            f"config key '{k}' cannot change when resuming ({before.get(k)!r} in the run, {after[k]!r} asked); "
            f"a resumed run may change {', '.join(sorted(RESUMABLE))}; start a new run for the rest"
        )
    return resolve_options(new), changed


def cmd_train(args: argparse.Namespace) -> int:
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise TailganError(f"--threads {threads}: give 1 or more CPU threads")
        torch.set_num_threads(threads)
    if args.resume:
        out = args.resume
        cfg, changed = resume_config(out, args.steps, args.overrides or [])
    else:
        if not args.out:
            raise TailganError("give --out RUN (the run folder to write) or --resume RUN")
        out, changed = args.out, {}
        check_run_folder(Path(out))  # before the config and data are loaded
        cfg = make_config(args.method, args.config, args.data, args.root, args.overrides, steps=args.steps)
    try:
        train(cfg, out, resume=bool(args.resume), overrides=changed, allow_data_change=args.allow_data_change)
    except BaseException:
        abort_distributed()
        raise
    print(f"run written to {out}")
    finish_distributed()
    return 0
