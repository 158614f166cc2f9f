"""Package names imported on first use, so importing a package (e.g. for its command-line module) stays light.

A package lists its public names as ordinary imports under ``if TYPE_CHECKING:`` (what type checkers and the
API docs read) and ends with ``__getattr__, __dir__ = lazy_names(__name__)``: the first ``package.name`` (or
``from package import name``) imports the module the block names and keeps the value.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from collections.abc import Callable
from pathlib import Path


def typing_imports(source: str) -> dict[str, str]:
    """name -> module of the absolute ``from module import name`` statements under ``if TYPE_CHECKING:``."""
    where = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
                    where.update({alias.asname or alias.name: stmt.module for alias in stmt.names})
    return where


class LazyPackage(types.ModuleType):
    """A package whose listed names keep their meaning when a submodule of the same name is imported (as with
    eager imports: ``tailgan.metrics.evaluate`` is the function even after ``tailgan.metrics.evaluate``, the
    module, was imported; the import system would otherwise bind the module to the package's attribute)."""

    def __setattr__(self, name: str, value: object) -> None:
        submodule = isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}"
        if not (submodule and name in vars(self)["_lazy_where"]()):
            super().__setattr__(name, value)


def lazy_names(package_name: str) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package ``package_name`` (call it at the end of its ``__init__``)."""
    package = sys.modules[package_name]
    where: dict[str, str] = {}

    def names() -> dict[str, str]:
        if not where:
            where.update(typing_imports(Path(package.__file__).read_text(encoding="utf-8")))
        return where

    def __getattr__(name: str) -> object:
        module = names().get(name)
        if module is None:
            raise AttributeError(f"module {package_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(package, name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(package)) | set(names()))

    vars(package)["_lazy_where"] = names
    package.__class__ = LazyPackage
    return __getattr__, __dir__
