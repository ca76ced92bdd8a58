"""ALAE models built from the fast modules.

:class:`StyleALAE` and :class:`MLPALAE` take exactly the arguments of their reference twins
(:mod:`alae_fast.reference.model`), hold the same parameters under the same state_dict keys, and
run every block, the mapping networks and the three losses on the fused ops of
:mod:`alae_fast.ops` (the automatic implementation choice; set another with
:func:`alae_fast.optimize`, which also turns a reference model into the fast class of the
same name).
"""

from __future__ import annotations

import inspect

import torch

from . import ops
from .nn.optimize import optimize
from .reference import model as _reference
from .reference.networks import STYLE_INJECTIONS

__all__ = ["StyleALAE", "MLPALAE", "FastLosses", "FAST_STYLE_INJECTIONS"]

#: The generator style injections the fast modules of :mod:`alae_fast.nn` implement: all of
#: :data:`alae_fast.reference.networks.STYLE_INJECTIONS` (a "modconv" DecodeBlock's grouped
#: convolution is the same call in both).
FAST_STYLE_INJECTIONS = STYLE_INJECTIONS


def check_fast_style_injection(style_injection: str) -> None:
    """Raise ``NotImplementedError`` if the fast modules cannot run ``style_injection``."""
    if style_injection not in FAST_STYLE_INJECTIONS:
        raise NotImplementedError(
            f"style_injection={style_injection!r} has no fast implementation yet (fast: "
            f"{list(FAST_STYLE_INJECTIONS)}); use the reference model "
            f"alae_fast.reference.StyleALAE (train.impl=ref)"
        )


class FastLosses(_reference.ALAEBase):
    """The three loss formulas of :class:`~alae_fast.reference.model.ALAEBase` on the fused
    loss ops of :mod:`alae_fast.ops`, with the implementation ``loss_impl`` (``"fast"``: the
    automatic choice; set by :func:`alae_fast.optimize`)."""

    loss_impl = "fast"

    @property
    def _ops_impl(self) -> str | None:
        return None if self.loss_impl == "fast" else self.loss_impl

    def d_loss_fn(
        self, d_fake: torch.Tensor, d_real: torch.Tensor, reals: torch.Tensor, r1_gamma: float, grad_scale: float = 1.0
    ) -> torch.Tensor:
        return ops.d_loss_r1(d_fake, d_real, reals, r1_gamma, grad_scale, impl=self._ops_impl)

    def g_loss_fn(self, d_fake: torch.Tensor) -> torch.Tensor:
        return ops.g_adv_loss(d_fake, impl=self._ops_impl)

    def ae_loss_fn(self, w: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ops.latent_l2(w, target, impl=self._ops_impl)


class StyleALAE(FastLosses, _reference.StyleALAE):
    __doc__ = _reference.StyleALAE.__doc__

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_fast_style_injection(self.style_injection)
        optimize(self)


class MLPALAE(FastLosses, _reference.MLPALAE):
    __doc__ = _reference.MLPALAE.__doc__

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        optimize(self)


# The twins' parameters, for help() and inspect (the fast __init__ passes them on as given).
StyleALAE.__init__.__signature__ = inspect.signature(_reference.StyleALAE.__init__)  # type: ignore[attr-defined]
MLPALAE.__init__.__signature__ = inspect.signature(_reference.MLPALAE.__init__)  # type: ignore[attr-defined]
