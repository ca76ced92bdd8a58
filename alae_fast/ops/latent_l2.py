"""``latent_l2``: the E,G reciprocity loss mean((a - b)^2), one pass forward and one backward."""

from __future__ import annotations

import torch

from ..reference.losses import latent_l2 as _reference_latent_l2
from . import _checks
from . import _layout
from . import _triton
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from ._spec import define

__all__ = ["latent_l2", "latent_l2_ref"]


def latent_l2_ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Reference twin of :func:`latent_l2` (the reference model's loss)."""
    return _reference_latent_l2(a, b)


def _grad_backward(s, gg_a, gg_b):
    # The backward is +-(2g/n)(a - b): linear in g and in (a - b); gradients in plain PyTorch.
    n = s.a.numel()
    diff_gg = gg_a - gg_b
    g_a = (2.0 / n) * s.grad * diff_gg
    return {"grad": ((2.0 / n) * (diff_gg * (s.a - s.b)).sum()).reshape(s.grad.shape), "a": g_a, "b": -g_a}


def _grad_forward(s, grad):
    grad_a, grad_b = _backward(grad, s.a, s.b, s.impl)
    return {"a": grad_a, "b": grad_b}


_backward = define(
    "latent_l2_backward(Tensor grad, Tensor a, Tensor b) -> (Tensor, Tensor)",
    kernel=lambda k, grad, a, b: k.latent_l2_bwd(grad.to(a.dtype).contiguous(), a.contiguous(), b.contiguous()),
    triton=lambda: _triton.latent_l2,
    fake=lambda grad, a, b: (_layout.empty_dense(a), _layout.empty_dense(b)),
    save=("grad", "a", "b"),
    backward=_grad_backward,
    autocast="float32",
)
_forward = define(
    "latent_l2(Tensor a, Tensor b) -> Tensor",
    kernel=lambda k, a, b: k.latent_l2_fwd(a.contiguous(), b.contiguous()),
    triton=lambda: _triton.latent_l2,
    fake=lambda a, b: a.new_empty(()),
    save=("a", "b"),
    backward=_grad_forward,
    autocast="float32",
)

_EXAMPLE = Example("latent_l2", dict(a=Rand((3, 5), 1), b=Rand((3, 5), 2)), ("a", "b"))
SPEC = OpSpec("latent_l2", latent_l2_ref, _forward, examples=(_EXAMPLE,))


def latent_l2(a: torch.Tensor, b: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """Latent reciprocity loss ``mean((a - b)^2)`` over all elements.

    Args:
        a, b: tensors of one shape (any rank, non-empty), dtype and device; in ALAE ``a`` is
            E(G(w)) and ``b`` the target w, [N, 1, L] or [N, L].
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    Returns:
        Scalar (0-d) of the inputs' dtype; differentiable (any order).
    """
    _checks.tensor("latent_l2", "a", a)
    _checks.tensor("latent_l2", "b", b)
    _checks.same_device_dtype("latent_l2", a=a, b=b)
    _checks.same_shape("latent_l2", a=a, b=b)
    return SPEC(impl, a, b)
