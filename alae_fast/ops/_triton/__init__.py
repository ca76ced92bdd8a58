"""Triton kernels of the ops. Each submodule is imported on first attribute access
(``_triton.blur``), only when an op runs with impl="triton": Triton stays optional and
``TRITON_INTERPRET`` is read after the caller has set it."""

import importlib
from types import ModuleType


def __getattr__(name: str) -> ModuleType:
    if name.startswith("_"):
        raise AttributeError(name)
    return importlib.import_module(f"{__name__}.{name}")
