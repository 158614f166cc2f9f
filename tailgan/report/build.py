"""``build_report``: one self-contained HTML page from training runs, classify / bench outputs and evaluations.

The page has six sections, each present only when an input has what it shows: Data, Training, Samples,
Generation quality, Classifiers and Reproduce. Figures are drawn with matplotlib and every image is
embedded as a data URI, so the file opens anywhere without a network and prints as it looks.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import math
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import yaml

from tailgan.io import atomic_write
from tailgan.outputs import check_output_file
from tailgan.report import plots
from tailgan.report.inputs import BenchInput, ClassifyInput, EvalInput, Inputs, RunInput, collect
from tailgan.scores import higher_is_better
from tailgan.version import cpu_model

GENERATOR_TAG = "tailgan report"  # <meta name="generator">: marks a file this module may overwrite

# log.jsonl keys that are not losses
NON_LOSS_KEYS = {"step", "steps_per_s", "phase", "event", "ddp_in_sync", "world_size", "epoch", "lr", "seconds"}
EVAL_KEYS = (
    "fid", "kid", "kid_std", "is", "is_std", "ifid", "precision", "recall", "density", "coverage",
    "msssim", "msssim_real", "labelacc", "labelacc_real",
)  # fmt: skip
NETWORK_NAMES = {"d": "discriminator (D)", "g": "generator (G)", "c": "classifier (C)", "ae": "autoencoder (AE)",
                 "e": "encoder (E)", "enc": "encoder", "dec": "decoder", "vae": "VAE"}  # fmt: skip

# columns of the per-class generation table: (key, header, format, std key)
EVAL_COLUMNS = (
    ("fid", "FID", ".4g", None),
    ("kid", "KID", ".4g", "kid_std"),
    ("is", "IS", ".4g", "is_std"),
    ("precision", "prec.", ".3f", None),
    ("recall", "rec.", ".3f", None),
    ("density", "dens.", ".3f", None),
    ("coverage", "cov.", ".3f", None),
    ("labelacc", "label acc.", ".3f", None),
    ("labelacc_real", "real", ".3f", None),
    ("msssim", "MS-SSIM", ".3f", None),
    ("msssim_real", "real", ".3f", None),
)
CLASSIFY_COLUMNS = (
    ("acsa", "ACSA"),
    ("macro_f1", "macro-F1"),
    ("accuracy", "accuracy"),
    ("auc_ovr_macro", "AUC (ovr)"),
    ("tail_recall", "tail recall"),
    ("minority_f1", "minority F1"),
)
REF_NAMES = {
    "test": "the balanced test split (equal fakes per class)",
    "train-lt": "the long-tailed training set, fakes with its labels (ECOGAN's protocol)",
}


def fmt(v: Any, spec: str = ".4f") -> str:
    """A number for a table: ``spec`` for floats, as is for ints and text, ``-`` for missing / NaN."""
    if v is None or isinstance(v, bool):
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else format(v, spec)
    return str(v)


def fmt_stat(stat: dict | None, spec: str = ".4f") -> str:
    """``{"mean", "std"}`` (a bench summary entry) as ``mean ± std``."""
    if not isinstance(stat, dict) or stat.get("mean") is None:
        return "-"
    return f"{fmt(stat['mean'], spec)} ± {fmt(stat.get('std') or 0.0, spec)}"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _names(paths: Sequence[Path]) -> list[str]:
    """Short unique labels for inputs: the folder (or file) name, with its parent when two share a name."""
    bases = [p.parent if p.name in ("metrics.json", "bench.json") else p for p in paths]
    short = [b.name for b in bases]
    return [f"{b.parent.name}/{s}" if short.count(s) > 1 else s for b, s in zip(bases, short)]


# ----------------------------------------------------------------------------------------------- Data


def _recipe_text(m: dict) -> str:
    r = m.get("recipe") or {}
    if not isinstance(r, dict):
        return str(r)
    name = r.get("recipe", "?")
    keys = {
        "exp": ("imbalance_factor", "n_max"),
        "step": ("imbalance_factor", "n_max", "minority_fraction"),
        "ecogan": ("ecogan_unit",),
        "counts": ("counts",),
        "drop_one": ("drop_class", "drop_fraction"),
    }.get(name, ())
    parts = [f"{k}={r[k]:g}" if isinstance(r.get(k), float) else f"{k}={r[k]}" for k in keys if r.get(k) is not None]
    sel = m.get("selection", r.get("selection"))
    text = name + (f" ({', '.join(parts)})" if parts else "")
    if sel:
        text += f"; selection {sel}" + (f", seed {m.get('seed', r.get('seed'))}" if sel == "shuffle" else "")
    return text


def data_sections(inputs: Inputs, run_names: list[str], cls_names: list[str], bench_names: list[str]) -> list[dict]:
    """One entry per distinct dataset (same name, classes and counts), naming every input that used it."""
    found: dict[tuple, dict] = {}

    def add(name, classes, counts, test_counts, fingerprint, used_by, recipe=None, shape=None, ratio=None):
        if not classes or not counts or len(classes) != len(counts):
            return
        key = (name, tuple(classes), tuple(counts))
        entry = found.setdefault(
            key,
            {"name": name, "classes": list(classes), "counts": list(counts), "test_counts": test_counts,
             "recipe": recipe, "ratio": ratio, "prints": [], "used_by": []},
        )  # fmt: skip
        entry["recipe"] = entry["recipe"] or recipe
        entry["ratio"] = entry["ratio"] or ratio
        entry["test_counts"] = entry["test_counts"] or test_counts
        fp = (fingerprint, shape)
        if fingerprint and fp not in entry["prints"]:
            entry["prints"].append(fp)
        entry["used_by"].append(used_by)

    for run, label in zip(inputs.runs, run_names):
        m = run.manifest
        if isinstance(m, dict):
            r = m.get("resolution")  # square images: written as the classify documents write their shape
            shape = f"{r}x{r} px" if r else None
            add(m.get("preset") or m.get("source"), m.get("classes"), m.get("counts"), m.get("test_counts"),
                m.get("fingerprint"), f"run {label}", _recipe_text(m), shape, m.get("imbalance_ratio"))
    docs = [(c.doc, f"classify {n}") for c, n in zip(inputs.classify, cls_names)]
    docs += [(b.doc, f"bench {n}") for b, n in zip(inputs.benches, bench_names)]
    for doc, label in docs:
        d = doc.get("data") or {}
        shape = "x".join(str(s) for s in d.get("image_shape", [])[1:]) or None
        add(d.get("preset") or d.get("source"), d.get("classes"), d.get("train_counts"), d.get("test_counts"),
            d.get("fingerprint"), label, None, shape and f"{shape} px")
    out = []
    for e in found.values():
        counts = e["counts"]
        e["ratio"] = e["ratio"] or (max(counts) / min(counts) if min(counts) > 0 else None)
        total = sum(counts)
        e["rows"] = [
            {"index": i, "name": c, "count": n, "share": n / total if total else 0.0,
             "test": e["test_counts"][i] if e["test_counts"] and i < len(e["test_counts"]) else None}
            for i, (c, n) in enumerate(zip(e["classes"], counts))
        ]  # fmt: skip
        e["total"] = total
        e["chart"] = plots.counts_chart(counts, e["classes"], f"{e['name']}: per-class training images")
        out.append(e)
    return out


# ------------------------------------------------------------------------------------------- Training


def _network(key: str) -> str:
    prefix = key.split("_", 1)[0] if "_" in key else key
    return NETWORK_NAMES.get(prefix.lower(), prefix)


def _phase(r: dict) -> str:
    return str(r.get("phase") or "train")


def _step_records(run: RunInput) -> list[dict]:
    """The run's records with a step, each with the phase it belongs to."""
    recs, phase = [], None
    for r in run.records:
        if _num(r.get("step")):
            # a record without a phase (an evaluation, an event) belongs to the phase logged before it
            phase = r.get("phase") or phase
            recs.append(r if r.get("phase") or not phase else {**r, "phase": phase})
    return recs


