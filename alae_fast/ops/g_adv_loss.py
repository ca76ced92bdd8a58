"""``g_adv_loss``: the F,G non-saturating loss mean(softplus(-d_fake)).

Forward and backward are each one pass over the logits, with the overflow-free softplus of
:mod:`alae_fast.ops.d_adv_loss`.
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

__all__ = ["g_adv_loss", "g_adv_loss_ref"]


def g_adv_loss_ref(d_fake: torch.Tensor) -> torch.Tensor:
    """Reference twin of :func:`g_adv_loss`, in plain PyTorch."""
    return F.softplus(-d_fake).mean()


def _grad_backward(s, gg_fake):
    # The backward is -(g/n) sigmoid(-f); its gradients in plain PyTorch (any order).
    n = s.d_fake.numel()
    sig = torch.sigmoid(-s.d_fake)
    return {
        "grad": (-(gg_fake * sig).sum() / n).reshape(s.grad.shape),
        "d_fake": gg_fake * (s.grad / n) * sig * (1 - sig),
    }


_backward = define(
    "g_adv_loss_backward(Tensor grad, Tensor d_fake) -> Tensor",
    kernel=lambda k, grad, f: k.g_adv_loss_bwd(grad.to(f.dtype).contiguous(), f.contiguous()),
    triton=lambda: _triton.adv_loss,
    fake=lambda grad, f: _layout.empty_dense(f),
    save=("grad", "d_fake"),
    backward=_grad_backward,
    autocast="float32",
)
_forward = define(
    "g_adv_loss(Tensor d_fake) -> Tensor",
    kernel=lambda k, f: k.g_adv_loss_fwd(f.contiguous()),
    triton=lambda: _triton.adv_loss,
    fake=lambda f: f.new_empty(()),
    save=("d_fake",),
    backward=lambda s, grad: {"d_fake": _backward(grad, s.d_fake, s.impl)},
    autocast="float32",
)

_EXAMPLE = Example("g_adv_loss", dict(d_fake=Rand((3,), 1, 2.0)), ("d_fake",))
SPEC = OpSpec("g_adv_loss", g_adv_loss_ref, _forward, examples=(_EXAMPLE,))


def g_adv_loss(d_fake: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """F,G non-saturating adversarial loss ``mean(softplus(-d_fake))``.

    Args:
        d_fake: D's logits of generated images, [N], floating point.
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    Returns:
        Scalar (0-d) of the logits' dtype; differentiable (any order).
    """
    _checks.tensor("g_adv_loss", "d_fake", d_fake, dim=1, shape_hint="[N]")
    return SPEC(impl, d_fake)
