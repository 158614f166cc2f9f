"""Several seeds of one strategy (``tailgan classify``) or of many (``tailgan bench classify``); reports.

Summaries give mean and sample standard deviation (ddof = 1) over seeds, the form of the seeds' tables.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailgan.classify.config import BEFORE_FIELD, SYNTHETIC_FIELDS, ClassifyConfig, validated
from tailgan.classify.metrics import plot_confusion_matrix, plot_recall_bars
from tailgan.classify.runconfig import ClassifyRunConfig, reproduce_command, write_config
from tailgan.classify.strategies import Strategy, parse_strategy
from tailgan.classify.train import train_and_score
from tailgan.data import LongTailedData
from tailgan.errors import TailganError
from tailgan.io import atomic_write_json, atomic_write_text
from tailgan.nets.classifier_io import save_classifier
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


def _progress(r: dict) -> str:
    """Where the kept network was selected: ``step 79/493``, or ``stage 2 step 79/99`` after fine-tuning."""
    if r.get("stage") == 1:
        return f"stage 1 kept, step {r['stage1']['selected_step']}/{r['stage1']['steps']}"
    if "finetune_steps" in r:
        return f"stage 2 step {r['selected_step']}/{r['finetune_steps']}"
    return f"step {r['selected_step']}/{r['steps']}"


def classify_seeds(
    data: LongTailedData,
    strategy: str | Strategy,
    seeds: Sequence[int],
    config: ClassifyConfig,
    *,
    generator: Any = None,
    synthetic_dir: str | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    save_models: str | Path | None = None,
    references: dict | None = None,
    done: Sequence[dict] = (),
    on_seed: Callable[[dict], None] | None = None,
) -> dict:
    """Run ``train_and_score`` for each seed; returns {"strategy", "runs", "summary"}. ``save_models``: a
    folder to keep each seed's selected classifier in (``seed<N>/classifier.pt``, what ``tailgan explain``
    reads). ``references``: see :func:`train_and_score` (reference classifiers kept across calls). ``done``:
    runs of seeds finished earlier (``--resume``), not trained again; ``on_seed(partial)`` gets the result
    so far after each seed, so an interrupted run loses at most the seed in progress."""
    strategy = strategy if isinstance(strategy, Strategy) else parse_strategy(strategy, beta=config.beta)
    finished, runs = {r["seed"]: r for r in done}, []
    for seed in seeds:
        if seed in finished:
            log(f"{strategy.name:>14s} seed {seed}: kept from the earlier run (ACSA {finished[seed]['acsa']:.4f})")
            runs.append(finished[seed])
            continue
        keep = None
        if save_models is not None and not strategy.transfer:

            def keep(model, seed=seed):
                save_classifier(model, Path(save_models) / f"seed{seed}" / "classifier.pt", arch=config.arch,
                                num_classes=data.num_classes, in_channels=data.train.images.shape[1],
                                classes=list(data.classes), image_size=data.train.images.shape[-1],
                                extra={"strategy": strategy.name, "seed": seed})  # fmt: skip

        r = train_and_score(
            data, strategy, seed, config, generator=generator, synthetic_dir=synthetic_dir, device=device, log=log,
            keep_model=keep, references=references,
        )  # fmt: skip
        log(
            f"{strategy.name:>14s} seed {seed}: ACSA {r['acsa']:.4f}  macro-F1 {r['macro_f1']:.4f}  "
            f"acc {r['accuracy']:.4f}  ({r['seconds']:.0f} s, {_progress(r)})"
        )
        runs.append(r)
        if on_seed is not None:
            on_seed({"strategy": runs[0]["strategy"], "runs": runs, "summary": summarize(runs)})
    return {"strategy": runs[0]["strategy"], "runs": runs, "summary": summarize(runs)}


def dataset_info(data: LongTailedData) -> dict:
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
    best classical strategy."""

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


def protocol_lines(results: list[dict]) -> list[str]:
    """One line per synthetic-data protocol of the generative rows (read from their runs' configs): a merged
    table's rows may have been trained under different protocols, and classical rows read none of it."""
    groups: dict[str, list[str]] = {}
    for r in results:
        config = (r.get("runs") or [{}])[0].get("config")
        if r.get("generative") and config:
            key = ", ".join(f"{k}={config[k]}" for k in SYNTHETIC_FIELDS if k in config)
            groups.setdefault(key, []).append(r["strategy"])
    return [f"- synthetic-data protocol of {', '.join(names)}: {key}" for key, names in groups.items()]


