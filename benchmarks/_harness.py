"""What the benchmark scripts share: where the data is, the machine line of a report, running ``python -m tailgan``
and worker processes, bringing a training run to its steps, and the results files.

A script imports it as ``from _harness import ...`` (a script's own folder is on ``sys.path``; tailgan itself is
installed). Two ways to write results:

- :func:`write_results`: a measurement that is taken whole each time (a speed or memory table) writes its
  ``STEM.json`` and ``STEM.md`` at the end;
- :class:`ResultsTable`: a long benchmark of many rows writes each row as soon as it is measured and, run again,
  keeps the rows already in the file and measures only the others (several processes may share one table).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tailgan.io import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def data_root() -> str:
    """``$TAILGAN_DATA``, else ``../shared/data`` beside the repository: the folder holding FashionMNIST/raw."""
    return os.environ.get("TAILGAN_DATA") or str(REPO.parent / "shared" / "data")


def pick_data(root: str) -> tuple[str, str]:
    """(data preset, note): Fashion-MNIST-LT when its raw files are under ``root``, else digits_lt."""
    if (Path(root) / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return "fashion_mnist_lt", ""
    return "digits_lt", f"Fashion-MNIST not found under {root}; fell back to digits_lt (scikit-learn digits)"


# the GAN configurations of the speed and memory benchmarks (train_speed.py, peak_memory.py): 32 px, batch 64,
# 5 D updates per G update; name -> tailgan preset + overrides, and the budgets in G steps (timed, lock-step
# warm-up, memory run)
GAN_CONFIGS: dict[str, dict[str, Any]] = {
    "ecogan-dcgan": {
        "preset": "ecogan-dcgan",
        "overrides": ["optim.batch_size=64"],  # the preset's batch is ECOGAN's 128
        "arch": "dcgan",
        "timed_steps": 24,
        "warmup": 2,
        "mem_steps": 3,
    },
    "ecogan-biggan": {
        "preset": "ecogan-biggan",
        "overrides": ["optim.batch_size=64", "model.conv_dim=24", "model.shared_dim=32"],
        "arch": "biggan",
        "timed_steps": 10,
        "warmup": 1,
        "mem_steps": 2,
    },
}
GAN_SEED = 0


def gan_config(name: str, data: str, root: str, device: str, **fields: Any):
    """The TrainConfig ``tailgan train --method PRESET --data DATA key=value ...`` resolves for the GAN
    configuration ``name`` (fp32 unless ``precision`` is among ``fields``)."""
    from tailgan.train import make_config

    spec = GAN_CONFIGS[name]
    root_arg = root if data == "fashion_mnist_lt" else None
    fields.setdefault("precision", "fp32")  # the exact comparison; the fast mode is measured on its own
    return make_config(
        spec["preset"], data=data, root=root_arg, overrides=spec["overrides"], seed=GAN_SEED, device=device, **fields
    )


# ------------------------------------------------------------------------------------------------ the report's header


def now() -> str:
    """The local date and time, to the second (ISO 8601 with the UTC offset)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages: on a shared machine, timings depend on them."""
    return [round(x, 2) for x in os.getloadavg()]


def machine(**extra: Any) -> dict:
    """The machine of a report: CPU, cores, torch threads and versions
    (:func:`tailgan.report.classify_tables.machine_info`), the load average now (``loadavg_start``) and ``extra``."""
    # imported here: tailgan.report loads matplotlib and scikit-learn, which would swell the RSS a memory worker
    # measures from
    from tailgan.report.classify_tables import machine_info

    return {**machine_info(), "loadavg_start": loadavg(), **extra}


def command(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line that ran ``script`` (its ``__file__``) with ``argv`` (default: this process's)."""
    return " ".join(["python", f"benchmarks/{Path(script).name}", *(sys.argv[1:] if argv is None else argv)])


