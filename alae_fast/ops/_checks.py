"""Argument checks shared by the ops: each error names the op, the argument and what was
expected."""

from __future__ import annotations

import math

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(op: str, name: str, value, *, dim: int | None = None, min_dim: int | None = None,
           shape_hint: str = "") -> torch.Tensor:
    """Check that ``value`` is a non-empty floating-point tensor of the expected rank."""
    where = f"alae_fast.ops.{op}: {name}"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where} must be a floating-point tensor (float16, bfloat16, float32 "
                        f"or float64), got {value.dtype}")
    hint = f" {shape_hint}" if shape_hint else ""
    if dim is not None and value.dim() != dim:
        raise ValueError(f"{where} must be {dim}-D{hint}, got shape {tuple(value.shape)}")
    if min_dim is not None and value.dim() < min_dim:
        raise ValueError(f"{where} must have at least {min_dim} dims{hint}, got shape "
                         f"{tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{where} must not be empty, got shape {tuple(value.shape)}")
    return value


def same_device_dtype(op: str, **tensors: torch.Tensor) -> None:
    """All ``tensors`` on one device and of one dtype."""
    (first_name, first), *rest = tensors.items()
    for name, t in rest:
        if t.device != first.device:
            raise ValueError(f"alae_fast.ops.{op}: {first_name} is on {first.device} but {name} "
                             f"is on {t.device}; all inputs must be on one device")
        if t.dtype != first.dtype:
            raise TypeError(f"alae_fast.ops.{op}: {first_name} is {first.dtype} but {name} is "
                            f"{t.dtype}; all inputs must have one dtype")


def same_shape(op: str, **tensors: torch.Tensor) -> None:
    (first_name, first), *rest = tensors.items()
    for name, t in rest:
        if t.shape != first.shape:
            raise ValueError(f"alae_fast.ops.{op}: {first_name} and {name} must have the same "
                             f"shape, got {tuple(first.shape)} and {tuple(t.shape)}")


def finite_float(op: str, name: str, value) -> float:
    """A finite Python number (not a tensor, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"alae_fast.ops.{op}: {name} must be a Python float, got "
                        f"{type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"alae_fast.ops.{op}: {name} must be finite, got {value}")
    return float(value)
