"""mkdocs hook: reference and results pages generated at build time, so they cannot drift from the code.

- ``reference/presets.md``, ``faithful.md``, ``strategies.md``, ``metrics.md``, ``config.md``: from the registries
  (``tailgan.data.PRESETS``, ``tailgan.methods``, ``tailgan.classify.strategies``, ``tailgan.metrics.evaluate``)
  and the config dataclasses;
- ``results/<name>.md`` (with the figures beside them): ``benchmarks/results/*.md`` as they are, and
  ``results/index.md`` listing them.

Nothing is written into ``docs/``: the pages exist only in the build.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def _cell(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) if not isinstance(c, str) else c.replace("|", "\\|") for c in row) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def presets_page() -> str:
    from tailgan.data import PRESETS as DATA_PRESETS
    from tailgan.methods import METHODS, all_presets, method_module

    rows = [[f"`{name}`", ", ".join(f"`{k}={v}`" for k, v in cfg.items())] for name, cfg in DATA_PRESETS.items()]
    out = ["# Presets\n", "Generated from the registries at build time.\n",
           "## Data presets\n", "`--data NAME` (or `tailgan.load_data(NAME)`); `key=value` overrides any field.\n",
           _table(["preset", "data config"], rows)]
    method_rows = []
    for method in METHODS:
        module = method_module(method)
        presets = getattr(module, "PRESETS", {}) or {}
        default = getattr(module, "DEFAULT_PRESET", None)
        doc = (METHODS.get(method).__doc__ or "").strip().split("\n")[0]
        names = [f"`{p}`" + (" (default)" if p == default else "") for p in presets] or ["-"]
        method_rows.append([f"`{method}`", ", ".join(names), doc])
    out += ["## Methods\n", "`--method NAME` takes a method (its default preset) or a preset.\n",
            _table(["method", "presets", "what it is"], method_rows)]
    preset_rows = []
    for name, cfg in all_presets().items():
        settings = _flat({k: v for k, v in cfg.items() if k != "method"})
        preset_rows.append([f"`{name}`", f"`{cfg['method']}`",
                            ", ".join(f"`{k}={v}`" for k, v in settings.items()) or "the method's defaults"])
    out += ["## Method presets\n", "What each preset sets on top of the config defaults ([config](config.md)).\n",
            _table(["preset", "method", "settings"], preset_rows)]
    return "\n".join(out)


def faithful_page() -> str:
    from tailgan.methods import METHODS, method_module

    rows = []
    for method in METHODS:
        table = getattr(method_module(method), "FAITHFUL", {}) or {}
        for preset, overrides in table.items():
            rows.append([f"`{preset}`", f"`{method}`", ", ".join(f"`{k}={v}`" for k, v in _flat(overrides).items())])
    return "\n".join([
        "# Faithful behaviour\n",
        "Where an original code base has a bug, tailgan's default is the sound behaviour and the original one is an "
        "option. `faithful=true` sets every option of the preset's row at once; an explicit `key=value` wins over "
        "it. What each option means: [training](../guide/training.md#faithful-behaviour), "
        "[DFG](../guide/dfg.md). Generated from each recipe module's `FAITHFUL` table.\n",
        _table(["preset", "method", "faithful=true sets"], rows),
        "A recipe with no row (e.g. `idagan`, which has no original code) refuses `faithful=true`.\n",
    ])


def strategies_page() -> str:
    from tailgan.classify import strategies as s

    def parts(name: str) -> str:
        st = s.parse_strategy(name)
        bits = []
        for field in dataclasses.fields(st):
            value = getattr(st, field.name)
            if field.name in ("cb_loss_type", "beta") and st.loss != "cbl":
                continue  # only the class-balanced loss reads them
            if value not in (None, False, "", "none", "ce", "argmax") and field.name != "name":
                bits.append(f"{field.name}=`{value}`")
        return ", ".join(bits) or "plain cross-entropy, predictions as they are"

    groups = [
        ("Classical", s.CLASSICAL_STRATEGIES, "`--strategies all` in `tailgan bench classify` means these."),
        ("Synthetic images", s.SYNTHETIC_STRATEGIES,
         "Combine with any of " + ", ".join(f"`{c}`" for c in s.COMBINABLE) + " as `gan+S` / `folder+S` / `m2m+S`."),
        ("Batch mixing", s.MIXES, "Modifiers before any of the strategies above: `cmo+balanced-softmax`, `mixup+la`."),
        ("Second stage on the backbone's features", s.DECOUPLED + s.FEATURE_GENERATORS,
         "Modifiers: `crt+S` re-trains the head of the `S` backbone (`crt` alone: on `vanilla`); with "
         "`gan+`/`folder+`/`m2m+` the synthetic images' features feed the head (`crt+gan+la`)."),
        ("Joint (translator + classifier)", s.JOINT_STRATEGIES, "See [joint generation](../guide/joint.md)."),
        ("Transfer (DFG's rows)", s.TRANSFER_STRATEGIES, "See [DFG](../guide/dfg.md)."),
    ]
    out = ["# Strategies\n", "Generated from `tailgan.classify.strategies` at build time; the parts each name "
           "resolves to (`parse_strategy`). What they mean: [classifiers](../guide/classifiers.md).\n"]
    for title, names, note in groups:
        rows = []
        for name in names:
            try:
                rows.append([f"`{name}`", parts(name)])
            except Exception:  # joint and transfer strategies resolve elsewhere
                rows.append([f"`{name}`", "-"])
        out += [f"## {title}\n", note + "\n", _table(["strategy", "resolves to"], rows)]
    return "\n".join(out)


METRIC_TEXT = {
    "fid": "Fréchet distance between real and generated features (lower is better)",
    "kid": "kernel inception distance, unbiased, mean (and std over subsets) (lower is better)",
    "is": "inception score of the generated images (higher is better)",
    "prdc": "precision, recall, density, coverage with k nearest neighbours (higher is better)",
    "ifid": "intra-class FID: FID within each class",
    "msssim": "MS-SSIM among generated images of a class: lower is more diverse",
    "labelacc": "share of generated images the evaluator assigns to the class they were generated for",
}


def metrics_page() -> str:
    from tailgan.scores import higher_is_better

    ev = importlib.import_module("tailgan.metrics.evaluate")  # the module, not the function of that name
    rows = [[f"`{m}`", METRIC_TEXT.get(m, ""), "higher" if higher_is_better(m) else "lower"] for m in ev.METRICS]
    return "\n".join([
        "# Metrics\n",
        "Generated from `tailgan.metrics.evaluate.METRICS` at build time; every figure is given overall and per "
        "class. See [evaluation](../guide/evaluation.md).\n",
        _table(["metric", "what it measures", "better"], rows),
        "References (`--ref`): " + ", ".join(f"`{r}`" for r in ev.REFS) + ".\n",
        "Columns of the printed table: " + ", ".join(f"`{c}`" for c in ev.COLUMNS) + ".\n",
    ])


def _type_name(tp) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", None) or repr(tp)
    return str(text).replace("typing.", "")


def _fields(cls, prefix: str) -> list[list]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        tp = hints.get(f.name, f.type)
        if dataclasses.is_dataclass(tp):
            rows += _fields(tp, f"{prefix}{f.name}.")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if dataclasses.is_dataclass(default):
                default = "..."
        else:
            default = "required"
        rule = " and ".join(f"{op} {f.metadata[k]:g}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="))
                            if f.metadata.get(k) is not None)
        rows.append([f"`{prefix}{f.name}`", f"`{_type_name(tp)}`", f"`{default!r}`", rule])
    return rows


def config_page() -> str:
    from tailgan.engine.config import TrainConfig
    from tailgan.methods import METHODS, get_method

    out = ["# Config keys\n",
           "Every field is a `key=value` argument of `tailgan train` (and a key of `config.yaml`); values out of "
           "range are refused with the key named. Generated from the dataclasses at build time.\n",
           "## tailgan train\n", _table(["key", "type", "default", "range"], _fields(TrainConfig, ""))]
    for method in METHODS:
        options = get_method(method).Options
        if options is not None:
            out += [f"## options of `{method}`\n", _table(["key", "type", "default", "range"],
                                                          _fields(options, "options."))]
    return "\n".join(out)


def results_pages() -> dict[str, str | bytes]:
    pages: dict[str, str | bytes] = {}
    rows = []
    for md in sorted(RESULTS.glob("*.md")):
        text = md.read_text()
        title = text.splitlines()[0].lstrip("# ").strip() if text.strip() else md.stem
        figures = sorted(p for p in RESULTS.glob(f"{md.stem}*.png"))
        pages[f"results/{md.name}"] = (
            text + "".join(f"\n![{p.name}]({p.name})\n" for p in figures)
            + f"\n---\nSource: `benchmarks/results/{md.name}` (and `{md.stem}.json`).\n"
        )
        for p in figures:
            pages[f"results/{p.name}"] = p.read_bytes()
        rows.append([f"[{md.stem}]({md.name})", title])
    bench = (REPO / "benchmarks" / "README.md").read_text()
    pages["results/benchmarks.md"] = bench.replace("# Benchmarks", "# How the benchmarks are run", 1)
    pages["results/index.md"] = "\n".join([
        "# Results\n",
        "Every measured figure, one page per result file of `benchmarks/results/` (each names its machine, "
        "command and date), copied at build time. How each benchmark is run: [benchmarks](benchmarks.md).\n",
        _table(["file", "title"], rows),
    ])
    return pages


PAGES = {
    "reference/presets.md": presets_page,
    "reference/faithful.md": faithful_page,
    "reference/strategies.md": strategies_page,
    "reference/metrics.md": metrics_page,
    "reference/config.md": config_page,
}


def on_files(files: Files, config) -> Files:
    generated: dict[str, str | bytes] = {name: make() for name, make in PAGES.items()}
    generated.update(results_pages())
    for uri, content in generated.items():
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, content=content))
    return files


def on_config(config):
    """Fill the nav's ``Results: results/`` entry with one page per result file."""
    pages = [{"Overview": "results/index.md"}, {"How the benchmarks run": "results/benchmarks.md"}]
    pages += [{md.stem: f"results/{md.name}"} for md in sorted(RESULTS.glob("*.md"))]
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and item.get("Results") == "results/":
            config.nav[i] = {"Results": pages}
    return config
