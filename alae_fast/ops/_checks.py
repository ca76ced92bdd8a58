"""Argument checks shared by the ops: each error names the op, the argument and what was
expected."""

from __future__ import annotations

import math

import torch

from ._spec import autocast_dtypes

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(
    op: str, name: str, value, *, dim: int | None = None, min_dim: int | None = None, shape_hint: str = ""
) -> torch.Tensor:
    """Check that ``value`` is a non-empty floating-point tensor of the expected rank."""
    where = f"alae_fast.ops.{op}: {name}"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{where} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {value.dtype}"
        )
    hint = f" {shape_hint}" if shape_hint else ""
    if dim is not None and value.dim() != dim:
        raise ValueError(f"{where} must be {dim}-D{hint}, got shape {tuple(value.shape)}")
    if min_dim is not None and value.dim() < min_dim:
        raise ValueError(f"{where} must have at least {min_dim} dims{hint}, got shape {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{where} must not be empty, got shape {tuple(value.shape)}")
    return value


def same_device_dtype(op: str, **tensors: torch.Tensor) -> None:
    """All ``tensors`` on one device and of one dtype, or of the dtypes that ``op``'s autocast
    policy casts to one where autocast is on (the main input first)."""
    (a, first), *rest = tensors.items()
    resolved = None
    for b, t in rest:
        if t.device != first.device:
            where = f"alae_fast.ops.{op}: {a} is on {first.device} but {b} is on {t.device}"
            raise ValueError(f"{where}; all inputs must be on one device")
        if t.dtype != first.dtype:
            resolved = resolved or autocast_dtypes(op, tensors)
            if resolved is not None and resolved[a] == resolved[b]:
                continue
            raise TypeError(
                f"alae_fast.ops.{op}: {a} is {first.dtype} but {b} is {t.dtype}; all inputs must have one dtype"
            )


def same_shape(op: str, **tensors: torch.Tensor) -> None:
    """All ``tensors`` of one shape."""
    (a, first), *rest = tensors.items()
    for b, t in rest:
        if t.shape != first.shape:
            got = f"got {tuple(first.shape)} and {tuple(t.shape)}"
            raise ValueError(f"alae_fast.ops.{op}: {a} and {b} must have the same shape, {got}")


def finite_float(op: str, name: str, value) -> float:
    """A finite Python number (not a tensor, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"alae_fast.ops.{op}: {name} must be a Python float, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"alae_fast.ops.{op}: {name} must be finite, got {value}")
    return float(value)


def non_negative(op: str, **values) -> list[float]:
    """Finite Python numbers, each >= 0 (one error names them all)."""
    floats = [finite_float(op, name, v) for name, v in values.items()]
    if any(f < 0 for f in floats):
        got = ", ".join(f"{k}={f}" for k, f in zip(values, floats)) if len(floats) > 1 else str(floats[0])
        raise ValueError(f"alae_fast.ops.{op}: {' and '.join(values)} must be >= 0, got {got}")
    return floats


def shaped(op: str, name: str, value, shape: tuple[int, ...], x: torch.Tensor, hint: str, note: str = "") -> None:
    """A tensor of exactly ``shape`` (named ``[hint]``) on x's device, of x's dtype."""
    expected = f"[{hint}] = [{', '.join(map(str, shape))}]"
    tensor(op, name, value, dim=len(shape), shape_hint=expected)
    same_device_dtype(op, x=x, **{name: value})
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"alae_fast.ops.{op}: {name} must have shape {expected}{note}, got {tuple(value.shape)}")


def vector(op: str, name: str, value, size: int, x: torch.Tensor, hint: str = "C", note: str = "") -> None:
    """A 1-D tensor of ``size`` elements ([hint]) on x's device, of x's dtype."""
    shaped(op, name, value, (size,), x, hint, note)


def noise(op: str, x: torch.Tensor, noise, noise_weight) -> torch.Tensor | None:
    """Per-pixel noise [N or 1, 1, H, W] and its [C] weight, both or neither; returns the noise
    expanded to x's batch (dense), or None."""
    if (noise is None) != (noise_weight is None):
        raise ValueError(f"alae_fast.ops.{op}: noise and noise_weight must be given together")
    if noise is None:
        return None
    n, c, h, w = x.shape
    tensor(op, "noise", noise, dim=4, shape_hint=f"[N, 1, H, W] = [{n}, 1, {h}, {w}]")
    same_device_dtype(op, x=x, noise=noise)
    if noise.shape[0] not in (1, n) or tuple(noise.shape[1:]) != (1, h, w):
        raise ValueError(
            f"alae_fast.ops.{op}: noise must have shape [N, 1, H, W] = "
            f"[{n}, 1, {h}, {w}] (or batch 1), got {tuple(noise.shape)}"
        )
    if noise.requires_grad:
        raise ValueError(f"alae_fast.ops.{op}: noise is a constant input and gets no gradient; pass noise.detach()")
    vector(op, "noise_weight", noise_weight, c, x)
    return noise.expand(n, 1, h, w).contiguous()
