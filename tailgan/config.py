"""Typed configs: dataclasses loaded from YAML, with dotted ``key=value`` overrides.

Unknown keys and values of the wrong type are errors that name the key, so a typo in a YAML file
or on the command line never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from tailgan.errors import TailganError
from tailgan.io import atomic_write_text

T = TypeVar("T")


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless, else raise naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except TailganError as e:
                errors.append(str(e))
        raise TailganError(f"config key '{key}': {value!r} is not a {_type_name(tp)}")
    if origin is typing.Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(typing.get_args(tp)):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on / off as a boolean
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise TailganError(f"config key '{key}': {value!r} is not one of {choices}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TailganError(f"config key '{key}': {value!r} is not a list")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise TailganError(f"config key '{key}': expected {len(args)} values, got {value!r}")
            return tuple(_check_type(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_check_type(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise TailganError(f"config key '{key}': {value!r} is not a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise TailganError(f"config key '{key}': expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TailganError(f"config key '{key}': {value!r} is not a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TailganError(f"config key '{key}': {value!r} is not an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TailganError(f"config key '{key}': {value!r} is not true/false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TailganError(f"config key '{key}': {value!r} is not a string")
        return value
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """A dataclass field with its valid range beside it (``ge``/``gt``/``le``), checked by ``from_dict``."""
    return dataclasses.field(default=default, metadata={"ge": ge, "gt": gt, "le": le})


def _check_range(value: Any, f: dataclasses.Field, key: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    ge, gt, le = (f.metadata.get(k) for k in ("ge", "gt", "le"))
    bad = (ge is not None and not value >= ge) or (gt is not None and not value > gt)
    if bad or (le is not None and not value <= le):
        rule = " and ".join(
            f"{op} {bound:g}" for op, bound in ((">=", ge), (">", gt), ("<=", le)) if bound is not None
        )
        raise TailganError(f"config key '{key}': {value!r} is out of range (it must be {rule})")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise TailganError."""
    if not isinstance(data, dict):
        raise TailganError(f"config '{prefix.rstrip('.') or cls.__name__}': expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TailganError(f"unknown config key '{prefix}{unknown[0]}' (valid keys here: {', '.join(sorted(names))})")
    kwargs = {k: _check_type(v, hints[k], prefix + k) for k, v in data.items()}
    for f in dataclasses.fields(cls):
        if f.name in kwargs:
            _check_range(kwargs[f.name], f, prefix + f.name)
    return cls(**kwargs)


def missing_key(cls: type, data: dict[str, Any], prefix: str = "") -> str | None:
    """The first field of dataclass ``cls`` (nested sections included) that ``data`` lacks, as ``a.b``; None
    when complete. A saved config must be complete: a missing key is never filled with a default."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in data:
            return prefix + f.name
        sub = hints.get(f.name)
        if dataclasses.is_dataclass(sub) and isinstance(data[f.name], dict):
            inner = missing_key(sub, data[f.name], f"{prefix}{f.name}.")
            if inner:
                return inner
    return None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a dataclass (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` as YAML (so ``1e-4``, ``true``, ``[1,2]`` work)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML reads "1e-4" as a string; accept it as the number a user meant.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict (validated later by ``from_dict``)."""
    out = _deepcopy_dict(data)
    for item in overrides:
        if "=" not in item:
            raise TailganError(f"override '{item}' is not of the form key=value (e.g. train.lr=1e-4)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise TailganError(f"override '{item}': '{part}' is not a section")
            node = child
        node[parts[-1]] = parse_value(text)
    return out


def _deepcopy_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy_dict(v) if isinstance(v, dict) else v for k, v in d.items()}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``update`` wins; nested mappings are merged, not replaced."""
    out = _deepcopy_dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise TailganError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise TailganError(f"config file {path} is not a text file (it holds binary data); restore it or give "
                           "a YAML file") from None  # fmt: skip
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).split("\n")[0]
        raise TailganError(f"config file {path} is not valid YAML{where}: {problem}; fix or restore it") from None
    if not isinstance(data, dict):
        raise TailganError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def save_yaml(cfg: Any, path: str | os.PathLike) -> None:
    """Write a dataclass (or dict) as YAML, atomically."""
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
