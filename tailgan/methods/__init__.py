"""GAN recipes, registered by name. A new recipe is one file plus one line in ``_MODULES``."""

from __future__ import annotations

import importlib

from tailgan.errors import TailganError

# method name -> (module, class name)
_MODULES = {
    "cgan": ("tailgan.methods.cgan", "CGAN"),
    "acgan": ("tailgan.methods.acgan", "ACGAN"),
    "contragan": ("tailgan.methods.contragan", "ContraGAN"),
    "reacgan": ("tailgan.methods.reacgan", "ReACGAN"),
    "ecogan": ("tailgan.methods.ecogan", "ECOGAN"),
    "bagan": ("tailgan.methods.bagan", "BAGAN"),
    "bagan-gp": ("tailgan.methods.bagan_gp", "BAGANGP"),
    "idagan": ("tailgan.methods.idagan", "IDAGAN"),
    "dfg": ("tailgan.methods.dfg", "DFG"),
    "cyclegan-cls": ("tailgan.methods.cyclegan", "CycleGANCls"),
    "stargan-cls": ("tailgan.methods.stargan", "StarGANCls"),
}


def register_method(name: str, module: str, cls: str) -> None:
    """Add a recipe living outside tailgan (a plug-in, or a test's toy recipe) to the registry."""
    _MODULES[name] = (module, cls)


def unregister_method(name: str) -> None:
    """Remove a recipe added with ``register_method``."""
    _MODULES.pop(name, None)


def method_names() -> list[str]:
    return list(_MODULES)


def get_method(name: str) -> type:
    if name not in _MODULES:
        raise TailganError(f"unknown method {name!r}; choose one of {', '.join(_MODULES)}")
    module, cls = _MODULES[name]
    return getattr(importlib.import_module(module), cls)


def all_presets() -> dict[str, dict]:
    """Every preset of every method: name -> config dict (with 'method')."""
    out: dict[str, dict] = {}
    for module, _ in _MODULES.values():
        out.update(getattr(importlib.import_module(module), "PRESETS", {}))
    return out


def faithful_overrides(name: str) -> dict:
    """The config changes that give a preset (or a method's default preset) its original code's behaviour:
    its module's ``FAITHFUL[preset]``; an error for a recipe that has no documented deviations."""
    preset = resolve_preset(name).get("preset") or name
    method = resolve_preset(name)["method"]
    table = getattr(importlib.import_module(_MODULES[method][0]), "FAITHFUL", {})
    if preset not in table:
        raise TailganError(f"faithful=true: {preset!r} has no original-behaviour options (see the README's tables)")
    return table[preset]


def resolve_preset(name: str) -> dict:
    """A method or preset name -> the preset's config dict (a method name gives its default preset)."""
    if name in _MODULES:
        module = importlib.import_module(_MODULES[name][0])
        if not getattr(module, "PRESETS", None):  # a recipe without presets: its defaults
            return {"method": name}
        return dict(module.PRESETS[module.DEFAULT_PRESET], preset=module.DEFAULT_PRESET)
    presets = all_presets()
    if name in presets:
        return dict(presets[name], preset=name)
    raise TailganError(
        f"unknown method or preset {name!r}; methods: {', '.join(_MODULES)}; presets: {', '.join(presets)}"
    )
