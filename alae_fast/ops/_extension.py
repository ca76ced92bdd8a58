"""Lazy loading of the compiled extension ``alae_fast._C``.

Nothing here runs at import time: the library is loaded the first time an op asks for the
``cpu`` or ``cuda`` implementation (explicitly or through the automatic choice).
"""

from __future__ import annotations

import importlib

import torch

_loaded: bool | None = None
_error: str | None = None


def load() -> bool:
    """Load ``alae_fast._C`` once; True when its kernels are registered in ``torch.ops``."""
    global _loaded, _error
    if _loaded is None:
        try:
            importlib.import_module("alae_fast._C")
            _loaded, _error = True, None
        except (ImportError, OSError) as exc:
            _loaded = False
            _error = (
                f"the extension alae_fast._C is not built or does not load ({exc}); "
                "reinstall with `pip install --no-build-isolation .` to build it"
            )
    return _loaded


def error() -> str | None:
    """Why the extension is unavailable, or None when it loaded."""
    load()
    return _error


def has_cuda_kernels() -> bool:
    """True when the loaded extension was built with its CUDA kernels."""
    return load() and torch._C._dispatch_has_kernel_for_dispatch_key("alae_fast_C::d_adv_loss_fwd", "CUDA")
