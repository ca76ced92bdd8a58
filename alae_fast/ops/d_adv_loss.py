"""``d_adv_loss``: the adversarial part of the E,D loss, mean(softplus(d_fake) + softplus(-d_real)).

Forward and backward are each one pass over the logits; softplus is computed as
max(x, 0) + log1p(exp(-|x|)), exact and finite for any finite logit.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _checks
from ._dispatch import resolve_impl
from ._kernels import kernel
from ._library import define

__all__ = ["d_adv_loss", "d_adv_loss_ref"]


def d_adv_loss_ref(d_fake: torch.Tensor, d_real: torch.Tensor) -> torch.Tensor:
    """Reference twin of :func:`d_adv_loss`, in plain PyTorch."""
    return (F.softplus(d_fake) + F.softplus(-d_real)).mean()


def _forward_impl(d_fake, d_real, impl):
    if impl == "ref":
        return d_adv_loss_ref(d_fake, d_real)
    return kernel(impl, "adv_loss", "d_adv_loss_fwd")(d_fake.contiguous(), d_real.contiguous())


def _backward_impl(grad, d_fake, d_real, impl):
    if impl == "ref":
        scale = grad / d_fake.numel()
        return scale * torch.sigmoid(d_fake), -scale * torch.sigmoid(-d_real)
    return kernel(impl, "adv_loss", "d_adv_loss_bwd")(
        grad.to(d_fake.dtype).contiguous(), d_fake.contiguous(), d_real.contiguous())


def _forward_fake(d_fake, d_real, impl):
    return d_fake.new_empty(())


def _backward_fake(grad, d_fake, d_real, impl):
    return (torch.empty_like(d_fake, memory_format=torch.contiguous_format),
            torch.empty_like(d_real, memory_format=torch.contiguous_format))


def _setup_forward(ctx, inputs, output):
    d_fake, d_real, impl = inputs
    ctx.save_for_backward(d_fake, d_real)
    ctx.impl = impl


def _grad_forward(ctx, grad):
    d_fake, d_real = ctx.saved_tensors
    grad_fake, grad_real = _backward_op(grad, d_fake, d_real, ctx.impl)
    return grad_fake, grad_real, None


def _setup_backward(ctx, inputs, output):
    grad, d_fake, d_real, impl = inputs
    ctx.save_for_backward(grad, d_fake, d_real)


def _grad_backward(ctx, gg_fake, gg_real):
    # The backward is (g/n) sigmoid(f), -(g/n) sigmoid(-r); its own gradients in plain
    # PyTorch, so every further order works.
    grad, d_fake, d_real = ctx.saved_tensors
    n = d_fake.numel()
    s_fake, s_real = torch.sigmoid(d_fake), torch.sigmoid(-d_real)
    g_grad = ((gg_fake * s_fake).sum() - (gg_real * s_real).sum()) / n
    g_fake = gg_fake * (grad / n) * s_fake * (1 - s_fake)
    g_real = gg_real * (grad / n) * s_real * (1 - s_real)
    return g_grad.reshape(grad.shape), g_fake, g_real, None


_backward_op = define(
    "d_adv_loss_backward(Tensor grad, Tensor d_fake, Tensor d_real, str impl) -> (Tensor, Tensor)",
    _backward_impl, _backward_fake, backward=_grad_backward, setup_context=_setup_backward)
_forward_op = define(
    "d_adv_loss(Tensor d_fake, Tensor d_real, str impl) -> Tensor",
    _forward_impl, _forward_fake, backward=_grad_forward, setup_context=_setup_forward)


def d_adv_loss(d_fake: torch.Tensor, d_real: torch.Tensor, *, impl: str | None = None
               ) -> torch.Tensor:
    """E,D adversarial loss ``mean(softplus(d_fake) + softplus(-d_real))``.

    Args:
        d_fake: D's logits of generated images, [N], floating point.
        d_real: D's logits of real images, [N], same dtype and device.
        impl: ``None`` (automatic, or ``$ALAE_FAST_IMPL``), ``"ref"``, ``"triton"``,
            ``"cuda"`` or ``"cpu"``.
    Returns:
        Scalar (0-d) of the logits' dtype; differentiable (any order).
    """
    _checks.tensor("d_adv_loss", "d_fake", d_fake, dim=1, shape_hint="[N]")
    _checks.tensor("d_adv_loss", "d_real", d_real, dim=1, shape_hint="[N]")
    _checks.same_device_dtype("d_adv_loss", d_fake=d_fake, d_real=d_real)
    _checks.same_shape("d_adv_loss", d_fake=d_fake, d_real=d_real)
    impl = resolve_impl("d_adv_loss", impl, d_fake.device.type)
    if impl == "ref":
        return d_adv_loss_ref(d_fake, d_real)
    return _forward_op(d_fake, d_real, impl)
