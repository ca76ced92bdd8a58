"""``bias_act``: per-channel bias, leaky ReLU and gain in one pass; backward in one pass too.

The backward is itself an op whose gradient is the same op again (the activation's slope is
piecewise constant, read from the sign of the saved output), so gradients of every order work:
``bias_act`` sits on the R1 path of the encoder.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _checks
from . import _layout
from . import _triton
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from ._spec import define

__all__ = ["bias_act", "bias_act_ref"]


def _channel_view(b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return b.view(1, -1, *([1] * (x.dim() - 2)))


def bias_act_ref(
    x: torch.Tensor, b: torch.Tensor | None = None, *, alpha: float = 0.2, gain: float = 1.0
) -> torch.Tensor:
    """Reference twin of :func:`bias_act`: the reference model's ``lrelu(x + bias)``."""
    if b is not None:
        x = x + _channel_view(b, x)
    if alpha != 1.0:
        x = F.leaky_relu(x, alpha)
    return x * gain if gain != 1.0 else x


def _backward_kernel(k, grad, y, alpha, gain):
    y = _layout.dense(y)
    return k.bias_act_bwd(_layout.like(grad, y), y, alpha, gain)


def _grad_backward(s, gg_x, gg_b):
    # grad_x = slope(y) * grad and grad_b = its channel sums are linear in grad, and the slope
    # is piecewise constant in y: the gradient w.r.t. grad is this same backward of gg.
    gg = gg_x if gg_x is not None else torch.zeros_like(s.y)
    if gg_b is not None:
        gg = gg + _channel_view(gg_b, s.y)
    return {"grad": backward_op(gg, s.y, s.alpha, s.gain, s.impl)[0]}


def _grad_forward(s, grad):
    grad_x, grad_b = backward_op(grad, s.y, s.alpha, s.gain, s.impl)
    return {"x": grad_x, "b": grad_b}


backward_op = define(
    "bias_act_backward(Tensor grad, Tensor y, float alpha, float gain) -> (Tensor, Tensor)",
    kernel=_backward_kernel,
    triton=lambda: _triton.bias_act,
    fake=lambda grad, y, alpha, gain: (_layout.empty_like(y), y.new_empty(y.shape[1:2])),
    save=("y",),
    backward=_grad_backward,
    autocast="input",
)
_forward = define(
    "bias_act(Tensor x, Tensor? b, float alpha, float gain) -> Tensor",
    kernel=lambda k, x, b, alpha, gain: k.bias_act_fwd(
        _layout.dense(x), None if b is None else b.contiguous(), alpha, gain
    ),
    triton=lambda: _triton.bias_act,
    fake=lambda x, b, alpha, gain: _layout.empty_like(x),
    save_outputs={"y": 0},
    backward=_grad_forward,
    autocast="input",
)

_EXAMPLE = Example("bias_act", dict(x=Rand((3, 5, 7, 7), 0), b=Rand((5,), 1, 0.5), alpha=0.2, gain=2**0.5), ("x", "b"))
SPEC = OpSpec("bias_act", bias_act_ref, _forward, examples=(_EXAMPLE,))


def check_activation(op: str, alpha, gain) -> tuple[float, float]:
    """alpha >= 0 and gain > 0, finite: then the output's sign tells the activation's slope."""
    alpha, gain = _checks.non_negative(op, alpha=alpha)[0], _checks.finite_float(op, "gain", gain)
    if gain <= 0:
        raise ValueError(f"alae_fast.ops.{op}: gain must be > 0, got {gain}")
    return alpha, gain


def bias_act(
    x: torch.Tensor, b: torch.Tensor | None = None, *, alpha: float = 0.2, gain: float = 1.0, impl: str | None = None
) -> torch.Tensor:
    """``leaky_relu(x + b, alpha) * gain`` with the bias broadcast over channels (dim 1).

    Args:
        x: [N, C, ...] (at least 2-D), floating point; contiguous and channels_last are read in
            place, other layouts are copied.
        b: per-channel bias [C] of x's dtype and device, or None.
        alpha: slope for negative inputs, >= 0 (1.0 makes the activation the identity).
        gain: positive factor applied after the activation.
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    Returns:
        Tensor of x's shape and dtype (channels_last if x is); differentiable to any order.
    """
    _checks.tensor("bias_act", "x", x, min_dim=2, shape_hint="[N, C, ...]")
    alpha, gain = check_activation("bias_act", alpha, gain)
    if b is not None:
        _checks.vector("bias_act", "b", b, x.shape[1], x, note=" (x's dim 1)")
    return SPEC(impl, x, b, alpha, gain)
