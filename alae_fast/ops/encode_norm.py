"""``encode_norm``: the StyleALAE encoder step between convolutions, fused.

``t = x + bias``, ``a = leaky_relu(t)``, the per-(n, c) mean and population std of ``a`` (the
style the encoder reads out), and ``a`` instance-normalised: one read of ``x``, two outputs.

It sits on the R1 path (E's parameters get gradients of the R1 gradient), so it has first- and
second-order gradients: the backward is an op (one fused kernel), and the backward's own
gradient differentiates the closed-form backward written in PyTorch (:func:`_grad_formula`).
A third order raises instead of returning wrong numbers.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _checks, _layout
from ._dispatch import resolve_impl
from ._kernels import kernel
from ._library import define
from ..reference.layers import instance_norm, instance_stats

__all__ = ["encode_norm", "encode_norm_ref"]


def encode_norm_ref(x: torch.Tensor, bias: torch.Tensor, *, alpha: float = 0.2,
                    eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference twin of :func:`encode_norm`: the reference ``EncodeBlock``'s computation."""
    a = F.leaky_relu(x + bias.view(1, -1, 1, 1), alpha)
    mean, std = instance_stats(a)
    return instance_norm(a, eps), torch.cat((mean, std), dim=1).flatten(1)


def _ref_with_stats(x, bias, alpha, eps):
    y, style = encode_norm_ref(x, bias, alpha=alpha, eps=eps)
    c = x.shape[1]
    mean, std = style[:, :c], style[:, c:]
    acc = _layout.acc_dtype(x.dtype)
    rstd = (std.to(acc).square() + eps).rsqrt()
    return y, style, torch.cat((mean.to(acc), std.to(acc), rstd), dim=1)


def _grad_formula(grad_y, grad_style, x, bias, alpha, eps):
    """grad_x and grad_bias of encode_norm in differentiable PyTorch, from the inputs alone."""
    n, c, h, w = x.shape
    m = h * w
    t = x + bias.view(1, -1, 1, 1)
    a = F.leaky_relu(t, alpha)
    slope = torch.where(t > 0, t.new_ones(()), t.new_full((), alpha))
    d = a - a.mean((2, 3), keepdim=True)
    var = d.square().mean((2, 3), keepdim=True)
    rstd = (var + eps).rsqrt()
    y = d * rstd
    g_mean = grad_style[:, :c].reshape(n, c, 1, 1)
    g_std = grad_style[:, c:].reshape(n, c, 1, 1)
    c0 = g_mean / m - rstd * grad_y.mean((2, 3), keepdim=True)
    # No std gradient means no std term, even for a constant row (std 0, where 0/0 is NaN):
    # there the divisor is a dummy 1, so no NaN reaches the formula or its own gradient.
    std = torch.where(g_std == 0, torch.ones_like(var), var).sqrt()
    c1 = g_std / (m * std) - rstd.square() * (grad_y * y).mean((2, 3), keepdim=True)
    grad_x = slope * (rstd * grad_y + c0 + c1 * d)
    return grad_x, grad_x.sum((0, 2, 3))


def _forward_impl(x, bias, alpha, eps, impl):
    if impl == "ref":
        return _ref_with_stats(x, bias, alpha, eps)
    return kernel(impl, "encode_norm", "encode_norm_fwd")(x.contiguous(), bias.contiguous(),
                                                          alpha, eps)


def _backward_impl(grad_y, grad_style, x, bias, stats, alpha, eps, impl):
    if impl == "ref":
        grad_x, grad_bias = _grad_formula(grad_y, grad_style, x, bias, alpha, eps)
        return grad_x.contiguous(), grad_bias
    return kernel(impl, "encode_norm", "encode_norm_bwd")(
        grad_y.contiguous(), grad_style.contiguous(), x.contiguous(), bias.contiguous(),
        stats.contiguous(), alpha, eps)


def _forward_fake(x, bias, alpha, eps, impl):
    n, c = x.shape[:2]
    return (torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(n, 2 * c),
            x.new_empty(n, 3 * c, dtype=_layout.acc_dtype(x.dtype)))


def _backward_fake(grad_y, grad_style, x, bias, stats, alpha, eps, impl):
    return torch.empty_like(x, memory_format=torch.contiguous_format), bias.new_empty(bias.shape)


def _setup_forward(ctx, inputs, output):
    x, bias, alpha, eps, impl = inputs
    ctx.save_for_backward(x, bias, output[2])
    ctx.alpha, ctx.eps, ctx.impl = alpha, eps, impl


