"""``r1_penalty``: per-sample gamma/2 * sum of squares of the R1 gradients.

R1's value is back-propagated into E and D through ``autograd.grad(create_graph=True)``, so
this op's backward is itself an op with its own autograd formula: gradients of any order.
Contiguous and channels_last gradients are read in place (a sample's elements are adjacent in
memory either way); other layouts are copied to contiguous first.
"""

from __future__ import annotations

import torch

from . import _checks
from ._dispatch import resolve_impl
from ._kernels import kernel
from ._library import define
from ..reference.losses import r1_penalty as _reference_r1_penalty

__all__ = ["r1_penalty", "r1_penalty_ref"]


def r1_penalty_ref(grads: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reference twin of :func:`r1_penalty` (the reference model's penalty)."""
    return _reference_r1_penalty(grads, gamma)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """The layout that the kernels read ``x`` in, and that its gradient is returned in."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """[N, M] view of ``x`` in its memory order (a copy only for unsupported layouts)."""
    if _memory_format(x) == torch.channels_last:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    return x.contiguous().view(x.shape[0], -1)


def _from_rows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_as_rows`: ``rows`` back in ``like``'s shape and layout."""
    if _memory_format(like) == torch.channels_last:
        n, c, h, w = like.shape
        return rows.view(n, h, w, c).permute(0, 3, 1, 2)
    return rows.view(like.shape)


def _forward_impl(grads, gamma, impl):
    if impl == "ref":
        return r1_penalty_ref(grads, gamma)
    return kernel(impl, "r1_penalty", "r1_penalty_fwd")(_as_rows(grads), gamma)


def _backward_impl(grad, grads, gamma, impl):
    if impl == "ref":
        scale = (grad * gamma).view((-1,) + (1,) * (grads.dim() - 1))
        return (scale * grads).contiguous(memory_format=_memory_format(grads))
    rows = kernel(impl, "r1_penalty", "r1_penalty_bwd")(grad.to(grads.dtype).contiguous(),
                                                        _as_rows(grads), gamma)
    return _from_rows(rows, grads)


def _forward_fake(grads, gamma, impl):
    return grads.new_empty(grads.shape[:1])


def _backward_fake(grad, grads, gamma, impl):
    return torch.empty_like(grads, memory_format=_memory_format(grads))


def _setup_forward(ctx, inputs, output):
    grads, gamma, impl = inputs
    ctx.save_for_backward(grads)
    ctx.gamma, ctx.impl = gamma, impl


def _grad_forward(ctx, grad):
    (grads,) = ctx.saved_tensors
    return _backward_op(grad, grads, ctx.gamma, ctx.impl), None, None


def _setup_backward(ctx, inputs, output):
    grad, grads, gamma, impl = inputs
    ctx.save_for_backward(grad, grads)
    ctx.gamma, ctx.impl = gamma, impl


def _grad_backward(ctx, gg):
    # The backward is gamma * grad[n] * grads[n, ...]: its gradient w.r.t. grads is the same op
    # applied to gg, and w.r.t. grad a per-sample dot product.
    grad, grads = ctx.saved_tensors
    g_grad = ctx.gamma * (gg * grads).flatten(1).sum(dim=1)
    g_grads = _backward_op(grad, gg, ctx.gamma, ctx.impl)
    return g_grad, g_grads, None, None


_backward_op = define(
    "r1_penalty_backward(Tensor grad, Tensor grads, float gamma, str impl) -> Tensor",
    _backward_impl, _backward_fake, backward=_grad_backward, setup_context=_setup_backward)
_forward_op = define(
    "r1_penalty(Tensor grads, float gamma, str impl) -> Tensor",
    _forward_impl, _forward_fake, backward=_grad_forward, setup_context=_setup_forward)


def r1_penalty(grads: torch.Tensor, gamma: float, *, impl: str | None = None) -> torch.Tensor:
    """Per-sample R1 penalty ``gamma / 2 * sum(grads ** 2)`` over all non-batch dims.

    Args:
        grads: gradient of D's real logits w.r.t. the real images, [N, ...] (at least 2-D),
            floating point; contiguous and channels_last are read without a copy.
        gamma: R1 weight, a finite Python float.
        impl: ``None`` (automatic, or ``$ALAE_FAST_IMPL``), ``"ref"``, ``"triton"``,
            ``"cuda"`` or ``"cpu"``.
    Returns:
        [N] of ``grads``' dtype; differentiable to any order.
    """
    _checks.tensor("r1_penalty", "grads", grads, min_dim=2, shape_hint="[N, ...]")
    gamma = _checks.finite_float("r1_penalty", "gamma", gamma)
    impl = resolve_impl("r1_penalty", impl, grads.device.type)
    if impl == "ref":
        return r1_penalty_ref(grads, gamma)
    return _forward_op(grads, gamma, impl)
