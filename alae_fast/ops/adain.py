"""``adain``: the StyleALAE generator step between convolutions, fused.

``t = x + noise_weight * noise + bias``, ``a = leaky_relu(t)``, instance norm of ``a``, then the
style modulation ``* (1 + style[:, :C]) + style[:, C:]``: one read of ``x``, one write.

The generator is not on the R1 path, so this op has first-order gradients only; its backward op
refuses to be differentiated (a clear error rather than wrong numbers). The noise is a constant
input (it is sampled, never learned) and receives no gradient.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..reference.layers import instance_norm
from ..reference.layers import style_mod
from . import _checks
from . import _layout
from . import _triton
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from ._spec import define
from ._spec import first_order_only

__all__ = ["adain", "adain_ref"]


def adain_ref(
    x: torch.Tensor,
    style: torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    noise_weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    alpha: float = 0.2,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Reference twin of :func:`adain`: the reference ``DecodeBlock``'s computation."""
    if noise is not None and noise_weight is not None:  # given together (checked)
        x = torch.addcmul(x, noise_weight.view(1, -1, 1, 1), noise)
    if bias is not None:
        x = x + bias.view(1, -1, 1, 1)
    return style_mod(instance_norm(F.leaky_relu(x, alpha), eps), style)


def _forward_fake(x, style, noise, noise_weight, bias, alpha, eps):
    n, c = x.shape[:2]
    return _layout.empty_dense(x), x.new_empty(n, 2 * c, dtype=_layout.acc_dtype(x.dtype))


def _grad_forward(s, grad_y, _grad_stats):
    if grad_y is None:
        grad_y = torch.zeros_like(s.x)
    grads = _backward(grad_y, s.x, s.style, s.noise, s.noise_weight, s.bias, s.stats, s.alpha, s.eps, s.impl)
    return dict(zip(("x", "style", "noise_weight", "bias"), grads))


def _contiguous(args):
    """The tensor arguments made contiguous, then alpha and eps."""
    return [_layout.contiguous(t) for t in args[:-2]] + list(args[-2:])


_backward = define(
    "adain_backward(Tensor grad_y, Tensor x, Tensor style, Tensor? noise, Tensor? noise_weight, "
    "Tensor? bias, Tensor stats, float alpha, float eps) -> (Tensor, Tensor, Tensor, Tensor)",
    kernel=lambda k, *args: k.adain_bwd(*_contiguous(args)),
    triton=lambda: _triton.adain,
    fake=lambda grad_y, x, style, *rest: (
        _layout.empty_dense(x),
        torch.empty_like(style),
        x.new_empty(x.shape[1]),
        x.new_empty(x.shape[1]),
    ),
    backward=first_order_only("adain", "the generator is not on the R1 path"),
    autocast="input",
)
_forward = define(
    "adain(Tensor x, Tensor style, Tensor? noise, Tensor? noise_weight, Tensor? bias, "
    "float alpha, float eps) -> (Tensor, Tensor)",
    kernel=lambda k, *args: k.adain_fwd(*_contiguous(args)),
    triton=lambda: _triton.adain,
    fake=_forward_fake,
    save=("x", "style", "noise", "noise_weight", "bias"),
    save_outputs={"stats": 1},
    backward=_grad_forward,
    autocast="input",
)

_INPUTS = dict(x=Rand((3, 5, 7, 7), 0), style=Rand((3, 10), 1), noise=Rand((3, 1, 7, 7), 2), alpha=0.2, eps=1e-8)
_EXAMPLE = Example(
    "adain",
    dict(_INPUTS, noise_weight=Rand((5,), 3, 0.5), bias=Rand((5,), 4, 0.5)),
    ("x", "style", "noise_weight", "bias"),
)
SPEC = OpSpec("adain", adain_ref, _forward, grad_order=1, outputs=lambda out: out[0], examples=(_EXAMPLE,))


def adain(
    x: torch.Tensor,
    style: torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    noise_weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    alpha: float = 0.2,
    eps: float = 1e-8,
    impl: str | None = None,
) -> torch.Tensor:
    """Noise, bias, leaky ReLU, instance norm and AdaIN style modulation, fused.

    Args:
        x: [N, C, H, W] floating point (other layouts than contiguous are copied).
        style: [N, 2C]: per-channel scale (first C, applied as ``1 + scale``) and shift.
        noise: [N, 1, H, W] or [1, 1, H, W] (shared by the batch), or None; a constant (it must
            not require grad).
        noise_weight: [C] per-channel noise strength; given exactly when ``noise`` is.
        bias: [C] or None.
        alpha: leaky ReLU slope for negative inputs (>= 0).
        eps: added to the variance of the instance norm.
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    Returns:
        [N, C, H, W] of x's dtype. First-order gradients for x, style, noise_weight and bias;
        differentiating those gradients again raises (except with ``impl="ref"``).
    """
    _checks.tensor("adain", "x", x, dim=4, shape_hint="[N, C, H, W]")
    n, c, h, w = x.shape
    _checks.shaped("adain", "style", style, (n, 2 * c), x, "N, 2C")
    noise = _checks.noise("adain", x, noise, noise_weight)
    if bias is not None:
        _checks.vector("adain", "bias", bias, c, x)
    alpha, eps = _checks.non_negative("adain", alpha=alpha, eps=eps)
    return SPEC(impl, x, style, noise, noise_weight, bias, alpha, eps)