def write_bench_report(
    results: list[dict],
    data: LongTailedData,
    out: str | Path,
    header: dict,
    notes: Sequence[str] = (),
    stem: str = "bench",
) -> tuple[Path, Path]:
    """OUT/<stem>.json, OUT/<stem>.md (table + winners) and OUT/<stem>_recall.png (per-class recall)."""
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
                v = {a: b for a, b in v.items() if a not in SYNTHETIC_FIELDS}
            md.append(f"- {k}: " + ", ".join(f"{a}={b}" for a, b in v.items()))
    md += protocol_lines(results)
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


def config_differences(old: dict | None, config: ClassifyConfig) -> list[str]:
    """The settings in which ``config`` differs from ``old`` (a report's ``asdict`` of an earlier config).

    A setting added to ``ClassifyConfig`` after the report was written is no difference while it has the value
    the earlier runs behaved as (its default, or ``BEFORE_FIELD``'s entry), so new options do not orphan
    finished tables."""
    if old is None:
        return ["config"]
    new = json.loads(json.dumps(asdict(validated(config))))  # through JSON, as the earlier report was: tuples -> lists
    default = json.loads(json.dumps(asdict(ClassifyConfig())))
    before = {**default, **BEFORE_FIELD}  # an absent field: what runs did before it existed
    keys = set(old) | {k for k in new if new[k] != before.get(k)}
    return sorted(k for k in keys if old.get(k, before.get(k)) != new.get(k, default.get(k)))


# settings only the joint strategies (cyclegan-*, stargan-*) read: no difference between tables without them
JOINT_FIELDS = frozenset({"joint_gan_steps", "joint_batch_size", "joint_cls_batch", "joint_options", "joint_grid_dir"})


def _is_synthetic(name: str) -> bool:
    return parse_strategy(name).synthetic is not None


def _is_joint(name: str) -> bool:
    try:
        return parse_strategy(name).joint is not None
    except TailganError:  # a generator row's label ("gan:ecogan+la"): not a joint strategy
        return False


def _check_previous(
    previous: dict, seeds: list[int], config: ClassifyConfig, data: LongTailedData, strategies: Sequence[str] = ()
) -> None:
    """An earlier report can only be extended by runs with the same seeds, settings and data (settings that
    none of the report's or the new ``strategies`` read do not count)."""
    diff = config_differences(previous.get("config"), config)
    names = [*strategies, *(run["strategy"] for r in previous.get("results", []) for run in r.get("runs", [])[:1])]
    if not any(_is_joint(n) for n in names):
        diff = [k for k in diff if k not in JOINT_FIELDS]
    old_generative = any(r.get("generative") for r in previous.get("results", []))
    if not (old_generative and any(_is_synthetic(s) for s in strategies)):
        # the synthetic-data protocol concerns generative rows only: generator rows with their own protocol
        # (recorded in each run's config) can join a table of real-data rows, or real-data rows a table of them
        diff = [k for k in diff if k not in SYNTHETIC_FIELDS]
    checks = {
        "seeds": (previous.get("seeds"), seeds),
        "config": ({k: (previous.get("config") or {}).get(k) for k in diff},
                   {k: json.loads(json.dumps(asdict(validated(config)))).get(k) for k in diff}),  # fmt: skip
        "data fingerprint": ((previous.get("data") or {}).get("fingerprint"), data.manifest.get("fingerprint")),
    }
    for what, (old, new) in checks.items():
        if old != new:
            raise TailganError(
                f"cannot merge into the earlier report: its {what} differs ({old!r} vs {new!r}); "
                "run with the same settings or write to a new --out"
            )


def shared_split(config: ClassifyConfig, generators: dict[str, Any]) -> tuple[ClassifyConfig, str]:
    """The validation split every row of a table selects on, and the sentence that says which.

    Generators that held out a validation split (``valid_split``) never saw it, so every row -- classical ones
    too -- selects on that split, for every seed; otherwise every row of seed s selects on seed s's split."""
    splits = {label: g.valid_split for label, g in generators.items() if getattr(g, "valid_split", None)}
    held = {(s["fraction"], s["seed"]) for s in splits.values()}
    if len(held) > 1:
        raise TailganError(
            f"the generators held out different validation splits ({splits}); rows compared in one table must "
            "select on the same split: train them with the same valid_fraction and valid_seed"
        )
    if held and config.split_seed is None:
        fraction, seed = held.pop()
        config = replace(config, valid_fraction=fraction, split_seed=seed)
        return config, (f"every row and seed selects on the generators' held-out validation split (fraction "
                        f"{fraction:g}, seed {seed}), which no generator saw")  # fmt: skip
    if config.split_seed is not None:
        return config, f"every row and seed selects on one validation split (fraction {config.valid_fraction:g}, " \
                       f"seed {config.split_seed})"  # fmt: skip
    return config, (f"every row of seed s selects on seed s's validation split (fraction {config.valid_fraction:g}),"
                    " the same for every row")  # fmt: skip


