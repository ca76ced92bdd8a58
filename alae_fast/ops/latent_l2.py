"""``latent_l2``: the E,G reciprocity loss mean((a - b)^2), one pass forward and one backward."""

from __future__ import annotations

import torch

from . import _checks
from ._dispatch import resolve_impl
from ._kernels import kernel
from ._library import define
from ..reference.losses import latent_l2 as _reference_latent_l2

__all__ = ["latent_l2", "latent_l2_ref"]


def latent_l2_ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Reference twin of :func:`latent_l2` (the reference model's loss)."""
    return _reference_latent_l2(a, b)


def _forward_impl(a, b, impl):
    if impl == "ref":
        return latent_l2_ref(a, b)
    return kernel(impl, "latent_l2", "latent_l2_fwd")(a.contiguous(), b.contiguous())


def _backward_impl(grad, a, b, impl):
    if impl == "ref":
        g = (2 * grad / a.numel()) * (a - b)
        return g.contiguous(), (-g).contiguous()
    return kernel(impl, "latent_l2", "latent_l2_bwd")(grad.to(a.dtype).contiguous(),
                                                      a.contiguous(), b.contiguous())


def _forward_fake(a, b, impl):
    return a.new_empty(())


def _backward_fake(grad, a, b, impl):
    return (torch.empty_like(a, memory_format=torch.contiguous_format),
            torch.empty_like(b, memory_format=torch.contiguous_format))


def _setup_forward(ctx, inputs, output):
    a, b, impl = inputs
    ctx.save_for_backward(a, b)
    ctx.impl = impl


def _grad_forward(ctx, grad):
    a, b = ctx.saved_tensors
    grad_a, grad_b = _backward_op(grad, a, b, ctx.impl)
    return grad_a, grad_b, None


def _setup_backward(ctx, inputs, output):
    grad, a, b, impl = inputs
    ctx.save_for_backward(grad, a, b)


def _grad_backward(ctx, gg_a, gg_b):
    # The backward is +-(2g/n)(a - b): linear in g and in (a - b); gradients in plain PyTorch.
    grad, a, b = ctx.saved_tensors
    n = a.numel()
    diff_gg = gg_a - gg_b
    g_grad = (2.0 / n) * (diff_gg * (a - b)).sum()
    g_a = (2.0 / n) * grad * diff_gg
    return g_grad.reshape(grad.shape), g_a, -g_a, None


_backward_op = define(
    "latent_l2_backward(Tensor grad, Tensor a, Tensor b, str impl) -> (Tensor, Tensor)",
    _backward_impl, _backward_fake, backward=_grad_backward, setup_context=_setup_backward)
_forward_op = define(
    "latent_l2(Tensor a, Tensor b, str impl) -> Tensor",
    _forward_impl, _forward_fake, backward=_grad_forward, setup_context=_setup_forward)


def latent_l2(a: torch.Tensor, b: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """Latent reciprocity loss ``mean((a - b)^2)`` over all elements.

    Args:
        a, b: tensors of one shape (any rank, non-empty), dtype and device; in ALAE ``a`` is
            E(G(w)) and ``b`` the target w, [N, 1, L] or [N, L].
        impl: ``None`` (automatic, or ``$ALAE_FAST_IMPL``), ``"ref"``, ``"triton"``,
            ``"cuda"`` or ``"cpu"``.
    Returns:
        Scalar (0-d) of the inputs' dtype; differentiable (any order).
    """
    _checks.tensor("latent_l2", "a", a)
    _checks.tensor("latent_l2", "b", b)
    _checks.same_device_dtype("latent_l2", a=a, b=b)
    _checks.same_shape("latent_l2", a=a, b=b)
    impl = resolve_impl("latent_l2", impl, a.device.type)
    if impl == "ref":
        return latent_l2_ref(a, b)
    return _forward_op(a, b, impl)
