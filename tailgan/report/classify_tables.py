"""The files of a ``tailgan classify`` / ``tailgan bench classify`` output: per-seed summaries (mean and sample
standard deviation, ddof = 1, the form of the seeds' tables), ``metrics.json``, and a bench's JSON, markdown table,
winners sentence and recall figure.

They read result dicts only (the classifiers' ``train_and_score`` results), so they sit below ``tailgan.classify``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tailgan.data import LongTailedData
from tailgan.io import atomic_write_json, atomic_write_text
from tailgan.report.classify_figures import plot_confusion_matrix, plot_recall_bars
from tailgan.version import cpu_model

SUMMARY_METRICS = ("acsa", "macro_f1", "accuracy", "auc_ovr_macro", "tail_recall", "minority_f1")
TABLE_COLUMNS = (
    ("acsa", "ACSA"),
    ("macro_f1", "macro-F1"),
    ("accuracy", "acc"),
    ("auc_ovr_macro", "AUC"),
    ("tail_recall", "tail-3 recall"),
    ("minority_f1", "minority F1"),
)


def machine_info() -> dict:
    """CPU, core count and library versions, for benchmark reports."""
    return {
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def mean_std(values: Sequence[float | None]) -> dict | None:
    """Mean and sample std (ddof=1; 0 for one value) of the non-None values; None if there are none."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return None
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}


def summarize(runs: list[dict]) -> dict:
    """Per-metric mean/std over seed runs, mean per-class recall and F1, and the summed confusion matrix."""
    summary = {m: mean_std([r.get(m) for r in runs]) for m in SUMMARY_METRICS if any(m in r for r in runs)}
    summary["recall_per_class"] = np.mean([r["recall_per_class"] for r in runs], axis=0).tolist()
    summary["f1_per_class"] = np.mean([r["f1_per_class"] for r in runs], axis=0).tolist()
    summary["confusion_matrix"] = np.sum([r["confusion_matrix"] for r in runs], axis=0).tolist()
    return summary


def dataset_info(data: LongTailedData) -> dict:
    """The data section of a classify / bench report: preset, source, classes, counts, fingerprint, image shape."""
    m = data.manifest
    return {
        "preset": data.config.preset,
        "source": data.config.source,
        "classes": list(data.classes),
        "train_counts": data.train.counts(),
        "test_counts": data.test.counts(),
        "fingerprint": m.get("fingerprint"),
        "image_shape": list(data.train.images.shape[1:]),
    }


def write_classify_report(
    result: dict, data: LongTailedData, out: str | Path, extra: dict | None = None, plot: bool = True
) -> Path:
    """OUT/metrics.json (every seed and the summary) and OUT/confusion.png (summed over seeds; ``plot``)."""
    out = Path(out)
    doc = {"data": dataset_info(data), **(extra or {}), **result}
    atomic_write_json(out / "metrics.json", doc)
    if not plot:
        return out / "metrics.json"
    n = len(result["runs"])
    plot_confusion_matrix(
        result["summary"]["confusion_matrix"],
        data.classes,
        out / "confusion.png",
        title=f"{result['strategy']} on {data.config.preset or data.config.source} (test, {n} seed(s))",
    )
    return out / "metrics.json"


def _fmt(stat: dict | None) -> str:
    return "n/a" if stat is None else f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def markdown_table(results: list[dict]) -> str:
    """The seeds' table form: one row per strategy, mean ± std over seeds for each metric."""
    cols = [(k, name) for k, name in TABLE_COLUMNS if any(r["summary"].get(k) for r in results)]
    lines = [
        "| strategy | " + " | ".join(name for _, name in cols) + " |",
        "| --- | " + " | ".join("---" for _ in cols) + " |",
    ]
    for r in results:
        lines.append(f"| {r['strategy']} | " + " | ".join(_fmt(r["summary"].get(k)) for k, _ in cols) + " |")
    return "\n".join(lines)