def _loss_chart(recs: list[dict], phases: list[str]) -> str | None:
    """One panel of loss curves per network (per phase and network when the run has several phases)."""
    panels: dict[str, dict[str, tuple[list, list]]] = {}
    for r in recs:
        for k, v in r.items():
            if k in NON_LOSS_KEYS or k in EVAL_KEYS or not _num(v):
                continue
            title = _network(k) if len(phases) == 1 else f"{_phase(r)}: {_network(k)}"
            xs, ys = panels.setdefault(title, {}).setdefault(k, ([], []))
            xs.append(r["step"])
            ys.append(v)
    return plots.curves(list(panels.items()), ylabel="loss") if panels else None


def _eval_curves(recs: list[dict]) -> tuple[str | None, list[dict]]:
    """The evaluation curves with each metric's best step marked, and a row per metric (best and last)."""
    eval_keys = [k for k in EVAL_KEYS if not k.endswith("_std") and any(_num(r.get(k)) for r in recs)]
    eval_panels, marks, best_rows = [], {}, []
    for k in eval_keys:
        pts = [(r["step"], r[k]) for r in recs if _num(r.get(k))]
        best = (max if higher_is_better(k) else min)(pts, key=lambda p: p[1])
        marks[k] = best
        eval_panels.append((k, {k: ([p[0] for p in pts], [p[1] for p in pts])}))
        best_rows.append({"metric": k, "step": best[0], "value": best[1], "last": pts[-1][1], "last_step": pts[-1][0],
                          "higher": higher_is_better(k)})  # fmt: skip
    return (plots.curves(eval_panels, marks=marks) if eval_panels else None), best_rows


