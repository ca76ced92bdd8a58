"""Helpers shared by the Triton kernels."""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

# Elements a program handles per loop step, and loop steps per program in the reductions:
# large enough that the interpreter (one Python loop iteration per program) stays fast and a
# GPU program streams several KB, small enough that big inputs still give many programs.
BLOCK = 1024
REDUCE_ITERS = 8


def acc_dtype(t: torch.Tensor):
    """Accumulation type: float64 for float64 inputs, float32 otherwise."""
    return tl.float64 if t.dtype == torch.float64 else tl.float32


def device_of(t: torch.Tensor):
    """Context that makes ``t``'s GPU the current one for the launch (no-op on CPU)."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


@triton.jit
def softplus(x):
    """max(x, 0) + log1p(exp(-|x|)), finite for any finite x; log1p written out so it stays
    accurate when exp(-|x|) is below the rounding of 1 + exp(-|x|)."""
    e = tl.exp(-tl.abs(x))
    u = 1.0 + e
    d = u - 1.0
    safe_d = tl.where(d == 0.0, 1.0, d)
    log1p_e = tl.where(d == 0.0, e, tl.log(u) * (e / safe_d))
    return tl.maximum(x, 0.0) + log1p_e


@triton.jit
def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow for either sign."""
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
