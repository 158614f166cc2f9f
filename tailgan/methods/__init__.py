"""GAN recipes, registered by name. A new recipe is one file plus one line in the ``METHODS`` table below."""

from __future__ import annotations

import importlib
from typing import Any

from tailgan.errors import TailganError
from tailgan.registry import Registry

# method name -> its recipe class, imported when first used
METHODS: Registry[type] = Registry("method")
for _name, _path in {
    "cgan": "tailgan.methods.cgan:CGAN",
    "acgan": "tailgan.methods.acgan:ACGAN",
    "contragan": "tailgan.methods.contragan:ContraGAN",
    "reacgan": "tailgan.methods.reacgan:ReACGAN",
    "ecogan": "tailgan.methods.ecogan:ECOGAN",
    "bagan": "tailgan.methods.bagan:BAGAN",
    "bagan-gp": "tailgan.methods.bagan_gp:BAGANGP",
    "idagan": "tailgan.methods.idagan:IDAGAN",
    "dfg": "tailgan.methods.dfg:DFG",
    "cyclegan-cls": "tailgan.methods.cyclegan:CycleGANCls",
    "stargan-cls": "tailgan.methods.stargan:StarGANCls",
}.items():
    METHODS.register_lazy(_name, _path)


def register_method(name: str, module: str, cls: str) -> None:
    """Add a recipe living outside tailgan (a plug-in, or a test's toy recipe) to the registry."""
    METHODS.register_lazy(name, f"{module}:{cls}")


def unregister_method(name: str) -> None:
    """Remove a recipe added with ``register_method``."""
    METHODS.unregister(name)


def method_names() -> list[str]:
    return list(METHODS.names())


def get_method(name: str) -> type:
    return METHODS.get(name)


def method_module(name: str) -> Any:
    """The module a recipe lives in (its PRESETS, DEFAULT_PRESET and FAITHFUL tables), imported."""
    path = METHODS.path(name)
    return importlib.import_module(path.partition(":")[0] if path else get_method(name).__module__)


def all_presets() -> dict[str, dict]:
    """Every preset of every method: name -> config dict (with 'method')."""
    out: dict[str, dict] = {}
    for name in METHODS:
        out.update(getattr(method_module(name), "PRESETS", {}))
    return out


def faithful_overrides(name: str) -> dict:
    """The config changes that give a preset (or a method's default preset) its original code's behaviour:
    its module's ``FAITHFUL[preset]``; an error for a recipe that has no documented deviations."""
    preset = resolve_preset(name).get("preset") or name
    method = resolve_preset(name)["method"]
    table = getattr(method_module(method), "FAITHFUL", {})
    if preset not in table:
        raise TailganError(f"faithful=true: {preset!r} has no original-behaviour options (see the README's tables)")
    return table[preset]


def resolve_preset(name: str) -> dict:
    """A method or preset name -> the preset's config dict (a method name gives its default preset)."""
    if name in METHODS:
        module = method_module(name)
        if not getattr(module, "PRESETS", None):  # a recipe without presets: its defaults
            return {"method": name}
        return dict(module.PRESETS[module.DEFAULT_PRESET], preset=module.DEFAULT_PRESET)
    presets = all_presets()
    if name in presets:
        return dict(presets[name], preset=name)
    raise TailganError(
        f"unknown method or preset {name!r}; methods: {', '.join(METHODS)}; presets: {', '.join(presets)}"
    )
