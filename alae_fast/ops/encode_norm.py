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

from ..reference.layers import instance_norm
from ..reference.layers import instance_stats
from . import _checks
from . import _layout
from . import _triton
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from ._spec import define

__all__ = ["encode_norm", "encode_norm_ref"]


def encode_norm_ref(
    x: torch.Tensor, bias: torch.Tensor, *, alpha: float = 0.2, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference twin of :func:`encode_norm`: the reference ``EncodeBlock``'s computation."""
    a = F.leaky_relu(x + bias.view(1, -1, 1, 1), alpha)
    mean, std = instance_stats(a)
    return instance_norm(a, eps), torch.cat((mean, std), dim=1).flatten(1)


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


def _grad_backward(s, gg_x, gg_bias):
    # Differentiate the closed-form backward. stats is a function of x; the formula recomputes
    # it from x, so its dependence is counted through x and stats itself gets no gradient.
    saved = (s.grad_y, s.grad_style, s.x, s.bias)
    gg_x = torch.zeros_like(s.x) if gg_x is None else gg_x
    gg_bias = torch.zeros_like(s.bias) if gg_bias is None else gg_bias
    if torch.is_grad_enabled():
        raise RuntimeError(
            "alae_fast.ops.encode_norm supports first- and second-order gradients (what R1 "
            "needs); a third order was requested (create_graph=True through its second "
            "derivative): use impl='ref' for that"
        )
    # Second order (the R1 step): plain autograd on detached copies, cheaper than functorch. In
    # float32 for half inputs: rstd^2 reaches 1/eps = 1e5, beyond float16's range.
    acc = _layout.acc_dtype(s.x.dtype)
    leaves = [t.detach().to(acc).requires_grad_() for t in saved]
    with torch.enable_grad():
        outputs = _grad_formula(*leaves, s.alpha, s.eps)
        grads = torch.autograd.grad(outputs, leaves, (gg_x.to(acc), gg_bias.to(acc)), allow_unused=True)
    return {
        k: None if g is None else g.to(t.dtype) for k, g, t in zip(("grad_y", "grad_style", "x", "bias"), grads, saved)
    }


def _grad_forward(s, grad_y, grad_style, _grad_stats):
    if grad_y is None:
        grad_y = torch.zeros_like(s.x)
    if grad_style is None:
        grad_style = s.x.new_zeros(s.x.shape[0], 2 * s.x.shape[1])
    grad_x, grad_bias = _backward(grad_y, grad_style, s.x, s.bias, s.stats, s.alpha, s.eps, s.impl)
    return {"x": grad_x, "bias": grad_bias}


_backward = define(
    "encode_norm_backward(Tensor grad_y, Tensor grad_style, Tensor x, Tensor bias, "
    "Tensor stats, float alpha, float eps) -> (Tensor, Tensor)",
    kernel=lambda k, grad_y, grad_style, x, bias, stats, alpha, eps: k.encode_norm_bwd(
        grad_y.contiguous(), grad_style.contiguous(), x.contiguous(), bias.contiguous(), stats.contiguous(), alpha, eps
    ),
    triton=lambda: _triton.encode_norm,
    fake=lambda grad_y, grad_style, x, bias, stats, alpha, eps: (_layout.empty_dense(x), bias.new_empty(bias.shape)),
    save=("grad_y", "grad_style", "x", "bias"),
    backward=_grad_backward,
    autocast="input",
)


def _forward_fake(x, bias, alpha, eps):
    n, c = x.shape[:2]
    return (_layout.empty_dense(x), x.new_empty(n, 2 * c), x.new_empty(n, 3 * c, dtype=_layout.acc_dtype(x.dtype)))


_forward = define(
    "encode_norm(Tensor x, Tensor bias, float alpha, float eps) -> (Tensor, Tensor, Tensor)",
    kernel=lambda k, x, bias, alpha, eps: k.encode_norm_fwd(x.contiguous(), bias.contiguous(), alpha, eps),
    triton=lambda: _triton.encode_norm,
    fake=_forward_fake,
    save=("x", "bias"),
    save_outputs={"stats": 2},
    backward=_grad_forward,
    autocast="input",
)

_EXAMPLE = Example(
    "encode_norm", dict(x=Rand((3, 5, 7, 7), 0), bias=Rand((5,), 1, 0.5), alpha=0.2, eps=1e-5), ("x", "bias")
)
SPEC = OpSpec("encode_norm", encode_norm_ref, _forward, outputs=lambda out: out[:2], examples=(_EXAMPLE,))


def encode_norm(
    x: torch.Tensor, bias: torch.Tensor, *, alpha: float = 0.2, eps: float = 1e-5, impl: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bias, leaky ReLU, per-(n, c) style statistics and instance norm, fused.

    Args:
        x: [N, C, H, W] floating point (other layouts than contiguous are copied).
        bias: [C] of x's dtype and device.
        alpha: leaky ReLU slope for negative inputs (>= 0).
        eps: added to the variance of the instance norm (not to the style's std, as in the
            official code).
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    Returns:
        ``(y, style)``: y [N, C, H, W] the normalised activations; style [N, 2C] the mean
        (first C) and population std (last C) of each channel after the activation.
        Differentiable to second order.
    """
    _checks.tensor("encode_norm", "x", x, dim=4, shape_hint="[N, C, H, W]")
    _checks.vector("encode_norm", "bias", bias, x.shape[1], x)
    alpha, eps = _checks.non_negative("encode_norm", alpha=alpha, eps=eps)
    return SPEC(impl, x, bias, alpha, eps)
