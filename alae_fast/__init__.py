"""alae_fast: Adversarial Latent Autoencoders (ALAE and StyleALAE) in PyTorch, with fused kernels.

``alae_fast.models`` holds the fast models, ``alae_fast.optimize(model)`` converts a reference
model (:mod:`alae_fast.reference`) in place, ``alae_fast.ops`` the fused ops. The submodules are
imported on first access (``alae_fast.reference.StyleALAE`` works after ``import alae_fast``).
Importing the package or any of them loads neither the compiled extension nor Triton.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

#: The public submodules, imported on first attribute access (PEP 562).
SUBMODULES = (
    "checkpoints",
    "cli",
    "cli_model",
    "configs",
    "data",
    "doctor",
    "evaluate",
    "inference",
    "metrics",
    "models",
    "nn",
    "ops",
    "optim",
    "reference",
    "train",
    "utils",
    "verified",
)

# Submodules stay out of __all__: `from alae_fast import *` should not import all of them.
__all__ = ["__version__", "optimize", "load"]


def __getattr__(name: str) -> ModuleType:
    if name in SUBMODULES:
        # import_module binds the submodule in this module's namespace: later lookups skip this.
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES))


def optimize(model, impl=None):
    """Swap the fast modules into a reference model, in place; see :func:`alae_fast.nn.optimize`."""
    from .nn import optimize as _optimize

    return _optimize(model, impl)


def load(path, *, ema: bool = True, device=None, impl=None):
    """Load a trained model (our checkpoint or an official ALAE file) for use; see
    :func:`alae_fast.checkpoints.load`."""
    from .checkpoints import load as _load

    return _load(path, ema=ema, device=device, impl=impl)
