"""``bias_act``: per-channel bias, leaky ReLU and gain in one pass; backward in one pass too.

The backward is itself an op whose gradient is the same op again (the activation's slope is
piecewise constant, read from the sign of the saved output), so gradients of every order work:
``bias_act`` sits on the R1 path of the encoder.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _checks, _layout
from ._dispatch import resolve_impl
from ._kernels import kernel
from ._library import define

__all__ = ["bias_act", "bias_act_ref"]


def _channel_view(b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return b.view(1, -1, *([1] * (x.dim() - 2)))


def bias_act_ref(x: torch.Tensor, b: torch.Tensor | None = None, *, alpha: float = 0.2,
                 gain: float = 1.0) -> torch.Tensor:
    """Reference twin of :func:`bias_act`: the reference model's ``lrelu(x + bias)``."""
    if b is not None:
        x = x + _channel_view(b, x)
    if alpha != 1.0:
        x = F.leaky_relu(x, alpha)
    return x * gain if gain != 1.0 else x


def _slope(y: torch.Tensor, alpha: float, gain: float) -> torch.Tensor:
    # y > 0 exactly where x + b > 0, because gain > 0 and alpha >= 0.
    # Scalars as 0-d tensors of y's dtype: Python floats would be rounded to float32.
    return torch.where(y > 0, y.new_full((), gain), y.new_full((), alpha * gain))


def _forward_impl(x, b, alpha, gain, impl):
    if impl == "ref":
        return bias_act_ref(x, b, alpha=alpha, gain=gain).contiguous(
            memory_format=_layout.memory_format(_layout.dense(x)))
    b = None if b is None else b.contiguous()
    return kernel(impl, "bias_act", "bias_act_fwd")(_layout.dense(x), b, alpha, gain)


def _backward_impl(grad, y, alpha, gain, impl):
    if impl == "ref":
        grad_x = (grad * _slope(y, alpha, gain)).contiguous(
            memory_format=_layout.memory_format(_layout.dense(y)))
        dims = [0] + list(range(2, y.dim()))
        return grad_x, grad_x.sum(dims)
    y = _layout.dense(y)
    return kernel(impl, "bias_act", "bias_act_bwd")(_layout.like(grad, y), y, alpha, gain)


def _forward_fake(x, b, alpha, gain, impl):
    return _layout.empty_like(x)


def _backward_fake(grad, y, alpha, gain, impl):
    return _layout.empty_like(y), y.new_empty(y.shape[1:2])


def _setup_forward(ctx, inputs, output):
    x, b, alpha, gain, impl = inputs
    ctx.save_for_backward(output)
    ctx.alpha, ctx.gain, ctx.impl, ctx.has_bias = alpha, gain, impl, b is not None


def _grad_forward(ctx, grad):
    (y,) = ctx.saved_tensors
    grad_x, grad_b = _backward_op(grad, y, ctx.alpha, ctx.gain, ctx.impl)
    return grad_x, (grad_b if ctx.has_bias else None), None, None, None


def _setup_backward(ctx, inputs, output):
    grad, y, alpha, gain, impl = inputs
    ctx.save_for_backward(y)
    ctx.alpha, ctx.gain, ctx.impl = alpha, gain, impl


def _grad_backward(ctx, gg_x, gg_b):
    # grad_x = slope(y) * grad and grad_b = its channel sums are linear in grad, and the slope
    # is piecewise constant in y: the gradient w.r.t. grad is this same backward of gg.
    (y,) = ctx.saved_tensors
    gg = gg_x if gg_x is not None else torch.zeros_like(y)
    if gg_b is not None:
        gg = gg + _channel_view(gg_b, y)
    grad_grad, _ = _backward_op(gg, y, ctx.alpha, ctx.gain, ctx.impl)
    return grad_grad, None, None, None, None


_backward_op = define(
    "bias_act_backward(Tensor grad, Tensor y, float alpha, float gain, str impl) "
    "-> (Tensor, Tensor)",
    _backward_impl, _backward_fake, backward=_grad_backward, setup_context=_setup_backward)
_forward_op = define(
    "bias_act(Tensor x, Tensor? b, float alpha, float gain, str impl) -> Tensor",
    _forward_impl, _forward_fake, backward=_grad_forward, setup_context=_setup_forward)


def check_activation(op: str, alpha, gain) -> tuple[float, float]:
    """alpha >= 0 and gain > 0, finite: then the output's sign tells the activation's slope."""
    alpha = _checks.finite_float(op, "alpha", alpha)
    gain = _checks.finite_float(op, "gain", gain)
    if alpha < 0:
        raise ValueError(f"alae_fast.ops.{op}: alpha must be >= 0 (leaky ReLU slope), got {alpha}")
    if gain <= 0:
        raise ValueError(f"alae_fast.ops.{op}: gain must be > 0, got {gain}")
    return alpha, gain


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, *, alpha: float = 0.2,
             gain: float = 1.0, impl: str | None = None) -> torch.Tensor:
    """``leaky_relu(x + b, alpha) * gain`` with the bias broadcast over channels (dim 1).

    Args:
        x: [N, C, ...] (at least 2-D), floating point; contiguous and channels_last are read in
            place, other layouts are copied.
        b: per-channel bias [C] of x's dtype and device, or None.
        alpha: slope for negative inputs, >= 0 (1.0 makes the activation the identity).
        gain: positive factor applied after the activation.
        impl: ``None`` (automatic, or ``$ALAE_FAST_IMPL``), ``"ref"``, ``"triton"``,
            ``"cuda"`` or ``"cpu"``.
    Returns:
        Tensor of x's shape and dtype (channels_last if x is); differentiable to any order.
    """
    _checks.tensor("bias_act", "x", x, min_dim=2, shape_hint="[N, C, ...]")
    alpha, gain = check_activation("bias_act", alpha, gain)
    if b is not None:
        _checks.tensor("bias_act", "b", b, dim=1, shape_hint=f"[C] = [{x.shape[1]}]")
        _checks.same_device_dtype("bias_act", x=x, b=b)
        if b.shape[0] != x.shape[1]:
            raise ValueError(f"alae_fast.ops.bias_act: b must have shape [C] = [{x.shape[1]}] "
                             f"(x's dim 1), got {tuple(b.shape)}")
    impl = resolve_impl("bias_act", impl, x.device.type)
    if impl == "ref":
        return bias_act_ref(x, b, alpha=alpha, gain=gain)
    return _forward_op(x, b, alpha, gain, impl)
