"""Run wiring, once: a recipe built for a dataset (``build_trainer``) and run in a folder (``run_recipe``).

``tailgan train`` (after its run-folder checks and data loading), the DFG baseline, the joint classifiers, the
imbalanced-learn sampler and the benchmarks all build their trainer here. What the engine cannot know is
injected from above: the evaluation during training (``evaluate``, needs ``tailgan.metrics``), the evaluator
factory recipes may call (``evaluator``), and any further callbacks.

    trainer, record = run_recipe(cfg, data, "runs/x")                 # a fresh run, files in runs/x
    trainer, record = run_recipe(cfg, data, "runs/x", resume=True)    # continued from checkpoints/last.pt
    trainer = build_trainer(cfg, data)                                # in memory: step it yourself
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from tailgan.config import save_yaml
from tailgan.data import LongTailedData, save_manifest
from tailgan.engine.config import TrainConfig
from tailgan.engine.generator import build_method, checkpoint_path
from tailgan.engine.trainer import (
    Callback,
    Checkpoints,
    DivergenceGuard,
    Evaluation,
    LastRecord,
    RunLog,
    SampleGrid,
    SyncCheck,
    Trainer,
    rebuild_tensorboard,
    stop_on_signals,
)
from tailgan.errors import Interrupted, TailganError
from tailgan.io import atomic_write_json, atomic_write_text, load_checkpoint
from tailgan.methods.spec import DataShape, RunContext
from tailgan.nets.precision import resolve_precision
from tailgan.scores import higher_is_better


def data_shape(data: LongTailedData) -> DataShape:
    """What a recipe is built for: classes, channels, resolution and the training counts."""
    images = data.train.images
    return DataShape(data.num_classes, images.shape[1], images.shape[-1], tuple(data.train.counts()))


def build_trainer(cfg: TrainConfig, data: LongTailedData, callbacks: Sequence[Callback] = (), *,
                  device: str | torch.device = "cpu", rank: int = 0, world_size: int = 1,
                  run_dir: Path | None = None, evaluator: Callable[[], Any] | None = None,
                  log: Callable[[str], None] | None = None) -> Trainer:  # fmt: skip
    """The recipe ``cfg.method`` built for ``data`` (weights seeded by ``cfg.seed``) in a ``Trainer`` with the
    divergence guard and ``callbacks``; nothing is written. ``log`` gets the precision policy's note, if any."""
    device = torch.device(device)
    precision, note = resolve_precision(cfg.precision, device)
    if note and log is not None:
        log(note)
    ctx = RunContext(device=device, rank=rank, world_size=world_size, run_dir=run_dir, evaluator=evaluator,
                     precision=precision)  # fmt: skip
    trainer = Trainer(build_method(cfg, data_shape(data), ctx), data, ctx, [DivergenceGuard(cfg.ckpt_every)])
    trainer.callbacks += list(callbacks)
    trainer.precision_note = note
    return trainer


def run_recipe(cfg: TrainConfig, data: LongTailedData, out: str | Path, *, resume: bool = False,
               callbacks: Sequence[Callback] = (), evaluate: Callable[[Trainer], dict] | None = None,
               evaluator: Callable[[], Any] | None = None, device: str | torch.device = "cpu", rank: int = 0,
               world_size: int = 1, overrides: dict | None = None, write_data: bool = True, console: bool = True,
               steps: int | None = None, finished_ok: bool = False,
               data_files: dict[str, Any] | None = None) -> tuple[Trainer, dict]:  # fmt: skip
    """Train ``cfg`` on ``data`` in run folder ``out`` (or continue it from ``checkpoints/last.pt``); returns
    the trainer and the last log record.

    Rank 0 writes ``config.yaml``, ``data_manifest.json`` (fresh runs, or ``write_data``), ``log.jsonl`` + ``tb/``,
    sample grids and checkpoints at the config's cadences; ``evaluate(trainer) -> {metric: value}`` runs every
    ``eval_every`` steps (``best.pt`` by ``best_metric``). The first SIGTERM / SIGINT finishes the step, writes
    ``last.pt`` and raises :class:`Interrupted`. ``data_files``: further JSON records of the data (e.g.
    ``valid_split.json``), written with the manifest. ``overrides``: what a resumed run changed (its learning
    rates are applied, the rest is recorded); ``steps``: stop after this many steps in this call;
    ``finished_ok``: a run already at its end returns at once instead of asking for a larger ``steps``.
    """
    out, overrides = Path(out), overrides or {}
    trainer = build_trainer(cfg, data, callbacks, device=device, rank=rank, world_size=world_size, run_dir=out,
                            evaluator=evaluator)  # fmt: skip
    trainer.callbacks += [SampleGrid(out, cfg.sample_every, cfg.sample_classes, cfg.seed), SyncCheck(cfg.ckpt_every)]
    if evaluate is not None:
        trainer.callbacks.append(Evaluation(evaluate, cfg.eval_every, cfg.best_metric,
                                            higher_is_better(cfg.best_metric), out))  # fmt: skip
    if resume:
        resume_trainer(trainer, out, overrides, finished_ok)
    if trainer.ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out / "config.yaml")  # a resume records the settings it changed
        if not resume or write_data:
            save_manifest(data.manifest, out / "data_manifest.json")
            for name, record in (data_files or {}).items():
                atomic_write_json(out / name, record)
    log, last = RunLog(out, trainer.ctx.is_main, cfg.steps, console=console), LastRecord()
    trainer.ctx.log = log.write
    trainer.callbacks += [log, last, Checkpoints(out, cfg.ckpt_every, cfg.keep_checkpoints)]
    log.write(start_record(trainer, resume, overrides))
    try:
        with stop_on_signals(trainer):
            if trainer.remaining_steps() > 0:
                trainer.run(steps=steps)
        if trainer.stop_signal is not None:
            stop_after_signal(trainer, out, log)
    finally:
        log.close()
    return trainer, last.record


