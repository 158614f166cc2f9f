"""Finding and reading what a report is made of: training runs, classify / bench folders, evaluation files.

Each kind is recognised by its files (never by its name), and every reader is tolerant: missing files
give missing sections, unknown keys are kept, a damaged line of ``log.jsonl`` is counted and skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tailgan.errors import TailganError
from tailgan.outputs import read_marker

STEP_PNG = re.compile(r"(?:^|_)step_?(\d+)\.png$")


@dataclass
class RunInput:
    """A ``tailgan train`` folder."""

    path: Path
    config: dict[str, Any] | None
    config_text: str | None
    manifest: dict[str, Any] | None
    records: list[dict[str, Any]]
    bad_lines: int
    grids: list[tuple[int, Path]]  # samples/step_N.png, by step
    translations: list[tuple[int, Path]]  # samples/translate_step_N.png, by step
    attention: Path | None
    evals: list[EvalInput] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)


@dataclass
class EvalInput:
    """One evaluation result (``tailgan eval``): a dict with ``overall`` and ``per_class``."""

    path: Path
    key: str  # "<ref>/<extractor>" or the file name
    result: dict[str, Any]
    step: int | None = None
    checkpoint: str | None = None
    run: str | None = None


@dataclass
class ClassifyInput:
    """A ``tailgan classify`` folder (``metrics.json``: one strategy, every seed, the summary)."""

    path: Path
    doc: dict[str, Any]
    figures: list[Path]


@dataclass
class BenchInput:
    """A ``tailgan bench classify`` report (``bench.json`` or another stem): many strategies."""

    path: Path
    doc: dict[str, Any]
    figures: list[Path]


@dataclass
class Inputs:
    runs: list[RunInput] = field(default_factory=list)
    classify: list[ClassifyInput] = field(default_factory=list)
    benches: list[BenchInput] = field(default_factory=list)
    evals: list[EvalInput] = field(default_factory=list)  # given directly, not through a run folder
    notes: list[str] = field(default_factory=list)  # what was skipped, for the reader


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TailganError(f"cannot read {path} as JSON ({e}); give a file tailgan wrote, or remove it") from None


def _step_of(path: Path) -> int:
    m = STEP_PNG.search(path.name)
    return int(m.group(1)) if m else -1


def is_eval_result(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("overall"), dict) and isinstance(doc.get("per_class"), list)


def is_bench(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("results"), list)
        and all(isinstance(r, dict) and "summary" in r for r in doc["results"])
    )


def is_classify(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("runs"), list) and isinstance(doc.get("summary"), dict)


def eval_inputs(path: Path, doc: Any) -> list[EvalInput]:
    """The results of an evaluation file: ``RUN/eval/<step>.json`` (keyed ``<ref>/<extractor>``) or one result."""
    if is_eval_result(doc):
        return [EvalInput(path, path.stem, doc, doc.get("step"), doc.get("checkpoint"), doc.get("run"))]
    if isinstance(doc, dict) and isinstance(doc.get("results"), dict):
        return [
            EvalInput(path, key, r, doc.get("step", r.get("step")), doc.get("checkpoint"), doc.get("run"))
            for key, r in doc["results"].items()
            if is_eval_result(r)
        ]
    return []


def read_log(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of ``log.jsonl`` and the number of lines that were not one (e.g. a cut last line)."""
    records, bad = [], 0
    if not path.is_file():
        return records, bad
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(r, dict):
            records.append(r)
        else:
            bad += 1
    return records, bad


