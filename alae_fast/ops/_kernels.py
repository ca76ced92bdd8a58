"""Looking up the raw kernel of an implementation: ``torch.ops.alae_fast_C.<name>`` for the
C++/CUDA extension, ``alae_fast.ops._triton.<family>.<name>`` for Triton."""

from __future__ import annotations

import importlib
from typing import Callable

import torch

from . import _extension
from ._dispatch import ImplUnavailableError


def kernel(impl: str, family: str, name: str) -> Callable:
    """The kernel ``name`` (e.g. ``d_adv_loss_fwd``) of implementation ``impl``."""
    if impl in ("cpu", "cuda"):
        if not _extension.load():
            raise ImplUnavailableError(_extension.error())
        return getattr(torch.ops.alae_fast_C, name)
    if impl == "triton":
        return getattr(importlib.import_module(f"alae_fast.ops._triton.{family}"), name)
    raise ValueError(f"no kernel for impl {impl!r}")