def mean_std_text(stat: dict | None) -> str:
    """A summary statistic of the classify reports (``{"mean": m, "std": s, ...}``, as
    :func:`tailgan.report.classify_tables.mean_std` makes it) as a table cell, ``m ± s`` to 4 decimals; ``-`` for
    none."""
    return "-" if stat is None else f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def write_results(out: str | os.PathLike, stem: str, doc: dict, markdown: str) -> Path:
    """``OUT/STEM.json`` and ``OUT/STEM.md``, each written atomically; returns the JSON's path."""
    path = Path(out) / f"{stem}.json"
    atomic_write_json(path, doc)
    atomic_write_text(path.with_suffix(".md"), markdown)
    return path


# ---------------------------------------------------------------------------------------------------- processes


def run_tailgan(
    *args: str,
    threads: int | None,
    log: Path | None = None,
    capture: bool = False,
    timeout: float | None = None,
    launcher: Sequence[str] = (),
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``python [LAUNCHER] -m tailgan ARGS`` as a user would, with ``OMP_NUM_THREADS=threads`` (None: as
    this process has it). Its output is dropped, appended to ``log``, or returned (``capture``); ``check``: a
    failure raises ``CalledProcessError`` (``timeout``: ``TimeoutExpired``)."""
    cmd = [sys.executable, *launcher, "-m", "tailgan", *args]
    print("$", " ".join(cmd), flush=True)
    env = dict(os.environ) if threads is None else dict(os.environ, OMP_NUM_THREADS=str(threads))
    if capture:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=check)
    if log is None:
        return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, timeout=timeout, check=check)
    with open(log, "a") as handle:
        return subprocess.run(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, check=check)


def run_worker(script: str, args: Sequence[str], threads: int) -> dict:
    """Run ``script ARGS --threads T --result FILE`` in a fresh process and return the JSON it writes to FILE: a
    measurement that must not share a process (peak memory, a cold start). The script's output is shown on a
    failure."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(script).resolve()), "--threads", str(threads), "--result", str(result), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise RuntimeError(f"worker {' '.join(args)} failed with exit code {proc.returncode}")
        return json.loads(result.read_text())


def time_alternately(
    calls: dict[str, Callable[[], object]], n: int, sync: Callable[[], None] | None = None
) -> dict[str, list[float]]:
    """Wall seconds of ``n`` calls of each ``calls[name]()``, the names called in turn and in reverse turn (A B B A
    ...), so that load changes on a shared machine hit all alike. ``sync`` after each call (an accelerator's queue)."""
    wall: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for i in range(n):
        for name in order if i % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            calls[name]()
            if sync is not None:
                sync()
            wall[name].append(time.perf_counter() - t0)
    return wall


def rss_mb() -> float:
    """This process's resident set size now (MB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's RSS high-water mark (MB); ru_maxrss is in KiB on Linux."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -------------------------------------------------------------------------------------------------- training runs


def gan_records(run: Path) -> list[dict]:
    """The run log's records of the adversarial phase (BAGAN-GP's autoencoder pre-training logs its own steps
    and rate); none for a run without a log yet."""
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
    except OSError:
        return []
    records = (json.loads(x) for x in lines if '"event"' not in x)
    return [r for r in records if r.get("phase", "gan") == "gan"]


def last_step(run: Path) -> int:
    """The last G step the run has logged (0 for none)."""
    return max((r.get("step", 0) for r in gan_records(run)), default=0)


def median_gan_rate(run: Path) -> float | None:
    """Median G steps/s of the adversarial phase."""
    rates = sorted(r["steps_per_s"] for r in gan_records(run) if "steps_per_s" in r)
    return rates[len(rates) // 2] if rates else None


def train_or_resume(
    run: Path, steps: int, train_args: Sequence[str], overrides: Sequence[str], *, threads: int, log: Path | None = None
) -> float:
    """Bring the training run folder ``run`` to ``steps`` G steps and return the seconds that took: nothing when it
    has them, ``tailgan train --resume`` from its last checkpoint when it has fewer, else ``tailgan train
    TRAIN_ARGS --steps STEPS --out RUN OVERRIDES`` (a folder killed before its first checkpoint starts again)."""
    t0 = time.perf_counter()
    if (run / "checkpoints" / "last.pt").is_file():
        if last_step(run) >= steps:
            return 0.0
        run_tailgan("train", "--resume", str(run), "--steps", str(steps), threads=threads, log=log)
    else:
        if run.exists():
            shutil.rmtree(run)
        run_tailgan("train", *train_args, "--steps", str(steps), "--out", str(run), *overrides, threads=threads,
                    log=log)  # fmt: skip
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------- results table


class ResultsTable:
    """``OUT/STEM.json``: a document whose ``rows`` (a list) hold one measurement each, named by ``key(row)``, with
    ``OUT/STEM.md`` rendered from it beside.

    - Opening it keeps the rows of an existing file (``upgrade(doc)`` first brings an older layout to this one)
      and sets the ``header`` fields anew (command, machine, date); a field named in ``same`` must equal the
      file's, else the rows would not be comparable and it stops (use another ``--out``).
    - :meth:`add` writes a row as soon as it is measured (a row with the same key is replaced), sorted by
      ``order``; ``derive(doc)`` sets the fields computed from the rows (a verdict) before each write. Both files
      are written atomically.
    - Several threads or processes may share one table: each write holds a lock and first takes in the rows (and
      the ``shared`` fields, such as claims) that others wrote to the file.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        stem: str,
        render: Callable[[dict], str],
        *,
        key: Callable[[dict], str],
        header: dict | None = None,
        same: Sequence[str] = (),
        order: Callable[[dict], Any] | None = None,
        derive: Callable[[dict], None] | None = None,
        upgrade: Callable[[dict], dict] | None = None,
        shared: Sequence[str] = (),
    ) -> None:
        self.path = Path(out) / f"{stem}.json"
        self.render, self.key, self.order, self.derive, self.upgrade = render, key, order, derive, upgrade
        self.shared = ("rows", *shared)
        self._threads = threading.Lock()
        old = self._read()
        header = header or {}
        for field in same:
            if field in old and old[field] != header[field]:
                raise SystemExit(f"{self.path} holds {field}={old[field]!r}, not {header[field]!r}; pass another --out")
        self.doc = {**old, **header}
        self.doc.setdefault("rows", [])

    def _read(self) -> dict:
        if not self.path.is_file():
            return {}
        doc = json.loads(self.path.read_text())
        return self.upgrade(doc) if self.upgrade else doc

    @property
    def rows(self) -> list[dict]:
        return self.doc["rows"]

    def __contains__(self, key: str) -> bool:
        return any(self.key(r) == key for r in self.rows)

    @contextmanager
    def locked(self) -> Iterator[dict]:
        """Hold the table (against other threads and processes) with the file's rows and shared fields taken in;
        yields the document (change it, then :meth:`save`)."""
        with self._threads:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(f".{self.path.name}.lock"), "w") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    self.doc.update({k: v for k, v in self._read().items() if k in self.shared})
                    yield self.doc
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def add(self, row: dict) -> None:
        """Write ``row`` now (replacing a row with its key)."""
        with self.locked():
            self.doc["rows"] = [r for r in self.rows if self.key(r) != self.key(row)] + [row]
            self.save()

    def drop(self, keys: Collection[str]) -> None:
        """Remove the rows of ``keys`` from the table and its files (to measure them again)."""
        with self.locked():
            if any(self.key(r) in keys for r in self.rows):
                self.doc["rows"] = [r for r in self.rows if self.key(r) not in keys]
                self.save()

    def save(self) -> None:
        """Write both files as the table is now (call it inside :meth:`locked` when others may share the table)."""
        if self.order is not None:
            self.rows.sort(key=self.order)
        if self.derive is not None:
            self.derive(self.doc)
        write_results(self.path.parent, self.path.stem, self.doc, self.render(self.doc))