def winners(results: list[dict], classes: Sequence[str], tail: Sequence[int]) -> str:
    """Sentences naming the best strategy on mean ACSA and on mean recall of the ``tail`` classes, and,
    when there are generative rows (``"generative": True``), how the best of them compares with the
    best classical strategy. Rows marked ``"upper_bound"`` (trained on data the user does not have) are left out."""
    results = [r for r in results if not r.get("upper_bound")]

    def ranked(rows: list[dict], key: str) -> list[dict]:
        return sorted(rows, key=lambda r: -r["summary"][key]["mean"])

    def diff(a: dict, b: dict, key: str) -> str:
        return f"{a['summary'][key]['mean'] - b['summary'][key]['mean']:+.4f}"

    a = ranked(results, "acsa")
    t = ranked(results, "tail_recall")
    names = ", ".join(classes[c] for c in tail)
    text = f"Best ACSA: {a[0]['strategy']} ({_fmt(a[0]['summary']['acsa'])})"
    if len(a) > 1:
        text += f", {diff(a[0], a[1], 'acsa')} over the next, {a[1]['strategy']}"
    text += (
        f". Best mean recall on the rarest {len(tail)} classes ({names}): {t[0]['strategy']} "
        f"({_fmt(t[0]['summary']['tail_recall'])})"
    )
    if len(t) > 1:
        text += f", {diff(t[0], t[1], 'tail_recall')} over the next, {t[1]['strategy']}"
    text += "."
    gen = [r for r in results if r.get("generative")]
    classical = [r for r in results if not r.get("generative")]
    if gen and classical:
        g, c = ranked(gen, "acsa")[0], ranked(classical, "acsa")[0]
        gt, ct = ranked(gen, "tail_recall")[0], ranked(classical, "tail_recall")[0]
        text += (
            f" Generative augmentation: the best generative row ({g['strategy']}) is {diff(g, c, 'acsa')} ACSA "
            f"against the best classical one ({c['strategy']}); on the rarest classes' recall the best "
            f"generative row ({gt['strategy']}) is {diff(gt, ct, 'tail_recall')} against {ct['strategy']}."
        )
    return text


def protocol_lines(results: list[dict], protocol_fields: Sequence[str]) -> list[str]:
    """One line per synthetic-data protocol (the ``protocol_fields`` of a run's config) of the generative rows: a
    merged table's rows may have been trained under different protocols, and classical rows read none of it."""
    groups: dict[str, list[str]] = {}
    for r in results:
        config = (r.get("runs") or [{}])[0].get("config")
        if r.get("generative") and config:
            key = ", ".join(f"{k}={config[k]}" for k in protocol_fields if k in config)
            groups.setdefault(key, []).append(r["strategy"])
    return [f"- synthetic-data protocol of {', '.join(names)}: {key}" for key, names in groups.items()]


def write_bench_report(
    results: list[dict],
    data: LongTailedData,
    out: str | Path,
    header: dict,
    notes: Sequence[str] = (),
    stem: str = "bench",
    protocol_fields: Sequence[str] = (),
) -> tuple[Path, Path]:
    """OUT/<stem>.json, OUT/<stem>.md (table + winners) and OUT/<stem>_recall.png (per-class recall).

    ``protocol_fields``: the config keys of the synthetic-data protocol (the classifier config's), listed per
    generative row rather than in the header's config line."""
    out = Path(out)
    sentence = winners(results, data.classes, results[0]["runs"][0]["tail_classes"]) if results else ""
    doc = {
        **header,
        "data": dataset_info(data),
        "winners": sentence,
        "notes": list(notes),
        "results": results,
    }
    atomic_write_json(out / f"{stem}.json", doc)
    md = [f"# Classifiers on {data.config.preset or data.config.source}", ""]
    md += [f"- {k}: {v}" for k, v in header.items() if not isinstance(v, dict)]
    for k, v in header.items():
        if isinstance(v, dict):
            if k == "config":  # the protocol is the generative rows' own: listed below, row by row
                v = {a: b for a, b in v.items() if a not in protocol_fields}
            md.append(f"- {k}: " + ", ".join(f"{a}={b}" for a, b in v.items()))
    md += protocol_lines(results, protocol_fields)
    md += [f"- training counts: {data.train.counts()}; test counts: {data.test.counts()}"]
    md += ["", markdown_table(results), "", sentence, ""]
    md += [f"- {n}" for n in notes]
    md += ["", "Per-class test recall (mean over seeds):", ""]
    md.append("| strategy | " + " | ".join(data.classes) + " |")
    md.append("| --- | " + " | ".join("---" for _ in data.classes) + " |")
    for r in results:
        recall = " | ".join(f"{x:.3f}" for x in r["summary"]["recall_per_class"])
        md.append(f"| {r['strategy']} | {recall} |")
    atomic_write_text(out / f"{stem}.md", "\n".join(md) + "\n")
    plot_recall_bars(
        {r["strategy"]: r["summary"]["recall_per_class"] for r in results},
        data.classes,
        out / f"{stem}_recall.png",
        title=f"per-class test recall, {data.config.preset or data.config.source}",
    )
    return out / f"{stem}.json", out / f"{stem}.md"
