"""``linear_act``: the mapping networks' equalized-LR linear layer with a fused bias + leaky ReLU
+ gain epilogue (applied to the GEMM result before it is stored).

Equalized learning rate is implicit in this package (the stored weight carries the He scale, the
optimizer scales each step), so the layer is ``x @ weight.T``. The backward is written in
PyTorch around the :func:`bias_act` backward op, so gradients of any order work (the
discriminator D is on the R1 path).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _checks
from . import _triton
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from ._spec import define
from .bias_act import backward_op as bias_act_backward
from .bias_act import check_activation

__all__ = ["linear_act", "linear_act_ref"]


def linear_act_ref(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, alpha: float = 0.2, gain: float = 1.0
) -> torch.Tensor:
    """Reference twin of :func:`linear_act`: the reference ``lrelu(Linear(x))``."""
    y = F.linear(x, weight, bias)
    if alpha != 1.0:
        y = F.leaky_relu(y, alpha)
    return y * gain if gain != 1.0 else y


def _forward_kernel(k, x, weight, bias, alpha, gain):
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    y = k.linear_act_fwd(rows, weight.contiguous(), None if bias is None else bias.contiguous(), alpha, gain)
    return y.view(*x.shape[:-1], weight.shape[0])


def _grad_forward(s, grad):
    out_features = s.weight.shape[0]
    grad_rows = grad.reshape(-1, out_features)
    if s.alpha == 1.0:  # identity activation: the pre-activation gradient is grad * gain
        grad_z = grad_rows * s.gain if s.gain != 1.0 else grad_rows
        grad_b = grad_z.sum(0)
    else:
        grad_z, grad_b = bias_act_backward(grad_rows, s.y.reshape(-1, out_features), s.alpha, s.gain, s.impl)
    return {
        "x": (grad_z @ s.weight).view(s.x.shape),
        "weight": grad_z.t() @ s.x.reshape(-1, s.x.shape[-1]),
        "bias": grad_b,
    }


_forward = define(
    "linear_act(Tensor x, Tensor weight, Tensor? bias, float alpha, float gain) -> Tensor",
    kernel=_forward_kernel,
    triton=lambda: _triton.linear_act,
    fake=lambda x, weight, bias, alpha, gain: x.new_empty(*x.shape[:-1], weight.shape[0]),
    save=("x", "weight"),
    save_outputs={"y": 0},
    backward=_grad_forward,
    autocast="lower",
)

# On CUDA the automatic choice is Triton: there is no separate CUDA kernel.
_INPUTS = dict(x=Rand((3, 7), 1), weight=Rand((5, 7), 2, 0.4), bias=Rand((5,), 3, 0.5), alpha=0.2, gain=2**0.5)
_EXAMPLE = Example("linear_act", _INPUTS, ("x", "weight", "bias"))
SPEC = OpSpec("linear_act", linear_act_ref, _forward, impls=("ref", "triton", "cpu"), examples=(_EXAMPLE,))


def linear_act(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    alpha: float = 0.2,
    gain: float = 1.0,
    impl: str | None = None,
) -> torch.Tensor:
    """``leaky_relu(x @ weight.T + bias, alpha) * gain`` with the epilogue fused into the GEMM.

    Args:
        x: [..., IN] floating point.
        weight: [OUT, IN] of x's dtype and device.
        bias: [OUT] or None.
        alpha: slope for negative inputs, >= 0 (1.0: no activation, a plain linear layer).
        gain: positive factor applied after the activation.
        impl: ``None`` (automatic, or ``$ALAE_FAST_IMPL``), ``"ref"``, ``"triton"`` or
            ``"cpu"`` (on CUDA the automatic choice is Triton; there is no separate CUDA kernel).
    Returns:
        [..., OUT] of x's dtype; differentiable to any order.
    """
    _checks.tensor("linear_act", "x", x, min_dim=1, shape_hint="[..., IN]")
    _checks.tensor("linear_act", "weight", weight, dim=2, shape_hint=f"[OUT, IN={x.shape[-1]}]")
    _checks.same_device_dtype("linear_act", x=x, weight=weight)
    if weight.shape[1] != x.shape[-1]:
        raise ValueError(
            f"alae_fast.ops.linear_act: weight must have shape [OUT, IN] with IN = "
            f"{x.shape[-1]} (x's last dim), got {tuple(weight.shape)}"
        )
    if bias is not None:
        _checks.vector("linear_act", "bias", bias, weight.shape[0], x, hint="OUT")
    alpha, gain = check_activation("linear_act", alpha, gain)
    return SPEC(impl, x, weight, bias, alpha, gain)
