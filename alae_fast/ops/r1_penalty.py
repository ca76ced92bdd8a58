"""``r1_penalty``: per-sample gamma/2 * sum of squares of the R1 gradients.

R1's value is back-propagated into E and D through ``autograd.grad(create_graph=True)``, so
this op's backward is itself an op with its own autograd formula: gradients of any order.
Contiguous and channels_last gradients are read in place (a sample's elements are adjacent in
memory either way); other layouts are copied to contiguous first.
"""

from __future__ import annotations

import torch

from ..reference.losses import r1_penalty as _reference_r1_penalty
from . import _checks
from . import _layout
from . import _triton
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from ._spec import define

__all__ = ["r1_penalty", "r1_penalty_ref"]


def r1_penalty_ref(grads: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reference twin of :func:`r1_penalty` (the reference model's penalty)."""
    return _reference_r1_penalty(grads, gamma)


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """[N, M] view of ``x`` in its memory order (a copy only for unsupported layouts)."""
    if _layout.memory_format(x) == torch.channels_last:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    return x.contiguous().view(x.shape[0], -1)


def _from_rows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_as_rows`: ``rows`` back in ``like``'s shape and layout."""
    if _layout.memory_format(like) == torch.channels_last:
        n, c, h, w = like.shape
        return rows.view(n, h, w, c).permute(0, 3, 1, 2)
    return rows.view(like.shape)


def _grad_backward(s, gg):
    # The backward is gamma * grad[n] * grads[n, ...]: its gradient w.r.t. grads is the same op
    # applied to gg, and w.r.t. grad a per-sample dot product.
    return {"grad": s.gamma * (gg * s.grads).flatten(1).sum(dim=1), "grads": _backward(s.grad, gg, s.gamma, s.impl)}


_backward = define(
    "r1_penalty_backward(Tensor grad, Tensor grads, float gamma) -> Tensor",
    kernel=lambda k, grad, grads, gamma: _from_rows(
        k.r1_penalty_bwd(grad.to(grads.dtype).contiguous(), _as_rows(grads), gamma), grads
    ),
    triton=lambda: _triton.r1_penalty,
    fake=lambda grad, grads, gamma: torch.empty_like(grads, memory_format=_layout.memory_format(grads)),
    save=("grad", "grads"),
    backward=_grad_backward,
    autocast="float32",
)
_forward = define(
    "r1_penalty(Tensor grads, float gamma) -> Tensor",
    kernel=lambda k, grads, gamma: k.r1_penalty_fwd(_as_rows(grads), gamma),
    triton=lambda: _triton.r1_penalty,
    fake=lambda grads, gamma: grads.new_empty(grads.shape[:1]),
    save=("grads",),
    backward=lambda s, grad: {"grads": _backward(grad, s.grads, s.gamma, s.impl)},
    autocast="float32",
)

_EXAMPLE = Example("r1_penalty", dict(grads=Rand((3, 5, 7, 7), 0), gamma=10.0), ("grads",))
SPEC = OpSpec("r1_penalty", r1_penalty_ref, _forward, examples=(_EXAMPLE,))


def r1_penalty(grads: torch.Tensor, gamma: float, *, impl: str | None = None) -> torch.Tensor:
    """Per-sample R1 penalty ``gamma / 2 * sum(grads ** 2)`` over all non-batch dims.

    Args:
        grads: gradient of D's real logits w.r.t. the real images, [N, ...] (at least 2-D),
            floating point; contiguous and channels_last are read without a copy.
        gamma: R1 weight, a finite Python float.
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    Returns:
        [N] of ``grads``' dtype; differentiable to any order.
    """
    _checks.tensor("r1_penalty", "grads", grads, min_dim=2, shape_hint="[N, ...]")
    gamma = _checks.finite_float("r1_penalty", "gamma", gamma)
    return SPEC(impl, grads, gamma)