def read_run(path: Path, notes: list[str]) -> RunInput:
    """Everything a report shows of a training run folder."""
    config, text = None, None
    if (path / "config.yaml").is_file():
        text = (path / "config.yaml").read_text(encoding="utf-8", errors="replace")
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as e:
            notes.append(f"{path / 'config.yaml'}: not valid YAML ({str(e).splitlines()[0]}); shown as text only")
        if not isinstance(config, dict):
            config = None
    manifest = None
    if (path / "data_manifest.json").is_file():
        try:
            manifest = _read_json(path / "data_manifest.json")
        except TailganError as e:
            notes.append(str(e))
    records, bad = read_log(path / "log.jsonl")
    samples = path / "samples"
    grids, translations = [], []
    if samples.is_dir():
        for p in samples.glob("*.png"):
            if p.name.startswith("translate_step_"):
                translations.append((_step_of(p), p))
            elif p.name.startswith("step_"):
                grids.append((_step_of(p), p))
    attention = next((p for p in (path / "attention.png", samples / "attention.png") if p.is_file()), None)
    run = RunInput(
        path, config, text, manifest, records, bad, sorted(grids), sorted(translations), attention,
        checkpoints=sorted(p.name for p in (path / "checkpoints").glob("*.pt")) if (path / "checkpoints").is_dir()
        else [],
    )
    if (path / "eval").is_dir():
        for f in sorted((path / "eval").glob("*.json"), key=lambda p: (len(p.stem), p.stem)):
            try:
                run.evals += eval_inputs(f, _read_json(f))
            except TailganError as e:
                notes.append(str(e))
    return run


def _figures(folder: Path, skip: set[str]) -> list[Path]:
    """PNGs of a classify / bench folder that the report does not redraw (sweeps, heat maps, ...)."""
    return sorted(p for p in folder.rglob("*.png") if p.name not in skip and not p.name.endswith("_recall.png"))


def collect(paths: list[str | Path]) -> Inputs:
    """Recognise each path (a folder or a JSON file); a folder that is none of the kinds is searched one
    level down, so a demo or study folder can be given whole."""
    if not paths:
        raise TailganError("give at least one PATH: a training run, a classify / bench folder or an eval JSON")
    inputs = Inputs()
    seen: set[Path] = set()
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise TailganError(f"{path} does not exist; give a run folder, a classify / bench folder or an eval JSON")
        if not _add(path, inputs, seen, depth=1):
            raise TailganError(
                f"{path} is not a tailgan output: no config.yaml or log.jsonl (training run), metrics.json "
                f"(classify), bench JSON (bench classify) or evaluation JSON in it or in its sub-folders"
            )
    # an eval file given directly that is also in a given run folder is shown once, with its run
    in_runs = {e.path.resolve() for r in inputs.runs for e in r.evals}
    inputs.evals = [e for e in inputs.evals if e.path.resolve() not in in_runs]
    return inputs


def _add(path: Path, inputs: Inputs, seen: set[Path], depth: int) -> bool:
    real = path.resolve()
    if real in seen:
        return True
    if path.is_file():
        if path.suffix != ".json":
            return False
        doc = _read_json(path)
        if is_bench(doc):
            inputs.benches.append(BenchInput(path, doc, []))
        elif is_classify(doc):
            inputs.classify.append(ClassifyInput(path, doc, []))
        else:
            found = eval_inputs(path, doc)
            if not found:
                return False
            inputs.evals += found
        seen.add(real)
        return True
    kind = (read_marker(path) or {}).get("kind")  # classify outputs hold a config.yaml too
    if kind in (None, "run") and ((path / "config.yaml").is_file() or (path / "log.jsonl").is_file()):
        seen.add(real)
        inputs.runs.append(read_run(path, inputs.notes))
        return True
    benches = [f for f in sorted(path.glob("*.json")) if f.stem == "bench"] + [
        f for f in sorted(path.glob("*.json")) if f.stem != "bench"
    ]
    for f in benches:
        try:
            doc = _read_json(f)
        except TailganError:
            continue
        if is_bench(doc):
            seen.add(real)
            inputs.benches.append(BenchInput(f, doc, _figures(path, {"confusion.png"})))
            return True
    if (path / "metrics.json").is_file():
        doc = _read_json(path / "metrics.json")
        if is_classify(doc):
            seen.add(real)
            inputs.classify.append(ClassifyInput(path / "metrics.json", doc, _figures(path, {"confusion.png"})))
            return True
    found = False
    if depth > 0:
        for sub in sorted(q for q in path.iterdir() if q.is_dir() and not q.name.startswith(".")):
            found |= _add(sub, inputs, seen, depth - 1)
        for f in sorted(path.glob("*.json")):  # loose eval results beside the sub-folders
            try:
                doc = _read_json(f)
            except TailganError:
                continue
            if eval_inputs(f, doc) and f.resolve() not in seen:
                seen.add(f.resolve())
                inputs.evals += eval_inputs(f, doc)
                found = True
    if found:
        seen.add(real)
    return found
