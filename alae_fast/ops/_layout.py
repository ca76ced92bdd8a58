"""Memory layouts the layer kernels read in place: contiguous (NCHW) and channels_last."""

from __future__ import annotations

import torch


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a 4-D tensor stored that way (and not also contiguous), else
    contiguous_format: the layout a kernel reads ``x`` in and writes its result in."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when contiguous or channels_last, else a contiguous copy."""
    if x.is_contiguous() or memory_format(x) == torch.channels_last:
        return x
    return x.contiguous()


def like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` (same shape as ``ref``) in ``ref``'s kernel layout (a copy only if it differs)."""
    return x.contiguous(memory_format=memory_format(ref))


def empty_like(x: torch.Tensor, **kwargs) -> torch.Tensor:
    """An uninitialised tensor of ``x``'s shape in the layout a kernel returns for ``x``."""
    return torch.empty_like(x, memory_format=memory_format(dense(x)), **kwargs)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of the kernels: float64 for float64, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def empty_dense(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous tensor of ``x``'s shape, dtype and device."""
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def contiguous(x: torch.Tensor | None) -> torch.Tensor | None:
    """``x`` contiguous (a copy only if it is not), or None."""
    return None if x is None else x.contiguous()
