"""griffe extension: a class whose docstring is filled in at import time (``GenerativeOverSampler`` takes
imbalanced-learn's ``sampling_strategy`` text through ``@Substitution``) is documented with the text Python sees."""

from __future__ import annotations

import importlib
import inspect

import griffe


class RuntimeDocstrings(griffe.Extension):
    def on_class_instance(self, *, cls: griffe.Class, **kwargs) -> None:
        if cls.docstring is None or "{sampling_strategy}" not in cls.docstring.value:
            return
        runtime = getattr(importlib.import_module(cls.module.path), cls.name)
        cls.docstring.value = inspect.cleandoc(runtime.__doc__)
