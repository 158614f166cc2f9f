"""The one registry style of the package: a named table filled by a decorator on each entry.

``LOSSES = Registry("loss")`` then ``@LOSSES.register("focal")`` on the function that builds it; ``LOSSES.get(name)``
returns it or says in one line which names exist. Classifier architectures, classify strategy parts, metrics and
GAN recipes are registries of this kind (torchvision's ``register_model`` / ``get_model`` shape). An entry can be
registered by its import path (``register_lazy(name, "module:attr")``), imported when first asked for: the GAN
recipes are, so ``tailgan --help`` imports none of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from tailgan.errors import TailganError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in the order they were registered."""

    def __init__(self, kind: str) -> None:
        self.kind, self._entries = kind, {}

    def register(self, name: str, entry: T | None = None) -> Any:
        """``@registry.register(name)`` on a function or class, or ``registry.register(name, entry)``."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def register_lazy(self, name: str, path: str) -> None:
        """Register the object at ``path`` ("module:attr"), imported on the first ``get``."""
        self.register(name, _Lazy(path))

    def unregister(self, name: str) -> None:
        """Remove an entry (a plug-in's or a test's)."""
        self._entries.pop(name, None)

    def path(self, name: str) -> str | None:
        """The import path of a lazily registered entry ("module:attr"), None for the others."""
        entry = self._entries.get(name)
        return entry.path if isinstance(entry, _Lazy) else None

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise TailganError(f"unknown {self.kind} {name!r}; use one of {', '.join(self._entries)}")
        entry = self._entries[name]
        if isinstance(entry, _Lazy):
            module, _, attr = entry.path.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attr)
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


class _Lazy:
    def __init__(self, path: str) -> None:
        self.path = path


__all__ = ["Registry"]
