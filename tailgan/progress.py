"""Progress that never goes silent: a tqdm bar on a terminal; off a terminal (nohup, CI, a log file) one line
at least every ``every`` seconds of wall time with the count, the rate and the time left.

``with progress(total=N, desc="sample", unit="img") as bar: ... bar.update(k)``
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LOG_EVERY_S = 30.0


class LineProgress:
    """The off-terminal form of a bar: ``desc: n/total unit (p %), r unit/s, ETA t`` every ``every`` s."""

    def __init__(self, total: int | None, desc: str, unit: str = "step", every: float = LOG_EVERY_S,
                 initial: int = 0, file: TextIO | None = None) -> None:  # fmt: skip
        self.total, self.desc, self.unit, self.every, self.n = total, desc, unit, every, initial
        self.file = file or sys.stderr
        self.t0 = self.last = time.monotonic()
        self.start = initial

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.file.write(self.line(now) + "\n")
            self.file.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.t0, 1e-9)
        rate = (self.n - self.start) / elapsed
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100 * self.n / self.total:.0f} %)"
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            text += f", {rate:.3g} {self.unit}/s, ETA {format_seconds(eta)}"
        else:
            text += f" {self.unit}, {rate:.3g} {self.unit}/s"
        return text

    def write(self, text: str) -> None:
        print(text, file=self.file, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_seconds(s: float) -> str:
    if s == float("inf"):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress(total: int | None, desc: str, unit: str = "step", initial: int = 0, every: float = LOG_EVERY_S):
    """A tqdm bar on a terminal, else a :class:`LineProgress`; both have ``update``, ``write`` and ``close``."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
    return LineProgress(total, desc, unit, every, initial)
