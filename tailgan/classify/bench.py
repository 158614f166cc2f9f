"""Several seeds of one strategy (``tailgan classify``) or of many (``tailgan bench classify``), and the checks
that let a bench output be resumed or merged into.

The files they write (summaries over seeds, ``metrics.json``, the bench table) live in
``tailgan.report.classify_tables``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from tailgan.classify.config import BEFORE_FIELD, SYNTHETIC_FIELDS, ClassifyConfig, validated
from tailgan.classify.runconfig import ClassifyRunConfig, reproduce_command, write_config
from tailgan.classify.strategies import Strategy, parse_strategy
from tailgan.classify.train import train_and_score
from tailgan.data import LongTailedData
from tailgan.errors import TailganError
from tailgan.nets.classifier_io import save_classifier
from tailgan.report import classify_tables
from tailgan.report.classify_tables import machine_info, summarize


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
    backbones: dict | None = None,
    done: Sequence[dict] = (),
    on_seed: Callable[[dict], None] | None = None,
) -> dict:
    """Run ``train_and_score`` for each seed; returns {"strategy", "runs", "summary"}. ``save_models``: a
    folder to keep each seed's selected classifier in (``seed<N>/classifier.pt``, what ``tailgan explain``
    reads). ``references``, ``backbones``: see :func:`train_and_score` (kept across calls). ``done``:
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
            keep_model=keep, references=references, backbones=backbones,
        )  # fmt: skip
        log(
            f"{strategy.name:>14s} seed {seed}: ACSA {r['acsa']:.4f}  macro-F1 {r['macro_f1']:.4f}  "
            f"acc {r['accuracy']:.4f}  ({r['seconds']:.0f} s, {_progress(r)})"
        )
        runs.append(r)
        if on_seed is not None:
            on_seed({"strategy": runs[0]["strategy"], "runs": runs, "summary": summarize(runs)})
    return {"strategy": runs[0]["strategy"], "runs": runs, "summary": summarize(runs)}


# the report writer for classifier rows: the generative rows' synthetic-data protocol is the config's SYNTHETIC_FIELDS
write_bench_report = functools.partial(classify_tables.write_bench_report, protocol_fields=SYNTHETIC_FIELDS)


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
    """(row label, strategy, generator) of every row: the strategies, then one row per generator x gan strategy,
    labelled by the strategy with its ``gan`` token replaced by the generator's label (``crt+gan:bagan-gp+la``)."""
    return [(s, s, None) for s in strategies] + [
        ("+".join(label if token == "gan" else token for token in gs.split("+")), gs, g)
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


def _start_report(
    out: str | Path,
    seeds: list[int],
    config: ClassifyConfig,
    split_note: str,
    header: dict | None,
    run_config: ClassifyRunConfig | None,
) -> dict:
    """The report's header (seeds, settings, machine, the caller's entries, the validation split and the reproduce
    command of ``run_config``), with ``run_config`` written to OUT/config.yaml."""
    header = {"seeds": seeds, "config": asdict(config), "machine": machine_info(), **(header or {}),
              "validation_split": split_note}  # fmt: skip
    if run_config is not None:
        header["reproduce"] = reproduce_command(run_config)
        write_config(run_config, out)
    return header


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
    backbones: dict | None = None,
) -> list[dict]:
    """Every strategy x seed; the report is rewritten after each seed, so a long run shows progress.

    ``generators`` maps a label (e.g. "gan:ecogan") to a loaded generator: one row (``"generative": True``) per
    ``gan_strategies`` entry (``gan`` as LABEL, ``gan+la`` as "LABEL+la"). ``previous``: an earlier report of the
    same seeds, settings and data whose rows are kept unless re-run (``resume``: this output's own, unfinished).
    Reference classifiers and second stages' backbones are trained once per seed (kept in ``references``,
    ``backbones``); ``run_config``: the run's config.
    """
    references, seeds, generators = {} if references is None else references, list(seeds), generators or {}
    backbones = {} if backbones is None else backbones
    config, split_note = shared_split(validated(config), generators)
    header = _start_report(out, seeds, config, split_note, header, run_config)
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
            references=references, backbones=backbones, done=partial.get(label, ()),
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
