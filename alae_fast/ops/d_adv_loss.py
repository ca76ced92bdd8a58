"""``d_adv_loss``: the adversarial part of the E,D loss, mean(softplus(d_fake) + softplus(-d_real)).

Forward and backward are each one pass over the logits; softplus is computed as
max(x, 0) + log1p(exp(-|x|)), exact and finite for any finite logit.
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

__all__ = ["d_adv_loss", "d_adv_loss_ref"]


def d_adv_loss_ref(d_fake: torch.Tensor, d_real: torch.Tensor) -> torch.Tensor:
    """Reference twin of :func:`d_adv_loss`, in plain PyTorch."""
    return (F.softplus(d_fake) + F.softplus(-d_real)).mean()


def _grad_backward(s, gg_fake, gg_real):
    # The backward is (g/n) sigmoid(f), -(g/n) sigmoid(-r); its own gradients in plain
    # PyTorch, so every further order works.
    n = s.d_fake.numel()
    s_fake, s_real = torch.sigmoid(s.d_fake), torch.sigmoid(-s.d_real)
    g_grad = ((gg_fake * s_fake).sum() - (gg_real * s_real).sum()) / n
    return {
        "grad": g_grad.reshape(s.grad.shape),
        "d_fake": gg_fake * (s.grad / n) * s_fake * (1 - s_fake),
        "d_real": gg_real * (s.grad / n) * s_real * (1 - s_real),
    }


def _grad_forward(s, grad):
    grad_fake, grad_real = _backward(grad, s.d_fake, s.d_real, s.impl)
    return {"d_fake": grad_fake, "d_real": grad_real}


_backward = define(
    "d_adv_loss_backward(Tensor grad, Tensor d_fake, Tensor d_real) -> (Tensor, Tensor)",
    kernel=lambda k, grad, f, r: k.d_adv_loss_bwd(grad.to(f.dtype).contiguous(), f.contiguous(), r.contiguous()),
    triton=lambda: _triton.adv_loss,
    fake=lambda grad, f, r: (_layout.empty_dense(f), _layout.empty_dense(r)),
    save=("grad", "d_fake", "d_real"),
    backward=_grad_backward,
    autocast="float32",
)
_forward = define(
    "d_adv_loss(Tensor d_fake, Tensor d_real) -> Tensor",
    kernel=lambda k, f, r: k.d_adv_loss_fwd(f.contiguous(), r.contiguous()),
    triton=lambda: _triton.adv_loss,
    fake=lambda f, r: f.new_empty(()),
    save=("d_fake", "d_real"),
    backward=_grad_forward,
    autocast="float32",
)

_EXAMPLE = Example("d_adv_loss", dict(d_fake=Rand((3,), 1, 2.0), d_real=Rand((3,), 2, 2.0)), ("d_fake", "d_real"))
SPEC = OpSpec("d_adv_loss", d_adv_loss_ref, _forward, examples=(_EXAMPLE,))


def d_adv_loss(d_fake: torch.Tensor, d_real: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """E,D adversarial loss ``mean(softplus(d_fake) + softplus(-d_real))``.

    Args:
        d_fake: D's logits of generated images, [N], floating point.
        d_real: D's logits of real images, [N], same dtype and device.
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    Returns:
        Scalar (0-d) of the logits' dtype; differentiable (any order).
    """
    _checks.tensor("d_adv_loss", "d_fake", d_fake, dim=1, shape_hint="[N]")
    _checks.tensor("d_adv_loss", "d_real", d_real, dim=1, shape_hint="[N]")
    _checks.same_device_dtype("d_adv_loss", d_fake=d_fake, d_real=d_real)
    _checks.same_shape("d_adv_loss", d_fake=d_fake, d_real=d_real)
    return SPEC(impl, d_fake, d_real)