def _speed_and_events(recs: list[dict]) -> tuple[dict[str, list[float]], float, list[dict]]:
    """The logged speeds per phase, the training seconds they imply (each logged interval at its mean speed)
    and the events: logged ones, inferred resumes (the step went back) and DDP ranks out of sync."""
    speeds: dict[str, list[float]] = {}  # per phase: a pre-training step and a GAN step are not alike
    seconds, events, prev = 0.0, [], {}
    for r in recs:
        ph, step = _phase(r), r["step"]
        last = prev.get(ph)
        if last is not None and step <= last and not r.get("event"):
            events.append({"step": step, "event": "resume", "detail": f"step went back from {last} to {step} "
                           "(inferred: a resume from an earlier checkpoint)", "phase": ph})  # fmt: skip
        if _num(r.get("steps_per_s")) and r["steps_per_s"] > 0:
            speeds.setdefault(ph, []).append(r["steps_per_s"])
            if last is not None and step > last:
                seconds += (step - last) / r["steps_per_s"]
            elif last is None:
                seconds += step / r["steps_per_s"]
        if r.get("event"):
            detail = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("step", "event", "phase"))
            events.append({"step": step, "event": str(r["event"]), "detail": detail, "phase": ph})
        if r.get("ddp_in_sync") is False:
            events.append({"step": step, "event": "ranks out of sync", "detail": "ddp_in_sync=false", "phase": ph})
        prev[ph] = max(step, last or step) if r.get("event") != "resume" else step
    return speeds, seconds, events


def training_section(run: RunInput, label: str) -> dict | None:
    """Loss curves per network, evaluation curves with the best step, speed, wall time and events."""
    recs = _step_records(run)
    if not recs:
        return None
    phases = list(dict.fromkeys(_phase(r) for r in recs))
    eval_chart, best_rows = _eval_curves(recs)
    speeds, seconds, events = _speed_and_events(recs)
    span = None
    cfg_file, log_file = run.path / "config.yaml", run.path / "log.jsonl"
    if cfg_file.is_file() and log_file.is_file():
        span = max(0.0, log_file.stat().st_mtime - cfg_file.stat().st_mtime)
    cfg = run.config or {}
    return {
        "label": label,
        "path": str(run.path),
        "method": cfg.get("preset") or cfg.get("method"),
        "faithful": cfg.get("faithful"),
        "output": _output_kind(run),
        "phases": phases,
        "last_step": recs[-1]["step"],
        "target_steps": cfg.get("steps"),
        "records": len(recs),
        "bad_lines": run.bad_lines,
        "loss_chart": _loss_chart(recs, phases),
        "eval_chart": eval_chart,
        "best": best_rows,
        "best_metric": cfg.get("best_metric"),
        "speed": [
            {"phase": ph, "median": statistics.median(v), "last": v[-1], "min": min(v), "max": max(v)}
            for ph, v in speeds.items()
        ],
        "train_seconds": seconds or None,
        "span_seconds": span,
        "events": events,
        "checkpoints": run.checkpoints,
    }


def _output_kind(run: RunInput) -> str | None:
    cfg = run.config or {}
    out = cfg.get("output")
    if isinstance(out, dict) and out.get("kind"):
        return str(out["kind"])
    for r in run.records:
        if isinstance(r.get("output"), dict) and r["output"].get("kind"):
            return str(r["output"]["kind"])
    return None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 120:
        return f"{seconds:.1f} s"
    h, rem = divmod(s, 3600)
    return f"{h} h {rem // 60:02d} min" if h else f"{rem // 60} min {rem % 60:02d} s"


# -------------------------------------------------------------------------------------------- Samples


def _class_names(run: RunInput) -> list[str]:
    m = run.manifest if isinstance(run.manifest, dict) else {}
    return [str(c) for c in m.get("classes") or []]


def display_width(w: int, h: int, max_w: int = 760, max_h: int = 700) -> int:
    """Show small grids enlarged (up to 2x, pixel-exact) and large figures within the page."""
    scale = min(2.0, max_w / w, max(1.0, max_h / h) if h * 2 > max_h else 2.0)
    return max(1, int(w * min(scale, max_w / w)))