def resume_trainer(trainer: Trainer, out: Path, overrides: dict, finished_ok: bool) -> None:
    """``trainer`` at the state of ``out``'s ``last.pt``, the resumed run's learning rates applied, its log cut
    back to that checkpoint (a kill between checkpoints left later records) and TensorBoard rebuilt from it."""
    trainer.load_state_dict(load_checkpoint(checkpoint_path(out, "last"), trainer.ctx.device))
    if trainer.remaining_steps() <= 0 and not finished_ok:
        raise TailganError(
            f"{out} is already at step {trainer.phase_step} >= steps={trainer.cfg.steps}; pass a larger --steps to "
            "continue"
        )
    trainer.method.set_learning_rates({k: v for k, v in overrides.items() if k.startswith("optim.")})
    if trainer.ctx.is_main:
        trim_log(out, [p.name for p in trainer.phases], trainer.phase_index, trainer.phase_step)
        rebuild_tensorboard(out)


def start_record(trainer: Trainer, resume: bool, overrides: dict) -> dict:
    """The log's first record of this call: start or resume, where, and how the recipe runs."""
    method, precision, note = trainer.method, trainer.method.precision, trainer.precision_note
    return {
        "event": "resume" if resume else "start", "phase": trainer.phase.name if trainer.phase else "done",
        "step": trainer.phase_step, "precision": precision.name, "channels_last": precision.channels_last,
        **({"compiled": list(method.compiled_nets)} if method.compiled else {}),
        **({"overrides": overrides} if overrides else {}), **({"note": note} if note else {}),
        **({"compile_note": method.compile_note} if method.compile_note else {}),
    }  # fmt: skip


def trim_log(out: Path, phases: list[str], phase_index: int, step: int) -> None:
    """Drop log records after the checkpoint a run resumes from (a kill between checkpoints left them)."""
    path = out / "log.jsonl"
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by the kill: nothing after it was written by the run
        where = (phases.index(r["phase"]) if r.get("phase") in phases else len(phases), int(r.get("step", 0)))
        if where > (phase_index, step):
            break
        keep.append(line)
    if len(keep) != len(lines):
        atomic_write_text(path, "".join(f"{line}\n" for line in keep))


def stop_after_signal(trainer: Trainer, out: Path, log: RunLog) -> None:
    """A signal stopped ``trainer`` after a whole step: write ``last.pt`` there, say so, exit 128 + signal."""
    name = signal.Signals(trainer.stop_signal).name
    trainer.save(checkpoint_path(out, "last"))
    where = f"step {trainer.phase_step} of {trainer.phase.name}" if trainer.phase else "the end"
    log.write({"event": "stopped", "signal": name, "phase": trainer.phase.name if trainer.phase else "done",
               "step": trainer.phase_step})  # fmt: skip
    raise Interrupted(
        f"stopped by {name} at {where}; checkpoint written to {checkpoint_path(out, 'last')}; continue with "
        f"tailgan train --resume {out}",
        trainer.stop_signal,
    )
