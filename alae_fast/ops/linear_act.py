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
from ._dispatch import resolve_impl
from ._kernels import kernel
from ._library import define
from .bias_act import _backward_op as _bias_act_backward_op
from .bias_act import check_activation

__all__ = ["linear_act", "linear_act_ref"]

SUPPORTED = ("ref", "triton", "cpu")


def linear_act_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                   alpha: float = 0.2, gain: float = 1.0) -> torch.Tensor:
    """Reference twin of :func:`linear_act`: the reference ``lrelu(Linear(x))``."""
    y = F.linear(x, weight, bias)
    if alpha != 1.0:
        y = F.leaky_relu(y, alpha)
    return y * gain if gain != 1.0 else y


def _forward_impl(x, weight, bias, alpha, gain, impl):
    if impl == "ref":
        return linear_act_ref(x, weight, bias, alpha=alpha, gain=gain).contiguous()
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    y = kernel(impl, "linear_act", "linear_act_fwd")(
        rows, weight.contiguous(), None if bias is None else bias.contiguous(), alpha, gain)
    return y.view(*x.shape[:-1], weight.shape[0])


def _forward_fake(x, weight, bias, alpha, gain, impl):
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def _setup_forward(ctx, inputs, output):
    x, weight, bias, alpha, gain, impl = inputs
    ctx.save_for_backward(x, weight, output)
    ctx.alpha, ctx.gain, ctx.impl, ctx.has_bias = alpha, gain, impl, bias is not None


def _grad_forward(ctx, grad):
    x, weight, y = ctx.saved_tensors
    out_features = weight.shape[0]
    grad_rows = grad.reshape(-1, out_features)
    if ctx.alpha == 1.0:  # identity activation: the pre-activation gradient is grad * gain
        grad_z = grad_rows * ctx.gain if ctx.gain != 1.0 else grad_rows
        grad_b = grad_z.sum(0)
    else:
        grad_z, grad_b = _bias_act_backward_op(grad_rows, y.reshape(-1, out_features), ctx.alpha,
                                               ctx.gain, ctx.impl)
    grad_x = (grad_z @ weight).view(x.shape)
    grad_w = grad_z.t() @ x.reshape(-1, x.shape[-1])
    return grad_x, grad_w, (grad_b if ctx.has_bias else None), None, None, None


_forward_op = define(
    "linear_act(Tensor x, Tensor weight, Tensor? bias, float alpha, float gain, str impl) "
    "-> Tensor",
    _forward_impl, _forward_fake, backward=_grad_forward, setup_context=_setup_forward)


def linear_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
               alpha: float = 0.2, gain: float = 1.0, impl: str | None = None) -> torch.Tensor:
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
        raise ValueError(f"alae_fast.ops.linear_act: weight must have shape [OUT, IN] with IN = "
                         f"{x.shape[-1]} (x's last dim), got {tuple(weight.shape)}")
    if bias is not None:
        _checks.tensor("linear_act", "bias", bias, dim=1, shape_hint=f"[OUT] = [{weight.shape[0]}]")
        _checks.same_device_dtype("linear_act", x=x, bias=bias)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"alae_fast.ops.linear_act: bias must have shape [OUT] = "
                             f"[{weight.shape[0]}], got {tuple(bias.shape)}")
    alpha, gain = check_activation("linear_act", alpha, gain)
    impl = resolve_impl("linear_act", impl, x.device.type, SUPPORTED)
    if impl == "ref":
        return linear_act_ref(x, weight, bias, alpha=alpha, gain=gain)
    return _forward_op(x, weight, bias, alpha, gain, impl)
