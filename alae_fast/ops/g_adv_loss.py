"""``g_adv_loss``: the F,G non-saturating loss mean(softplus(-d_fake)).

Forward and backward are each one pass over the logits, with the overflow-free softplus of
:mod:`alae_fast.ops.d_adv_loss`.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _checks
from ._dispatch import resolve_impl
from ._kernels import kernel
from ._library import define

__all__ = ["g_adv_loss", "g_adv_loss_ref"]


def g_adv_loss_ref(d_fake: torch.Tensor) -> torch.Tensor:
    """Reference twin of :func:`g_adv_loss`, in plain PyTorch."""
    return F.softplus(-d_fake).mean()


def _forward_impl(d_fake, impl):
    if impl == "ref":
        return g_adv_loss_ref(d_fake)
    return kernel(impl, "adv_loss", "g_adv_loss_fwd")(d_fake.contiguous())


def _backward_impl(grad, d_fake, impl):
    if impl == "ref":
        return -(grad / d_fake.numel()) * torch.sigmoid(-d_fake)
    return kernel(impl, "adv_loss", "g_adv_loss_bwd")(grad.to(d_fake.dtype).contiguous(),
                                                      d_fake.contiguous())


def _forward_fake(d_fake, impl):
    return d_fake.new_empty(())


def _backward_fake(grad, d_fake, impl):
    return torch.empty_like(d_fake, memory_format=torch.contiguous_format)


def _setup_forward(ctx, inputs, output):
    d_fake, impl = inputs
    ctx.save_for_backward(d_fake)
    ctx.impl = impl


def _grad_forward(ctx, grad):
    (d_fake,) = ctx.saved_tensors
    return _backward_op(grad, d_fake, ctx.impl), None


def _setup_backward(ctx, inputs, output):
    grad, d_fake, impl = inputs
    ctx.save_for_backward(grad, d_fake)


def _grad_backward(ctx, gg_fake):
    # The backward is -(g/n) sigmoid(-f); its gradients in plain PyTorch (any order).
    grad, d_fake = ctx.saved_tensors
    n = d_fake.numel()
    s = torch.sigmoid(-d_fake)
    g_grad = -(gg_fake * s).sum() / n
    g_fake = gg_fake * (grad / n) * s * (1 - s)
    return g_grad.reshape(grad.shape), g_fake, None


_backward_op = define(
    "g_adv_loss_backward(Tensor grad, Tensor d_fake, str impl) -> Tensor",
    _backward_impl, _backward_fake, backward=_grad_backward, setup_context=_setup_backward)
_forward_op = define(
    "g_adv_loss(Tensor d_fake, str impl) -> Tensor",
    _forward_impl, _forward_fake, backward=_grad_forward, setup_context=_setup_forward)


def g_adv_loss(d_fake: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """F,G non-saturating adversarial loss ``mean(softplus(-d_fake))``.

    Args:
        d_fake: D's logits of generated images, [N], floating point.
        impl: ``None`` (automatic, or ``$ALAE_FAST_IMPL``), ``"ref"``, ``"triton"``,
            ``"cuda"`` or ``"cpu"``.
    Returns:
        Scalar (0-d) of the logits' dtype; differentiable (any order).
    """
    _checks.tensor("g_adv_loss", "d_fake", d_fake, dim=1, shape_hint="[N]")
    impl = resolve_impl("g_adv_loss", impl, d_fake.device.type)
    if impl == "ref":
        return g_adv_loss_ref(d_fake)
    return _forward_op(d_fake, impl)
