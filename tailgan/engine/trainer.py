"""The steppable trainer every recipe runs in, and its callbacks.

``Trainer(method, data, ctx, callbacks)`` walks the recipe's phases in order; ``step()`` makes one step of
the current phase (beginning and ending phases as it goes) and returns its losses, ``run()`` steps to the
end. The callbacks' contract (:class:`Callback`) has two rounds after every step, so their order in the list
does not matter: ``on_step`` sees the :class:`StepEvent` and *returns* what it adds to the step's log record
(an evaluation's figures, a DDP sync check), ``after_step`` then sees the finished record (the log, the last
record, checkpoints). The trainer's state (phase, step, every stream's position, the
recipe's networks, optimizers and random generators) is one checkpoint, so N steps + resume + N steps
equals 2N steps bit for bit on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from tailgan.data import LongTailedData
from tailgan.engine.distributed import any_rank, ranks_in_sync
from tailgan.engine.streams import Batches
from tailgan.errors import TailganError
from tailgan.io import atomic_write, save_checkpoint
from tailgan.methods.spec import Phase, RunContext, due
from tailgan.progress import LineProgress, progress


class TrainingDiverged(TailganError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


@dataclass
class StepEvent:
    """What callbacks see after a step: the phase, its step, whether it was the phase's last, the step's
    losses (tensors) and its log record: in ``on_step`` the trainer's averages at logging steps (empty
    between them), in ``after_step`` the finished record with every callback's fields."""

    phase: Phase
    step: int
    last: bool
    losses: dict[str, torch.Tensor]
    record: Mapping[str, Any] = field(default_factory=dict)


class Callback:
    """Hooks of the training loop; each does one thing (log, grid, evaluate, checkpoint, guard).

    - ``on_start(trainer)``: once per ``run()``, before its first step;
    - ``on_step(trainer, event) -> dict | None``: observe the step, act on it (a guard raises, a grid is
      written) and return the fields it adds to the step's log record (``None``: nothing). Two callbacks
      returning the same field is an error;
    - ``after_step(trainer, event)``: the record is finished (read-only); writers act on it;
    - ``on_end(trainer)``: ``run()`` reached its end.
    """

    def on_start(self, trainer: Trainer) -> None:  # noqa: B027 - optional hook
        pass

    def on_step(self, trainer: Trainer, event: StepEvent) -> dict | None:  # noqa: B027 - optional hook
        return None

    def after_step(self, trainer: Trainer, event: StepEvent) -> None:  # noqa: B027 - optional hook
        pass

    def on_end(self, trainer: Trainer) -> None:  # noqa: B027 - optional hook
        pass


def step_record(event: StepEvent, fields: list[tuple[str, dict]]) -> Mapping[str, Any]:
    """The step's log record: the trainer's averages plus each callback's fields (a record made only by a
    callback, e.g. an evaluation between logging steps, still names its phase and step)."""
    if not fields:
        return MappingProxyType(event.record)  # the trainer's own dict, made for this step: no copy
    record = dict(event.record) or {"phase": event.phase.name, "step": event.step}
    owner = dict.fromkeys(record, "the trainer")
    for name, extra in fields:
        clash = [k for k in extra if k in owner and k not in ("phase", "step")]
        if clash:
            raise TailganError(f"callbacks {owner[clash[0]]} and {name} both set the log field {clash[0]!r}")
        record.update(extra)
        owner.update(dict.fromkeys(extra, name))
    return MappingProxyType(record)