def _bench_jobs(strategies: Sequence[str], generators: dict[str, Any], gan_strategies: Sequence[str]) -> list:
    """(row label, strategy, generator) of every row: the strategies, then one row per generator x gan strategy."""
    return [(s, s, None) for s in strategies] + [
        (label if gs == "gan" else f"{label}+{gs.removeprefix('gan+')}", gs, g)
        for label, g in generators.items()
        for gs in gan_strategies
    ]


def _kept_rows(previous: dict, jobs: list, n_seeds: int, resume: bool, header: dict) -> tuple[list, dict, list]:
    """(rows of ``previous`` kept, finished seeds of rows cut short, jobs left). Merging keeps the rows not re-run
    here; resuming keeps every finished row and the finished seeds of a row cut short."""
    if not resume:
        earlier = previous.get("command", "an earlier run")
        header["merged_with"] = earlier + (f"; {previous['merged_with']}" if previous.get("merged_with") else "")
        return [r for r in previous["results"] if r["strategy"] not in {j[0] for j in jobs}], {}, jobs
    partial = {r["strategy"]: r["runs"] for r in previous["results"] if len(r["runs"]) < n_seeds}
    results = [r for r in previous["results"] if r["strategy"] not in partial]
    return results, partial, [j for j in jobs if j[0] not in {r["strategy"] for r in results}]


def run_bench(
    data: LongTailedData,
    strategies: Sequence[str],
    seeds: Sequence[int],
    config: ClassifyConfig,
    out: str | Path,
    *,
    generators: dict[str, Any] | None = None,
    gan_strategies: Sequence[str] = ("gan",),
    synthetic_dir: str | None = None,
    device: str | torch.device = "cpu",
    header: dict | None = None,
    notes: Sequence[str] = (),
    stem: str = "bench",
    previous: dict | None = None,
    log: Callable[[str], None] = print,
    references: dict | None = None,
    resume: bool = False,
    run_config: ClassifyRunConfig | None = None,
) -> list[dict]:
    """Every strategy x seed; the report is rewritten after each seed, so a long run shows progress.

    ``generators`` maps a label (e.g. "gan:ecogan") to a loaded generator: one row (``"generative": True``) per
    ``gan_strategies`` entry (``gan`` as LABEL, ``gan+la`` as "LABEL+la"). ``previous``: an earlier report of the
    same seeds, settings and data whose rows are kept unless re-run (``resume``: this output's own, unfinished).
    Reference classifiers are trained once per seed (kept in ``references``); ``run_config``: the run's config.
    """
    references, seeds, generators = {} if references is None else references, list(seeds), generators or {}
    config, split_note = shared_split(validated(config), generators)
    header = {"seeds": seeds, "config": asdict(config), "machine": machine_info(), **(header or {}),
              "validation_split": split_note}  # fmt: skip
    if run_config is not None:
        header["reproduce"] = reproduce_command(run_config)
        write_config(run_config, out)
    jobs, results, partial = _bench_jobs(strategies, generators, gan_strategies), [], {}
    if previous is not None:
        _check_previous(previous, seeds, config, data, [strategy for _, strategy, _ in jobs])
        results, partial, jobs = _kept_rows(previous, jobs, len(seeds), resume, header)
    n_total, t0 = len(results) + len(jobs), time.perf_counter()

    def write(rows: list[dict]) -> None:
        header["wall_seconds"] = (previous or {}).get("wall_seconds", 0) + round(time.perf_counter() - t0)
        header["complete"] = len(rows) == n_total and all(len(r["runs"]) == len(seeds) for r in rows)
        write_bench_report(rows, data, out, header, notes, stem)

    for label, name, gen in jobs:
        strategy = parse_strategy(name, beta=config.beta)  # once per row: every seed gets the parsed strategy
        row = {"generative": strategy.generative}
        r = classify_seeds(
            data, strategy, seeds, config, generator=gen, synthetic_dir=synthetic_dir, device=device, log=log,
            references=references, done=partial.get(label, ()),
            on_seed=lambda p, label=label, row=row: write([*results, {**p, "strategy": label, **row}]),
        )  # fmt: skip
        results.append({**r, "strategy": label, **row})
        write(results)
    if not jobs and results:  # nothing new to train: re-render the earlier report (e.g. with new notes)
        header.pop("merged_with", None)
        header.update({k: previous[k] for k in ("command", "merged_with") if k in previous})
        write(results)
    return results


def load_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
