"""The report's figures: matplotlib (Agg backend) drawn straight into base64 PNG data URIs.

Every function returns a ``data:image/png;base64,...`` string, so the HTML file needs nothing beside it.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display, and the same output everywhere

import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

DPI = 110
MAX_IMAGE_BYTES = 3_000_000  # larger PNGs are downscaled before embedding, so the page stays light
COLORS = plt.get_cmap("tab10").colors


def figure_uri(fig) -> str:
    """Encode a matplotlib figure as a PNG data URI and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_uri(path: str | Path) -> tuple[str, tuple[int, int]]:
    """A PNG/JPEG file as a data URI (re-encoded as PNG when it is not one, downscaled when huge) and its size."""
    path = Path(path)
    raw = path.read_bytes()
    with Image.open(io.BytesIO(raw)) as im:
        size = im.size
        if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) <= MAX_IMAGE_BYTES:
            return "data:image/png;base64," + base64.b64encode(raw).decode("ascii"), size
        im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
        scale = min(1.0, math.sqrt(MAX_IMAGE_BYTES / max(len(raw), 1)))
        if scale < 1.0:
            im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), size


def counts_chart(counts: Sequence[int], classes: Sequence[str], title: str = "") -> str:
    """Per-class training counts as a bar chart on a log scale, each bar labelled with its count."""
    n = len(counts)
    fig, ax = plt.subplots(figsize=(min(max(4.5, 0.45 * n + 1.5), 11), 3.0))
    x = np.arange(n)
    ax.bar(x, counts, color="#3b6ea8")
    ax.set_yscale("log")
    ax.set_xticks(x, [str(c) for c in classes], rotation=45 if n > 10 else 0, ha="right" if n > 10 else "center",
                  fontsize=8)
    ax.set_ylabel("training images (log)")
    if n <= 30:
        for xi, c in zip(x, counts):
            ax.text(xi, c, str(c), ha="center", va="bottom", fontsize=7)
    ax.set_ylim(max(min(counts) / 2, 0.5) if min(counts) > 0 else 0.5, max(counts) * 2.2)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return figure_uri(fig)


def curves(
    panels: Sequence[tuple[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]],
    ylabel: str = "",
    marks: Mapping[str, tuple[float, float]] | None = None,
    ncols: int = 3,
) -> str:
    """Small multiples: one panel per (title, {series: (steps, values)}); ``marks[title] = (step, value)``
    draws a marker with its step (e.g. the best evaluation)."""
    marks = marks or {}
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.6 * nrows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels):
        for i, (name, (xs, ys)) in enumerate(series.items()):
            ys_plot = [np.nan if y is None else y for y in ys]
            marker = "." if len(xs) < 30 else None
            ax.plot(xs, ys_plot, label=name, color=COLORS[i % len(COLORS)], lw=1.3, marker=marker)
        if title in marks:
            step, value = marks[title]
            ax.plot([step], [value], marker="*", ms=13, color="#d62728", zorder=5, ls="none")
            ax.annotate(f"best: step {step:g}", (step, value), textcoords="offset points", xytext=(4, 6), fontsize=7,
                        color="#d62728")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        if ylabel:
            ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return figure_uri(fig)


def recall_bars(recalls: Mapping[str, Sequence[float]], classes: Sequence[str], title: str = "") -> str:
    """Grouped bars of per-class recall: classes on the x axis, one colour per strategy."""
    names = list(recalls)
    x = np.arange(len(classes))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.7 * len(classes) + 0.06 * len(classes) * len(names)), 11), 3.4))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for i, name in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, recalls[name], width, label=name, color=cmap(i % cmap.N))
    ax.set_xticks(x, [str(c) for c in classes], rotation=45 if len(classes) > 10 else 0,
                  ha="right" if len(classes) > 10 else "center", fontsize=8)
    ax.set_ylabel("recall (test)")
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=1 if len(names) < 8 else 2, bbox_to_anchor=(1.01, 1), loc="upper left", frameon=False)
    fig.tight_layout()
    return figure_uri(fig)


def confusion_matrix(cm: Sequence[Sequence[float]], classes: Sequence[str], title: str = "") -> str:
    """A confusion matrix with rows normalised to recall (true class down, predicted across)."""
    m = np.asarray(cm, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(classes)
    size = min(max(2.8, 0.3 * k + 1.4), 7.0)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(k)
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=90 if k > 10 else 0, fontsize=7)
    ax.set_yticks(ticks, [str(c) for c in classes], fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f"{norm[i, j]:.2f}"[1:] if norm[i, j] < 1 else "1", ha="center", va="center",
                            fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return figure_uri(fig)


def sweep_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]], xlabel: str, title: str = ""
) -> str:
    """Lines of a metric against an amount (e.g. synthetic images per class), with ± std bands when given."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for i, (name, (xs, ys, std)) in enumerate(series.items()):
        ax.plot(xs, ys, marker="o", ms=4, label=name, color=COLORS[i % len(COLORS)])
        if std is not None:
            lo = [y - s for y, s in zip(ys, std)]
            hi = [y + s for y, s in zip(ys, std)]
            ax.fill_between(xs, lo, hi, alpha=0.15, color=COLORS[i % len(COLORS)])
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return figure_uri(fig)
