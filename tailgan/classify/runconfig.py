"""The config of a classify output: :class:`ClassifyRunConfig`, loaded from YAML, flags and ``key=value``.

Defaults <- ``--config FILE.yaml`` <- ``--data``/``--root`` and the other flags <- ``key=value`` overrides, in
any position on the command line. A bare key names a field of :class:`ClassifyRunConfig` (``focal_gamma=2``);
data fields are ``data.key=value`` (a bare data key that is no classify field is read as one, as before).
Every ``tailgan classify`` / ``tailgan bench classify`` output holds the resolved ``config.yaml``, and its
reproduce command (:func:`reproduce_command`) is generated from that file.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tailgan.classify.config import RunFields
from tailgan.config import apply_overrides, from_dict, load_yaml, merge, save_yaml, to_dict
from tailgan.data import DataConfig, resolve_data_config
from tailgan.errors import TailganError


@dataclass
class ClassifyRunConfig(RunFields):
    """What a ``tailgan classify`` / ``tailgan bench classify`` output ran: its resolved ``config.yaml``."""

    data: DataConfig = field(default_factory=lambda: resolve_data_config("digits_lt"))

# set from the output folder by the command, never from a config file (a reproduced run writes its own)
DERIVED_FIELDS = ("transfer_dir", "joint_grid_dir")
_DATA_FIELDS = {f.name for f in dataclasses.fields(DataConfig)}
_RUN_FIELDS = {f.name for f in dataclasses.fields(ClassifyRunConfig)}


def _route(override: str) -> str:
    """``key=value``: a classify field as it is, a data field as ``data.key``; else a one-line error."""
    key = override.partition("=")[0].strip()
    top = key.split(".")[0]
    if top in _RUN_FIELDS:
        return override
    if top in _DATA_FIELDS:
        return "data." + override
    raise TailganError(
        f"unknown config key {key!r}; valid keys: {', '.join(sorted(_RUN_FIELDS - {'data'}))}; "
        f"data keys as data.KEY: {', '.join(sorted(_DATA_FIELDS))}"
    )


def _data_dict(spec: str | None, file_data: Any, root: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The data section: ``--data`` (a preset or source), else the config file's, + root and switches."""
    if spec is None and file_data is None:
        raise TailganError("no data: give --data PRESET (e.g. digits_lt) or --config FILE.yaml with a data section")
    if spec is not None:
        d = to_dict(resolve_data_config(spec))
    elif isinstance(file_data, str):
        d = to_dict(resolve_data_config(file_data))
    else:
        preset = file_data.get("preset") if isinstance(file_data, dict) else None
        d = merge(to_dict(resolve_data_config(preset or file_data.get("source", "digits"))), file_data)
    root = root or (os.environ.get("TAILGAN_DATA") if not d.get("root") else None)
    if root:
        d["root"] = str(root)
    d.update({k: True for k in ("download", "skip_bad") if flags.get(k)})
    return d


def make_classify_config(
    command: str,
    config_file: str | None = None,
    data: str | None = None,
    root: str | None = None,
    overrides: list[str] | None = None,
    **flags: Any,
) -> ClassifyRunConfig:
    """Defaults <- config file <- --data/--root and other flags (None: not given) <- key=value overrides."""
    d = load_yaml(config_file) if config_file else {}
    for k in DERIVED_FIELDS:
        d.pop(k, None)
    d["data"] = _data_dict(data, d.get("data"), root, flags)
    fields = {k: v for k, v in flags.items() if v is not None and k not in ("download", "skip_bad")}
    d = merge(d, {**fields, "command": command})
    d = apply_overrides(d, [_route(o) for o in overrides or []])
    cfg = from_dict(ClassifyRunConfig, d)
    if not cfg.tau_grid or any(t < 0 for t in cfg.tau_grid):
        raise TailganError(f"config key 'tau_grid': {list(cfg.tau_grid)} must hold one or more values >= 0")
    return cfg


def _value(v: Any) -> str:
    """A value as ``key=value`` text that :func:`tailgan.config.parse_value` reads back as ``v``."""
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def reproduce_command(cfg: ClassifyRunConfig, out: str | Path = "NEW_OUT") -> str:
    """The command line that runs ``cfg`` again: every field that differs from its default as ``key=value``
    (data fields against the preset's as ``data.key=value``), the generators as ``--generator``."""
    default = ClassifyRunConfig()
    spec = cfg.data.preset or cfg.data.source
    base = to_dict(resolve_data_config(spec))
    flag = "--strategy" if cfg.command == "classify" else "--strategies"
    parts = ["tailgan", *cfg.command.split(), "--data", spec, flag, cfg.strategy, "--seeds", str(cfg.seeds)]
    parts += [x for g in cfg.generator for x in ("--generator", g)]
    skip = {"command", "strategy", "seeds", "data", "generator", *DERIVED_FIELDS}
    for f in dataclasses.fields(ClassifyRunConfig):
        v = to_dict({f.name: getattr(cfg, f.name)})[f.name]
        if f.name not in skip and v != to_dict({f.name: getattr(default, f.name)})[f.name]:
            parts.append(f"{f.name}={_value(v)}")
    for k, v in to_dict(cfg.data).items():
        if base.get(k) != v:
            parts.append(f"data.{k}={_value(v)}")
    return " ".join(shlex.quote(p) for p in [*parts, "--out", str(out)])


def write_config(cfg: ClassifyRunConfig, out: str | Path) -> Path:
    """OUT/config.yaml: the resolved config (``tailgan classify --config OUT/config.yaml`` runs it again)."""
    path = Path(out) / "config.yaml"
    save_yaml(cfg, path)
    return path


def read_config(out: str | Path) -> ClassifyRunConfig:
    path = Path(out) / "config.yaml"
    return from_dict(ClassifyRunConfig, load_yaml(path))
