"""``blur``: the depthwise 3x3 binomial filter of the StyleALAE up/down paths, zero padding 1.

The filter is symmetric and the padding keeps the size, so the operation is its own adjoint:
the gradient of ``blur`` is ``blur`` of the incoming gradient, and every order works.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ..reference.layers import blur_kernel
from . import _checks
from . import _layout
from . import _triton
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from ._spec import define

__all__ = ["blur", "blur_ref"]


def blur_ref(x: torch.Tensor) -> torch.Tensor:
    """Reference twin of :func:`blur`: the reference ``Blur`` module's depthwise convolution."""
    c = x.shape[1]
    k = blur_kernel(x.dtype, x.device).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    return F.conv2d(x, k, padding=1, groups=c)


_forward: Any = define(  # its gradient is itself
    "blur(Tensor x) -> Tensor",
    kernel=lambda k, x: k.blur_fwd(_layout.dense(x)),
    triton=lambda: _triton.blur,
    fake=_layout.empty_like,
    backward=lambda s, grad: {"x": _forward(grad, s.impl)},
    autocast="input",
)

SPEC = OpSpec("blur", blur_ref, _forward, examples=(Example("blur", dict(x=Rand((3, 5, 7, 7), 0)), ("x",)),))


def blur(x: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """Depthwise blur with the normalised ``[1, 2, 1] x [1, 2, 1] / 16`` filter, zero padding 1.

    Args:
        x: [N, C, H, W] floating point; contiguous and channels_last are read in place.
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    Returns:
        [N, C, H, W] of x's dtype (channels_last if x is); differentiable to any order.
    """
    _checks.tensor("blur", "x", x, dim=4, shape_hint="[N, C, H, W]")
    return SPEC(impl, x)