def _grad_forward(ctx, grad_y, grad_style, _grad_stats):
    x, bias, stats = ctx.saved_tensors
    if grad_y is None:
        grad_y = torch.zeros_like(x)
    if grad_style is None:
        grad_style = x.new_zeros(x.shape[0], 2 * x.shape[1])
    grad_x, grad_bias = _backward_op(grad_y, grad_style, x, bias, stats, ctx.alpha, ctx.eps,
                                     ctx.impl)
    return grad_x, grad_bias, None, None, None


def _setup_backward(ctx, inputs, output):
    grad_y, grad_style, x, bias, stats, alpha, eps, impl = inputs
    ctx.save_for_backward(grad_y, grad_style, x, bias)
    ctx.alpha, ctx.eps = alpha, eps


def _grad_backward(ctx, gg_x, gg_bias):
    # Differentiate the closed-form backward. stats is a function of x; the formula recomputes
    # it from x, so its dependence is counted through x and stats itself gets no gradient.
    saved = ctx.saved_tensors
    alpha, eps = ctx.alpha, ctx.eps
    gg_x = torch.zeros_like(saved[2]) if gg_x is None else gg_x
    gg_bias = torch.zeros_like(saved[3]) if gg_bias is None else gg_bias
    if torch.is_grad_enabled():
        raise RuntimeError(
            "alae_fast.ops.encode_norm supports first- and second-order gradients (what R1 "
            "needs); a third order was requested (create_graph=True through its second "
            "derivative): use impl='ref' for that")
    # Second order (the R1 step): plain autograd on detached copies, cheaper than functorch.
    leaves = [t.detach().requires_grad_() for t in saved]
    with torch.enable_grad():
        outputs = _grad_formula(*leaves, alpha, eps)
        grads = torch.autograd.grad(outputs, leaves, (gg_x, gg_bias), allow_unused=True)
    return (*grads, None, None, None, None)


_backward_op = define(
    "encode_norm_backward(Tensor grad_y, Tensor grad_style, Tensor x, Tensor bias, "
    "Tensor stats, float alpha, float eps, str impl) -> (Tensor, Tensor)",
    _backward_impl, _backward_fake, backward=_grad_backward, setup_context=_setup_backward)
_forward_op = define(
    "encode_norm(Tensor x, Tensor bias, float alpha, float eps, str impl) "
    "-> (Tensor, Tensor, Tensor)",
    _forward_impl, _forward_fake, backward=_grad_forward, setup_context=_setup_forward)


def encode_norm(x: torch.Tensor, bias: torch.Tensor, *, alpha: float = 0.2, eps: float = 1e-5,
                impl: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bias, leaky ReLU, per-(n, c) style statistics and instance norm, fused.

    Args:
        x: [N, C, H, W] floating point (other layouts than contiguous are copied).
        bias: [C] of x's dtype and device.
        alpha: leaky ReLU slope for negative inputs (>= 0).
        eps: added to the variance of the instance norm (not to the style's std, as in the
            official code).
        impl: ``None`` (automatic, or ``$ALAE_FAST_IMPL``), ``"ref"``, ``"triton"``,
            ``"cuda"`` or ``"cpu"``.
    Returns:
        ``(y, style)``: y [N, C, H, W] the normalised activations; style [N, 2C] the mean
        (first C) and population std (last C) of each channel after the activation.
        Differentiable to second order.
    """
    _checks.tensor("encode_norm", "x", x, dim=4, shape_hint="[N, C, H, W]")
    _checks.tensor("encode_norm", "bias", bias, dim=1, shape_hint=f"[C] = [{x.shape[1]}]")
    _checks.same_device_dtype("encode_norm", x=x, bias=bias)
    if bias.shape[0] != x.shape[1]:
        raise ValueError(f"alae_fast.ops.encode_norm: bias must have shape [C] = [{x.shape[1]}], "
                         f"got {tuple(bias.shape)}")
    alpha = _checks.finite_float("encode_norm", "alpha", alpha)
    eps = _checks.finite_float("encode_norm", "eps", eps)
    if alpha < 0 or eps < 0:
        raise ValueError(f"alae_fast.ops.encode_norm: alpha and eps must be >= 0, got alpha="
                         f"{alpha}, eps={eps}")
    impl = resolve_impl("encode_norm", impl, x.device.type)
    if impl == "ref":
        return encode_norm_ref(x, bias, alpha=alpha, eps=eps)
    y, style, _ = _forward_op(x, bias, alpha, eps, impl)
    return y, style