def samples_section(run: RunInput, label: str) -> dict | None:
    """The last sample grid with its rows named, earlier grids small, translation rows, the attention figure."""
    if not (run.grids or run.translations or run.attention):
        return None
    out: dict[str, Any] = {"label": label, "grid": None, "earlier": [], "translation": None, "attention": None}
    if run.grids:
        step, path = run.grids[-1]
        uri, (w, h) = plots.image_uri(path)
        names = _class_names(run)
        cfg = run.config or {}
        rows = min(len(names), int(cfg.get("sample_classes") or len(names))) if names else 0
        res = (cfg.get("data") or {}).get("resolution") if isinstance(cfg.get("data"), dict) else None
        if res and names:  # torchvision's grid: rows of res px with 2 px padding around each
            fitted = round((h - 2) / (res + 2))
            rows = fitted if 0 < fitted <= len(names) else rows
        m = run.manifest if isinstance(run.manifest, dict) else {}
        counts = m.get("counts") if isinstance(m.get("counts"), list) and len(m["counts"]) == len(names) else None
        labels = [{"name": n, "count": counts[i] if counts else None} for i, n in enumerate(names[:rows])]
        out["grid"] = {"uri": uri, "step": step, "display_width": display_width(w, h), "file": path.name,
                       "rows": labels}  # fmt: skip
        for step_e, p in run.grids[:-1][-3:]:
            out["earlier"].append({"uri": plots.image_uri(p)[0], "step": step_e})
    if run.translations:
        step, path = run.translations[-1]
        uri, (w, h) = plots.image_uri(path)
        out["translation"] = {"uri": uri, "step": step, "display_width": display_width(w, h), "file": path.name}
    if run.attention:
        uri, (w, h) = plots.image_uri(run.attention)
        out["attention"] = {"uri": uri, "display_width": min(w, 900), "file": run.attention.name}
    return out


# ------------------------------------------------------------------------------ Generation quality


def quality_section(e: EvalInput, label: str, counts: list[int] | None) -> dict:
    """Overall and per-class figures of one evaluation result, its warnings and what it was measured with."""
    r = e.result
    rows = r.get("per_class") or []
    overall = r.get("overall") or {}
    present = [c for c in EVAL_COLUMNS if any(_num(x.get(c[0])) for x in [overall, *rows])]
    info = r.get("extractor_info") or {}
    dim = info.get("feature_dim")

    def cells(row: dict, small: bool) -> list[dict]:
        out = []
        for key, _, spec, std in present:
            # a zero std (IS of one split per class) says nothing: left out
            sd = fmt(row[std], ".2g") if std and _num(row.get(std)) and row[std] != 0 else None
            warn = key == "fid" and small and _num(row.get(key))
            out.append({"text": fmt(row.get(key), spec), "std": sd, "warn": warn, "real": key.endswith("_real")})
        return out

    def is_small(row: dict) -> bool:
        return bool(dim) and min(row.get("num_real") or 0, row.get("num_fake") or 0) < dim

    table = []
    for i, row in enumerate(rows):
        c = row.get("class", i)
        table.append({
            "cls": c, "name": row.get("name", str(c)),
            "train": counts[c] if counts and isinstance(c, int) and c < len(counts) else None,
            "real": row.get("num_real"), "fake": row.get("num_fake"),
            "cells": cells(row, is_small(row)), "small": is_small(row),
        })  # fmt: skip
    extractor = r.get("extractor", "?")
    ext_bits = [f"{k} {info[k]}" for k in ("key", "feature_dim", "resolution") if info.get(k) is not None]
    if _num(info.get("test_accuracy")):
        ext_bits.append(f"test accuracy {info['test_accuracy']:.4f}")
    clf = r.get("classifier") or {}
    return {
        "label": label,
        "key": e.key,
        "file": str(e.path),
        "step": e.step if e.step is not None else r.get("step"),
        "checkpoint": e.checkpoint or r.get("checkpoint"),
        "dataset": r.get("dataset"),
        "ref": r.get("ref"),
        "ref_text": REF_NAMES.get(r.get("ref"), r.get("ref") or (f"real images {r['real']}" if r.get("real") else "")),
        "extractor": extractor,
        "extractor_text": ", ".join(ext_bits),
        "classifier": clf.get("name") if isinstance(clf, dict) else None,
        "num_real": r.get("num_real"),
        "num_fake": r.get("num_fake"),
        "columns": [{"name": c[1], "real": c[0].endswith("_real")} for c in present],
        "overall": {"cells": cells(overall, is_small(overall)), "real": overall.get("num_real"),
                    "fake": overall.get("num_fake"), "ifid": overall.get("ifid")},  # fmt: skip
        "rows": table,
        "has_train": any(t["train"] is not None for t in table),
        "warnings": [str(w) for w in r.get("warnings") or []],
        "comparable_note": extractor != "inception",
        "versions": r.get("versions") or {},
        "seconds": r.get("seconds"),
    }


