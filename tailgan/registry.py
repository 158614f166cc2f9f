"""The one registry style of the package: a named table filled by a decorator on each entry.

``LOSSES = Registry("loss")`` then ``@LOSSES.register("focal")`` on the function that builds it; ``LOSSES.get(name)``
returns it or says in one line which names exist. Classifier architectures, classify strategy parts and
metrics are registries of this kind (torchvision's ``register_model`` / ``get_model`` shape).
"""

from __future__ import annotations

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

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise TailganError(f"unknown {self.kind} {name!r}; use one of {', '.join(self._entries)}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


__all__ = ["Registry"]