class Trainer:
    """Trains ``method`` on ``data`` through its phases; see the module docstring."""

    def __init__(
        self, method: Any, data: LongTailedData, ctx: RunContext | None = None, callbacks: list[Callback] = ()
    ) -> None:
        self.method, self.data = method, data
        self.ctx = ctx or method.ctx
        self.cfg = method.cfg
        self.callbacks = list(callbacks)
        self.phases = method.phases()
        if not any(p.main for p in self.phases):
            self.phases[-1].main = True
        self.batches = Batches(
            data, method.streams(), batch_size=self.cfg.optim.batch_size, seed=self.cfg.seed, device=self.ctx.device,
            flip_generator=method.gen, rank=self.ctx.rank, world_size=self.ctx.world_size, precision=method.precision,
        )  # fmt: skip
        self.phase_index, self.phase_step, self.begun = 0, 0, False
        self.best: dict | None = None
        self.stop_signal: int | None = None  # set by stop_on_signals: finish the step, then stop
        self.precision_note: str | None = None  # why the precision policy fell back, for the run's first record
        self._sums: dict[str, torch.Tensor] = {}
        self._count, self._t0 = 0, time.perf_counter()

    # -- position ------------------------------------------------------------------------------------------------
    @property
    def phase(self) -> Phase | None:
        return self.phases[self.phase_index] if self.phase_index < len(self.phases) else None

    @property
    def done(self) -> bool:
        return self.phase_index >= len(self.phases)

    def _advance_phase(self) -> None:
        self.phase_index, self.phase_step, self.begun = self.phase_index + 1, 0, False
        self._sums, self._count, self._t0 = {}, 0, time.perf_counter()

    def _enter_phase(self) -> None:
        """Move to a phase with steps left to make: begin it (it may be skipped, e.g. a saved pre-training was
        reused) and end the phases whose steps are all made. A phase ends lazily, when the next step or the
        end of ``run`` needs it, so a checkpoint at its last step resumes into its end hook exactly as the
        uninterrupted run went on."""
        while not self.done:
            phase = self.phase
            if self.begun and self.phase_step < phase.steps:
                return
            if not self.begun:
                self.begun = True
                skip = phase.begin(self.data) if phase.begin is not None else False
                if not skip and phase.steps > 0:
                    return
            if phase.end is not None:
                phase.end(self.data)
            self._advance_phase()

    def remaining_steps(self) -> int:
        """Steps left in this phase and the ones after it (phases that will be skipped counted in full)."""
        if self.done:
            return 0
        return max(self.phase.steps - self.phase_step, 0) + sum(p.steps for p in self.phases[self.phase_index + 1 :])

    # -- stepping ---------------------------------------------------------------------------------------------------
    def step(self) -> dict[str, torch.Tensor]:
        """One step of the current phase; returns its (detached) losses."""
        self._enter_phase()
        if self.done:
            raise TailganError("training is finished: every phase has made its steps")
        phase, method = self.phase, self.method
        self.phase_step += 1
        losses = phase.step(self.batches, self.phase_step)
        method.sync_buffers()
        if method.ema and phase.main:
            method.update_ema(self.phase_step)
        last = self.phase_step >= phase.steps
        event = StepEvent(phase, self.phase_step, last, losses)
        for k, v in losses.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        log_every = phase.log_every or self.cfg.log_every
        if due(self.phase_step, log_every, last):
            elapsed = time.perf_counter() - self._t0
            event.record = {
                "phase": phase.name,
                "step": self.phase_step,
                **{k: float(v) / self._count for k, v in self._sums.items()},
                "steps_per_s": self._count / max(elapsed, 1e-9),
            }
            if phase.record is not None:
                event.record.update(phase.record(self.data, event.record))
            self._sums, self._count, self._t0 = {}, 0, time.perf_counter()
        fields = [(type(cb).__name__, extra) for cb in self.callbacks if (extra := cb.on_step(self, event))]
        event.record = step_record(event, fields)
        for cb in self.callbacks:
            cb.after_step(self, event)
        return losses

    def run(self, steps: int | None = None, phase: str | None = None) -> None:
        """Step until every phase is done (or ``steps`` steps were made, or the phase ``phase`` ended)."""
        n = 0
        names = [p.name for p in self.phases]
        if phase is not None and phase not in names:
            raise TailganError(f"no phase {phase!r}; this recipe's phases are {', '.join(names)}")
        stop_at = names.index(phase) + 1 if phase is not None else len(self.phases)
        for cb in self.callbacks:
            cb.on_start(self)
        while (steps is None or n < steps) and self.phase_index < stop_at and not self.stopping():
            self._enter_phase()
            if self.phase_index >= stop_at:
                break
            self.step()
            n += 1
        if self.stop_signal is not None:
            return  # stopped by a signal: training has not ended, the caller writes the checkpoint and the log
        if steps is None or n < steps:
            self._enter_phase()  # end the phases whose last step was just made
        for cb in self.callbacks:
            cb.on_end(self)

    def stopping(self) -> bool:
        """Whether a signal asked to stop (on any rank, so every process stops after the same step). Under DDP
        the ranks agree every 10th step only: the agreement is a host sync, which the step loop otherwise avoids."""
        if self.ctx.world_size > 1 and due(self.phase_step, 10):
            flag = torch.tensor(self.stop_signal or 0, device=self.ctx.device)
            if any_rank(flag, self.ctx.world_size):
                self.stop_signal = self.stop_signal or int(signal.SIGTERM)
        return self.stop_signal is not None

    # -- checkpoints -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        m = self.method
        return {
            "step": self.phase_step,
            "phase": self.phase.name if self.phase else "done",
            "phase_index": self.phase_index,
            "phase_begun": self.begun,
            "method": m.state_dict(),
            "streams": self.batches.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best": self.best,
            # the losses summed since the last log record, so a stop between log steps resumes the same averages
            "log_sums": {k: float(v) for k, v in self._sums.items()},
            "log_count": self._count,
            "meta": {
                "num_classes": m.num_classes,
                "img_channels": m.img_channels,
                "img_size": m.img_size,
                "class_counts": list(m.shape.class_counts),
                "method": self.cfg.method,
                "output": {"kind": m.output.kind, "shape": list(m.output.shape)},
            },
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.method.load_state_dict(state["method"])
        except (RuntimeError, KeyError) as e:  # shapes or networks that do not match config.yaml
            first = str(e).strip().split("\n")
            detail = first[1].strip() if len(first) > 1 else first[0]
            raise TailganError(
                f"the checkpoint does not match the run's config.yaml ({detail[:200]}); the run folder was changed "
                "by hand or mixes two runs"
            ) from None
        self.batches.load_state_dict(state["streams"])
        torch.set_rng_state(state["torch_rng"])
        self.phase_index, self.phase_step = int(state["phase_index"]), int(state["step"])
        self.begun = bool(state["phase_begun"])
        self.best = state.get("best")
        self._sums, self._count = dict(state.get("log_sums", {})), int(state.get("log_count", 0))

    def non_finite_weights(self) -> list[str]:
        """Networks (and EMA copies) holding a NaN/Inf parameter or buffer."""
        bad = []
        for kind, nets in (("", self.method.nets), ("EMA ", self.method.ema)):
            for name, net in nets.items():
                tensors = [t for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()]
                if tensors and not torch.stack([t.detach().isfinite().all() for t in tensors]).all():
                    bad.append(kind + name)
        return bad

    def save(self, path: Path) -> None:
        """Write the trainer's state to ``path``; refused (TrainingDiverged) when a weight is NaN/Inf, so a
        finite checkpoint is never replaced by a broken one."""
        if not self.ctx.is_main:
            return
        bad = self.non_finite_weights()
        if bad:
            raise TrainingDiverged(
                f"the weights of {', '.join(bad)} became NaN/Inf by step {self.phase_step} ({self.phase.name}); "
                f"training stopped without writing {path.name}. {self.kept_checkpoint()} "
                "Try a lower learning rate (optim.g_lr / optim.d_lr) or a gradient penalty."
            )
        save_checkpoint(self.state_dict(), path)

    def kept_checkpoint(self) -> str:
        """What a divergence message can promise about the checkpoint on disk."""
        last = self.ctx.run_dir / "checkpoints" / "last.pt" if self.ctx.run_dir is not None else None
        if last is not None and last.is_file():
            return f"The last good checkpoint is kept: {last}."
        return "No checkpoint had been written yet."


@contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """The first SIGTERM / SIGINT lets the current step finish and stops the trainer (the caller then writes its
    checkpoint); a second one exits at once. Outside the main thread signals cannot be caught: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_signal is not None:
            os._exit(128 + signum)
        trainer.stop_signal = signum
        print(f"{signal.Signals(signum).name}: finishing the current step and writing a checkpoint "
              "(send it again to exit at once)", file=sys.stderr, flush=True)  # fmt: skip

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- callbacks ------------------------------------------------------------------------------------------------------
class DivergenceGuard(Callback):
    """Stops training when a loss is NaN/Inf (on any rank), naming the loss and the first step it happened.

    The check accumulates on the device (the first bad step of each loss) and is read back, one host sync,
    only at logging steps, every ``check_every`` steps (the checkpoint cadence, so no checkpoint follows an
    unchecked loss) and at a phase's last step: the step loop never waits for the device otherwise.
    """

    def __init__(self, check_every: int = 1) -> None:
        self.check_every = check_every
        self.first_bad: dict[str, torch.Tensor] = {}

    def on_step(self, trainer: Trainer, event: StepEvent) -> None:
        for name, v in event.losses.items():
            first = self.first_bad.get(name)
            if first is None:
                first = self.first_bad[name] = torch.zeros((), dtype=torch.long, device=v.device)
            bad = ~torch.isfinite(v.detach().float())
            self.first_bad[name] = torch.where(bad & (first == 0), torch.full_like(first, event.step), first)
        if not (event.record or due(event.step, self.check_every, event.last)) or not self.first_bad:
            return
        names = list(self.first_bad)
        steps = torch.stack([self.first_bad[n] for n in names]).cpu()
        if any_rank((steps > 0).any(), trainer.ctx.world_size):
            if (steps > 0).any():
                i = int(torch.where(steps > 0, steps, steps.max() + 1).argmin())
                name, step = names[i], int(steps[i])
            else:
                name, step = "(on another rank)", event.step
            raise TrainingDiverged(
                f"loss {name} became NaN/Inf at step {step} ({event.phase.name}); training stopped. "
                f"{trainer.kept_checkpoint()} Try a lower learning rate (optim.g_lr / optim.d_lr) or a gradient "
                "penalty."
            )
        if event.last:
            self.first_bad = {}


class SampleGrid(Callback):
    """``samples/step_N.png`` every ``every`` steps of the main phase: one row per class, fixed noise."""

    def __init__(self, out: Path, every: int, max_classes: int, seed: int) -> None:
        self.out, self.every, self.max_classes, self.seed = out, every, max_classes, seed

    def on_step(self, trainer: Trainer, event: StepEvent) -> None:
        if not (self.every and event.phase.main and trainer.ctx.is_main and due(event.step, self.every, event.last)):
            return
        m = trainer.method
        grid = m.sample_grid(min(m.num_classes, self.max_classes), 8, self.seed)
        if grid is None:
            return
        from torchvision.utils import save_image  # torchvision's image writer, imported on the rank that writes

        images, nrow = grid
        path = self.out / "samples" / f"step_{event.step:07d}.png"
        atomic_write(path, lambda tmp: save_image(images, tmp, nrow=nrow, normalize=True, value_range=(-1, 1)))


class Evaluation(Callback):
    """Every ``every`` main-phase steps: ``evaluate(trainer) -> {metric: value}`` into the log record, and
    ``checkpoints/best.pt`` when ``metric`` improved (``higher_is_better`` gives its direction)."""

    def __init__(self, evaluate: Any, every: int, metric: str, higher_is_better: bool, out: Path) -> None:
        self.evaluate, self.every, self.metric, self.higher, self.out = evaluate, every, metric, higher_is_better, out

    def on_step(self, trainer: Trainer, event: StepEvent) -> dict | None:
        if not (self.every and event.phase.main and due(event.step, self.every, event.last)):
            return None
        scores = self.evaluate(trainer)
        if not (trainer.ctx.is_main and scores):
            return None
        value, best = scores.get(self.metric), trainer.best
        if value is not None and (best is None or (value > best["value"] if self.higher else value < best["value"])):
            trainer.best = {"metric": self.metric, "value": value, "step": event.step}
            trainer.save(self.out / "checkpoints" / "best.pt")
        return scores


class Checkpoints(Callback):
    """``checkpoints/last.pt`` (and ``step_N.pt`` with ``keep``) every ``every`` steps and at each phase's end;
    under DDP the record says whether every rank holds the same weights."""

    def __init__(self, out: Path, every: int, keep: bool = False) -> None:
        self.out, self.every, self.keep = out, every, keep

    def at_checkpoint(self, event: StepEvent) -> bool:
        return due(event.step, self.every, event.last)

    def after_step(self, trainer: Trainer, event: StepEvent) -> None:
        if not self.at_checkpoint(event):
            return
        trainer.save(self.out / "checkpoints" / "last.pt")
        if self.keep and event.phase.main:
            trainer.save(self.out / "checkpoints" / f"step_{event.step:07d}.pt")


class SyncCheck(Callback):
    """Under DDP, at checkpoint steps: whether every rank holds identical weights, into the record."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_step(self, trainer: Trainer, event: StepEvent) -> dict | None:
        if trainer.ctx.world_size > 1 and due(event.step, self.every, event.last):
            return {"ddp_in_sync": ranks_in_sync(trainer.method.nets), "world_size": trainer.ctx.world_size}
        return None


class LastRecord(Callback):
    """Keeps the last log record (what ``tailgan.train.train`` returns)."""

    def __init__(self) -> None:
        self.record: dict = {}

    def after_step(self, trainer: Trainer, event: StepEvent) -> None:
        if event.record:
            self.record = dict(event.record)


def add_scalars(tb: Any, record: dict) -> None:
    """A log record's numbers as TensorBoard scalars, ``phase/key`` at the record's step."""
    step, prefix = record.get("step", 0), record.get("phase", "")
    for k, v in record.items():
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            tb.add_scalar(f"{prefix}/{k}" if prefix and not k.startswith(prefix) else k, v, step)


def rebuild_tensorboard(out: Path) -> None:
    """TensorBoard events written anew from ``log.jsonl`` (already cut back to the checkpoint a run resumes
    from), so the steps a killed run logged after its checkpoint are not shown twice."""
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(out / "tb", ignore_errors=True)
    tb = SummaryWriter(str(out / "tb"))
    path = out / "log.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        add_scalars(tb, json.loads(line))
    tb.close()


class RunLog(Callback):
    """log.jsonl + TensorBoard + console lines (rank 0 only); also ``ctx.log`` for records of the recipe.

    On the console each phase has its own progress (``tailgan.progress``: a tqdm bar on a terminal, else a line
    at least every 30 s with the step, the rate and the time left); ``console=False`` keeps the console quiet
    (the files are written all the same). ``total`` and ``start`` are unused: each phase knows its own steps.
    """

    def __init__(self, out: Path, active: bool, total: int = 0, start: int = 0, console: bool = True) -> None:
        self.active, self.out, self.console = active, out, active and console
        self.file = open(out / "log.jsonl", "a") if active else None  # noqa: SIM115 - lives as long as the run
        self.tb = self.bar = self.bar_phase = None
        if active:
            from torch.utils.tensorboard import SummaryWriter  # TensorBoard is loaded only by the writing rank

            self.tb = SummaryWriter(str(out / "tb"))

    def write(self, record: dict) -> None:
        if not self.active or not record:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        add_scalars(self.tb, record)
        if not self.console:
            return
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
        if self.bar is not None and not isinstance(self.bar, LineProgress):
            self.bar.write(text)  # above the tqdm bar
        else:
            print(text, flush=True)

    def after_step(self, trainer: Trainer, event: StepEvent) -> None:
        if event.record:
            self.write(dict(event.record))
        if not self.console:
            return
        if self.bar_phase is not event.phase:  # a new phase: its own bar, from where a resumed run stands
            self.close_bar()
            self.bar = progress(event.phase.steps, event.phase.name, initial=event.step - 1)
            self.bar_phase = event.phase
        self.bar.update(1)

    def on_end(self, trainer: Trainer) -> None:
        self.close()

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.bar_phase = None

    def close(self) -> None:
        if self.active and self.file is not None and not self.file.closed:
            self.file.close()
            self.tb.close()
            self.close_bar()