# ------------------------------------------------------------------------------------- Classifiers


def _strategy_rows(results: list[dict], labels: list[str] | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Table rows (mean ± std per metric, best row and best cells marked) and the columns present."""
    cols = [(k, h) for k, h in CLASSIFY_COLUMNS if any(isinstance((r.get("summary") or {}).get(k), dict)
                                                        for r in results)]  # fmt: skip
    best_val = {}
    for k, _ in cols:
        vals = [r["summary"][k]["mean"] for r in results if _num((r["summary"].get(k) or {}).get("mean"))]
        best_val[k] = max(vals) if vals else None
    rows = []
    for i, r in enumerate(results):
        s = r.get("summary") or {}
        seeds = [x.get("seed") for x in r.get("runs") or [] if isinstance(x, dict)]
        rows.append({
            "strategy": labels[i] if labels else r.get("strategy", "?"),
            "generative": bool(r.get("generative")),
            "n": len(seeds) or (s.get("acsa") or {}).get("n"),
            "seeds": seeds,
            "cells": [{"text": fmt_stat(s.get(k)),
                       "best": best_val[k] is not None and _num((s.get(k) or {}).get("mean"))
                       and s[k]["mean"] == best_val[k] and len(results) > 1} for k, _ in cols],
            "acsa": (s.get("acsa") or {}).get("mean"),
        })  # fmt: skip
    acsa = [row["acsa"] for row in rows if _num(row["acsa"])]
    for row in rows:
        row["best"] = len(rows) > 1 and bool(acsa) and row["acsa"] == max(acsa)
    return rows, cols


def _confusions(results: list[dict], labels: list[str], classes: list[str]) -> list[dict]:
    out = []
    for r, label in zip(results, labels):
        cm = (r.get("summary") or {}).get("confusion_matrix")
        if cm and len(cm) == len(classes):
            n = len(r.get("runs") or [])
            out.append({"label": label, "uri": plots.confusion_matrix(cm, classes, f"{label} ({n} seed(s))")})
    return out


def _sweeps(doc: dict) -> list[dict]:
    """Amount sweeps, when a report holds one: ``doc["sweep"]`` (or ``"sweeps"``), records of an amount
    (``amount`` / ``n_synthetic`` / ``per_class`` / ``ratio``) and metrics (numbers or ``{"mean", "std"}``),
    optionally with a ``strategy`` / ``label`` to draw several lines."""
    raw = doc.get("sweep", doc.get("sweeps"))
    if isinstance(raw, dict):
        raw = raw.get("points") or raw.get("results") or []
    if not isinstance(raw, list) or not raw:
        return []
    xkey = next((k for k in ("amount", "n_synthetic", "synthetic_per_class", "per_class", "ratio")
                 if all(isinstance(p, dict) and _num(p.get(k)) for p in raw)), None)  # fmt: skip
    if xkey is None:
        return []
    out = []
    for metric in ("acsa", "tail_recall", "macro_f1"):
        series: dict[str, tuple[list, list, list | None]] = {}
        table = []
        for p in sorted(raw, key=lambda p: p[xkey]):
            v = p.get(metric, (p.get("summary") or {}).get(metric))
            mean, std = (v.get("mean"), v.get("std")) if isinstance(v, dict) else (v, None)
            if not _num(mean):
                continue
            name = str(p.get("strategy") or p.get("label") or metric)
            xs, ys, stds = series.setdefault(name, ([], [], []))
            xs.append(p[xkey])
            ys.append(mean)
            stds.append(std if _num(std) else 0.0)
            table.append({"series": name, "x": p[xkey], "text": f"{mean:.4f}" + (f" ± {std:.4f}" if _num(std) else "")})
        if series:
            chart = plots.sweep_chart(series, xkey.replace("_", " "), f"{metric} vs {xkey.replace('_', ' ')}")
            out.append({"metric": metric, "xkey": xkey, "uri": chart, "table": table})
    return out


def classifier_sections(inputs: Inputs, cls_names: list[str], bench_names: list[str]) -> list[dict]:
    """One block per bench report, and one per dataset for the single-strategy classify folders."""
    blocks = []
    for b, name in zip(inputs.benches, bench_names):
        blocks.append(_classifier_block(b.doc.get("results") or [], b.doc, name, "bench classify", [b], None))
    groups: dict[Any, list[tuple[ClassifyInput, str]]] = {}
    for c, name in zip(inputs.classify, cls_names):
        d = c.doc.get("data") or {}
        groups.setdefault((d.get("fingerprint"), tuple(d.get("classes") or [])), []).append((c, name))
    for members in groups.values():
        results = [c.doc for c, _ in members]
        labels = [c.doc.get("strategy", "?") for c, _ in members]
        labels = [f"{lab} ({n})" if labels.count(lab) > 1 else lab for lab, (_, n) in zip(labels, members)]
        title = ", ".join(n for _, n in members)
        blocks.append(_classifier_block(results, members[0][0].doc, title, "classify", [c for c, _ in members], labels))
    return blocks


def _classifier_block(
    results: list[dict], doc: dict, title: str, kind: str, sources: list, labels: list[str] | None
) -> dict:
    data = doc.get("data") or {}
    classes = [str(c) for c in data.get("classes") or []]
    rows, cols = _strategy_rows(results, labels)
    labels = [row["strategy"] for row in rows]
    recalls = {
        lab: r["summary"]["recall_per_class"]
        for lab, r in zip(labels, results)
        if len((r.get("summary") or {}).get("recall_per_class") or []) == len(classes) and classes
    }
    tail = next((x.get("tail_classes") for r in results for x in r.get("runs") or [] if x.get("tail_classes")), None)
    recall_table = [{"strategy": lab, "recall": [f"{v:.3f}" for v in vals]} for lab, vals in recalls.items()]
    figures = []
    for s in sources:
        for p in s.figures:
            uri, (w, _) = plots.image_uri(p)
            figures.append({"uri": uri, "file": str(p.relative_to(s.path.parent)), "display_width": min(w, 900)})
    generators = dict(doc["generators"]) if isinstance(doc.get("generators"), dict) else {}
    generators.update({lab: r["generator"] for lab, r in zip(labels, results) if r.get("generator")})
    return {
        "title": title,
        "kind": kind,
        "dataset": data.get("preset") or data.get("source"),
        "classes": classes,
        "columns": [h for _, h in cols],
        "rows": rows,
        "winners": doc.get("winners") if isinstance(doc.get("winners"), str) else None,
        "notes": [str(n) for n in doc.get("notes") or []],
        "tail": [classes[i] for i in tail if i < len(classes)] if tail and classes else None,
        "recall_chart": plots.recall_bars(recalls, classes, "per-class test recall (mean over seeds)")
        if recalls
        else None,
        "recall_table": recall_table,
        "confusions": _confusions(results, labels, classes) if classes else [],
        "sweeps": _sweeps(doc),
        "figures": figures,
        "generators": generators,
        "complete": doc.get("complete"),
        "wall_seconds": doc.get("wall_seconds"),
    }


# ---------------------------------------------------------------------------------------- Reproduce


def _q(x: Any) -> str:
    return shlex.quote(str(x))


def _classify_command(doc: dict, strategy: str, seeds: int, out: str) -> str:
    if doc.get("reproduce"):  # generated from the output's config.yaml (tailgan.classify.config)
        return doc["reproduce"]
    cfg = next((r.get("config") for r in doc.get("runs") or [] if isinstance(r.get("config"), dict)), None) or {}
    data = doc.get("data") or {}
    parts = ["tailgan classify", "--data", _q(data.get("preset") or data.get("source") or "?"), "--strategy",
             _q(strategy), "--seeds", str(seeds)]  # fmt: skip
    flags = [("arch", "--arch"), ("batch_size", "--batch-size"), ("optimizer", "--optimizer"), ("lr", "--lr"),
             ("weight_decay", "--weight-decay"), ("beta", "--beta"), ("valid_fraction", "--valid-fraction"),
             ("select", "--select"), ("synthetic", "--synthetic")]  # fmt: skip
    parts += ["--steps", str(cfg["steps"])] if cfg.get("steps") else (["--epochs", f"{cfg['epochs']:g}"]
                                                                       if _num(cfg.get("epochs")) else [])
    parts += [f"{flag} {_q(cfg[k])}" for k, flag in flags if cfg.get(k) is not None]
    if doc.get("generator"):
        parts += ["--generator", _q(doc["generator"]), "--checkpoint", _q(doc.get("checkpoint") or "last")]
    parts += ["--out", _q(out)]
    return " ".join(parts)


def _eval_command(e: EvalInput, run_path: str | None) -> str | None:
    r = e.result
    if r.get("real") and r.get("fake"):
        parts = ["tailgan eval", "--real", _q(r["real"]), "--fake", _q(r["fake"])]
    else:
        run = run_path or e.run or r.get("run")
        if not run:
            return None
        parts = ["tailgan eval", _q(run), "--checkpoint", _q(e.checkpoint or r.get("checkpoint") or "last")]
        if r.get("ref"):
            parts += ["--ref", _q(r["ref"])]
        if r.get("n") is not None:
            parts += ["--n", str(r["n"])]
    if r.get("metrics"):
        parts += ["--metrics", ",".join(map(str, r["metrics"]))]
    if r.get("extractor") in ("evaluator", "inception"):
        parts += ["--feature", r["extractor"]]
    parts += ["--seed", str(r.get("seed", 0))]
    return " ".join(parts)


def _package_versions() -> dict[str, str]:
    out = {}
    for pkg in ("tailgan", "torch", "torchvision", "numpy", "scikit-learn", "imbalanced-learn", "torchmetrics",
                "torch-fidelity", "matplotlib", "jinja2", "pillow"):  # fmt: skip
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(),
    }  # fmt: skip


def _mtime(path: Path) -> str:
    try:
        return _dt.datetime.fromtimestamp(path.stat().st_mtime).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    except OSError:
        return "-"


def reproduce_section(inputs: Inputs, run_names, cls_names, bench_names, command: str | None) -> dict:
    """Configs, seeds, command lines, versions and machines of every input, and of this report."""
    items = []
    for run, label in zip(inputs.runs, run_names):
        cfg = run.config or {}
        data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
        cmds = [f"tailgan train --config {_q(run.path / 'config.yaml')} --out NEW_RUN"] if run.config_text else []
        cmds += [c for c in (_eval_command(e, str(run.path)) for e in run.evals) if c]
        versions = {}
        for e in run.evals:
            versions.update(e.result.get("versions") or {})
        items.append({
            "kind": "training run", "label": label, "path": str(run.path), "date": _mtime(run.path / "log.jsonl"),
            "seeds": {k: v for k, v in (("seed", cfg.get("seed")), ("data seed", data.get("seed"))) if v is not None},
            "faithful": cfg.get("faithful"), "commands": cmds, "config": run.config_text,
            "versions": versions, "machine": None,
            "fingerprint": (run.manifest or {}).get("fingerprint") if isinstance(run.manifest, dict) else None,
        })  # fmt: skip
    for c, label in zip(inputs.classify, cls_names):
        doc = c.doc
        seeds = [r.get("seed") for r in doc.get("runs") or []]
        cfg = next((r.get("config") for r in doc.get("runs") or [] if isinstance(r.get("config"), dict)), None)
        items.append({
            "kind": "classify", "label": label, "path": str(c.path.parent), "date": _mtime(c.path),
            "seeds": {"seeds": seeds}, "faithful": None,
            "commands": [_classify_command(doc, doc.get("strategy", "?"), len(seeds), str(c.path.parent))],
            "config": _yaml(cfg) if cfg else None, "versions": {}, "machine": None,
            "fingerprint": (doc.get("data") or {}).get("fingerprint"),
        })  # fmt: skip
    for b, label in zip(inputs.benches, bench_names):
        doc = b.doc
        strategies = [r.get("strategy") for r in doc.get("results") or [] if not r.get("generative")]
        data = doc.get("data") or {}
        gens = doc.get("generators") if isinstance(doc.get("generators"), dict) else {}
        cmd = (f"{doc.get('command') or 'tailgan bench classify'} --data {_q(doc.get('data_spec') or data.get('preset') or data.get('source') or '?')}"  # noqa: E501
               f" --strategies {_q(','.join(map(str, strategies)))} --seeds {len(doc.get('seeds') or [])}")  # fmt: skip
        cfg = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        if cfg.get("steps"):
            cmd += f" --steps {cfg['steps']}"
        elif _num(cfg.get("epochs")):
            cmd += f" --epochs {cfg['epochs']:g}"
        for k, flag in (("arch", "--arch"), ("batch_size", "--batch-size"), ("lr", "--lr")):
            if cfg.get(k) is not None:
                cmd += f" {flag} {_q(cfg[k])}"
        cmd += "".join(f" --generator {_q(f'{k}={v}')}" for k, v in gens.items())
        cmd += f" --out {_q(b.path.parent)}"
        cmd = doc.get("reproduce") or cmd  # generated from the output's config.yaml (tailgan.classify.config)
        machine = doc.get("machine") if isinstance(doc.get("machine"), dict) else None
        items.append({
            "kind": "bench classify", "label": label, "path": str(b.path), "date": _mtime(b.path),
            "seeds": {"seeds": doc.get("seeds")}, "faithful": None, "commands": [cmd],
            "config": _yaml(cfg) if cfg else None, "versions": {}, "machine": machine,
            "fingerprint": data.get("fingerprint"),
        })  # fmt: skip
    for e in inputs.evals:
        cmd = _eval_command(e, None)
        items.append({
            "kind": "evaluation", "label": e.path.name + f" [{e.key}]", "path": str(e.path), "date": _mtime(e.path),
            "seeds": {"seed": e.result.get("seed")}, "faithful": None, "commands": [cmd] if cmd else [],
            "config": _yaml(e.result.get("settings")) if e.result.get("settings") else None,
            "versions": e.result.get("versions") or {}, "machine": None, "fingerprint": e.result.get("fingerprint"),
        })  # fmt: skip
    return {
        "items": items,
        "command": command,
        "versions": _package_versions(),
        "machine": _machine(),
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=100).strip()


# ------------------------------------------------------------------------------------------- Build


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,  # every value from the inputs is text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["duration"] = duration
    return env


def render_report(inputs: Inputs, title: str | None = None, command: str | None = None) -> str:
    """The HTML text of a report on ``inputs`` (see ``build_report``)."""
    run_names = _names([r.path for r in inputs.runs])
    cls_names = _names([c.path for c in inputs.classify])
    bench_names = _names([b.path for b in inputs.benches])
    data = data_sections(inputs, run_names, cls_names, bench_names)
    training = [t for t in (training_section(r, n) for r, n in zip(inputs.runs, run_names)) if t]
    samples = [s for s in (samples_section(r, n) for r, n in zip(inputs.runs, run_names)) if s]
    quality = []
    for run, name in zip(inputs.runs, run_names):
        counts = (run.manifest or {}).get("counts") if isinstance(run.manifest, dict) else None
        # the newest evaluation of each kind (reference/extractor); earlier steps are in the training curves
        newest: dict[str, EvalInput] = {}
        for e in run.evals:
            if e.key not in newest or (e.step or -1) >= (newest[e.key].step or -1):
                newest[e.key] = e
        quality += [quality_section(e, name, counts) for e in newest.values()]
    quality += [quality_section(e, e.path.name, None) for e in inputs.evals]
    classifiers = classifier_sections(inputs, cls_names, bench_names)
    reproduce = reproduce_section(inputs, run_names, cls_names, bench_names, command)
    sections = [
        (key, name)
        for key, name, present in (
            ("data", "Data", data),
            ("training", "Training", training),
            ("samples", "Samples", samples),
            ("quality", "Generation quality per class", quality),
            ("classifiers", "Classifiers", classifiers),
            ("reproduce", "Reproduce", True),
        )
        if present
    ]
    inventory = (
        [{"kind": "training run", "label": n, "path": str(r.path)} for r, n in zip(inputs.runs, run_names)]
        + [{"kind": "classify", "label": n, "path": str(c.path.parent)} for c, n in zip(inputs.classify, cls_names)]
        + [{"kind": "bench classify", "label": n, "path": str(b.path)} for b, n in zip(inputs.benches, bench_names)]
        + [{"kind": "evaluation", "label": e.path.name, "path": str(e.path)} for e in inputs.evals]
    )
    if not title:
        more = " ..." if len(inventory) > 4 else ""
        title = "tailgan report: " + ", ".join(i["label"] for i in inventory[:4]) + more
    template = _environment().get_template("report.html.j2")
    return template.render(
        title=title,
        generator=GENERATOR_TAG,
        sections=sections,
        inventory=inventory,
        notes=inputs.notes,
        data=data,
        training=training,
        samples=samples,
        quality=quality,
        classifiers=classifiers,
        reproduce=reproduce,
    )


def _is_report(path: Path) -> bool:
    head = path.read_bytes()[:2000].decode("utf-8", errors="replace")
    return f'name="generator" content="{GENERATOR_TAG}"' in head


def _check_out(out: Path, overwrite: bool, inputs: Sequence[str | os.PathLike]) -> None:
    """The output check of a file (tailgan.outputs): an earlier report may be replaced; another file only with
    ``overwrite`` and never one that belongs to an input (a checkpoint of a run being reported on)."""
    check_output_file(out, overwrite, _is_report, list(inputs), ours="a tailgan report")


def build_report(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    title: str | None = None,
    overwrite: bool = False,
    command: str | None = None,
) -> Path:
    """Write one self-contained HTML report on ``paths`` to ``out`` (atomically) and return its path.

    ``paths`` are training run folders, ``tailgan classify`` / ``bench classify`` folders or their JSON,
    and evaluation JSON files, in any mix; a folder that is none of them is searched one level down.
    An existing ``out`` is replaced only when it is an earlier tailgan report (or ``overwrite``).
    ``command`` is the command line shown under Reproduce (default: this process's arguments).
    """
    out = Path(out)
    _check_out(out, overwrite, paths)
    inputs = collect(list(paths))
    if command is None:
        command = " ".join(shlex.quote(a) for a in ["tailgan", *sys.argv[1:]]) if sys.argv[1:2] == ["report"] else None
    html = render_report(inputs, title=title, command=command)
    atomic_write(out, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    return out


__all__ = ["BenchInput", "build_report", "render_report"]
