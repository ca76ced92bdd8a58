"""``d_loss_r1``: the whole E,D loss of ALAE (the official ``discriminator_logistic_simple_gp``),
built from :func:`d_adv_loss` and :func:`r1_penalty`.

It takes the R1 gradient itself (``autograd.grad`` with ``create_graph=True``), so it is a
composition of ops rather than an op: ``torch.compile(fullgraph=True)`` refuses it (Dynamo
does not trace ``torch.autograd.grad`` by default); plain ``torch.compile`` splits the graph
there, and each op inside compiles.
"""

from __future__ import annotations

import torch

from ..reference.losses import discriminator_logistic_r1
from . import _checks
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from .d_adv_loss import d_adv_loss
from .r1_penalty import r1_penalty

__all__ = ["d_loss_r1", "d_loss_r1_ref"]


def d_loss_r1_ref(
    d_fake: torch.Tensor, d_real: torch.Tensor, reals: torch.Tensor, gamma: float = 10.0, grad_scale: float = 1.0
) -> torch.Tensor:
    """Reference twin of :func:`d_loss_r1` (the reference model's loss)."""
    return discriminator_logistic_r1(d_fake, d_real, reals, gamma, grad_scale)


def _compose(d_fake, d_real, reals, gamma, grad_scale, *, impl):
    loss = d_adv_loss(d_fake, d_real, impl=impl)
    if gamma != 0.0:
        # Written out rather than calling reference.losses.r1_gradient: Dynamo breaks the graph
        # at autograd.grad, and a break inside an inlined call fails in the compiled backward.
        (grads,) = torch.autograd.grad(
            d_real.sum() * grad_scale if grad_scale != 1.0 else d_real.sum(), reals, create_graph=True
        )
        loss = loss + r1_penalty(grads / grad_scale if grad_scale != 1.0 else grads, gamma, impl=impl).mean()
    return loss


def _example_call(fn, t):
    # d_real must be computed from reals for R1; tanh makes its gradient depend on reals and w.
    d_real = (torch.tanh(t["reals"]) * t["w"]).sum(dim=(1, 2, 3))
    return fn(t["d_fake"], d_real, t["reals"], 10.0)


_INPUTS = dict(d_fake=Rand((3,), 1), reals=Rand((3, 5, 7, 7), 2), w=Rand((5, 7, 7), 3, 0.3))
_EXAMPLE = Example("d_loss_r1", _INPUTS, ("d_fake", "reals", "w"), call=_example_call)
# Under autocast the ops inside run in float32; the twin too (a loss, as PyTorch runs losses).
SPEC = OpSpec("d_loss_r1", d_loss_r1_ref, None, compose=_compose, examples=(_EXAMPLE,), autocast="float32")


def d_loss_r1(
    d_fake: torch.Tensor,
    d_real: torch.Tensor,
    reals: torch.Tensor,
    gamma: float = 10.0,
    grad_scale: float = 1.0,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """E,D loss ``mean(softplus(d_fake) + softplus(-d_real) + gamma/2 |grad_reals d_real|^2)``.

    Args:
        d_fake: D's logits of generated images, [N].
        d_real: D's logits of the real images, [N], computed from ``reals``.
        reals: the real images, [N, C, H, W] (any rank >= 2), with ``requires_grad=True``.
        gamma: R1 weight (0 disables the penalty and the gradient computation).
        grad_scale: float16 loss scale for the R1 gradient's computation, undone before the
            gradient is squared (> 0; 1: none).
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``; an explicit choice
            applies to both ops inside, the
            automatic one is made by each op.
    Returns:
        Scalar (0-d). Its backward reaches E and D through the R1 term's double backward.
    """
    _checks.tensor("d_loss_r1", "d_fake", d_fake, dim=1, shape_hint="[N]")
    _checks.tensor("d_loss_r1", "d_real", d_real, dim=1, shape_hint="[N]")
    _checks.tensor("d_loss_r1", "reals", reals, min_dim=2, shape_hint="[N, C, H, W]")
    _checks.same_device_dtype("d_loss_r1", d_fake=d_fake, d_real=d_real, reals=reals)
    _checks.same_shape("d_loss_r1", d_fake=d_fake, d_real=d_real)
    gamma = _checks.finite_float("d_loss_r1", "gamma", gamma)
    grad_scale = _checks.finite_float("d_loss_r1", "grad_scale", grad_scale)
    if grad_scale <= 0:
        raise ValueError(f"alae_fast.ops.d_loss_r1: grad_scale must be > 0, got {grad_scale}")
    if reals.shape[0] != d_real.shape[0]:
        raise ValueError(
            f"alae_fast.ops.d_loss_r1: reals has batch {reals.shape[0]} but d_real "
            f"has {d_real.shape[0]} logits; they must match"
        )
    if gamma != 0.0 and not (reals.requires_grad and d_real.requires_grad):
        raise ValueError(
            "alae_fast.ops.d_loss_r1: R1 needs the gradient of d_real w.r.t. "
            "reals: reals must have requires_grad=True and d_real must be computed "
            "from it (or pass gamma=0)"
        )
    return SPEC(impl, d_fake, d_real, reals, gamma, grad_scale)
