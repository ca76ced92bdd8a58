"""``optimize(model)``: swap the fast modules into a reference model, in place."""

from __future__ import annotations

from torch import nn

from ..ops._dispatch import IMPLS
from ..reference import model as ref_model
from ..reference import networks as ref
from . import blocks
from . import mapping

__all__ = ["FAST_MODULES", "optimize"]

# Reference class -> its drop-in fast subclass. Subclasses first: a MappingDFC is a MappingD.
FAST_MODULES: dict[type, type] = {
    ref.Blur: blocks.Blur,
    ref.EncodeBlock: blocks.EncodeBlock,
    ref.DecodeBlock: blocks.DecodeBlock,
    ref.Generator: blocks.Generator,
    ref.FromRGB: blocks.FromRGB,
    ref.ToRGB: blocks.ToRGB,
    ref.MappingF: mapping.MappingF,
    ref.MappingDFC: mapping.MappingDFC,
    ref.MappingD: mapping.MappingD,
    ref.EncoderFC: mapping.EncoderFC,
    ref.GeneratorFC: mapping.GeneratorFC,
}
_FAST = set(FAST_MODULES.values())


def _to_fast_model(model: nn.Module, impl: str | None) -> None:
    """Give a whole reference ALAE model the fused losses: its fast class, and their impl."""
    # alae_fast.models imports this module, so it is imported on use.
    from .. import models

    fast = {ref_model.StyleALAE: models.StyleALAE, ref_model.MLPALAE: models.MLPALAE}
    if type(model) in fast:
        model.__class__ = fast[type(model)]
    if isinstance(model, models.FastLosses):
        model.loss_impl = "fast" if impl is None else impl


def optimize(model: nn.Module, impl: str | None = None) -> nn.Module:
    """Make ``model`` run on the fused ops, in place, and return it.

    Every submodule whose class is a reference block (``EncodeBlock``, ``DecodeBlock``,
    ``FromRGB``, ``ToRGB``, ``Blur``, ``MappingF``, ``MappingD``, and the MLP model's networks)
    becomes its fast subclass. Parameters, buffers, hooks and state_dict keys are untouched
    (the fast classes add no state), so checkpoints load either way. A reference
    ``StyleALAE``/``MLPALAE`` becomes the :mod:`alae_fast.models` class of the same name, whose
    three losses run the fused loss ops too (``model.loss_impl`` holds their impl).

    Args:
        model: any module containing reference blocks (a whole ``StyleALAE``/``MLPALAE``, a
            ``Generator``, a single block, ...); already optimized modules are re-targeted.
        impl: implementation for every op (``None``: automatic choice per op, which also honours
            ``$ALAE_FAST_IMPL``; or ``"ref"``, ``"triton"``, ``"cuda"``, ``"cpu"``).
    Returns:
        ``model`` itself.
    """
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"alae_fast.optimize: impl must be one of {IMPLS} or None, got {impl!r}")
    for module in model.modules():
        cls = type(module)
        if cls not in _FAST:
            fast = FAST_MODULES.get(cls)
            if fast is None:
                continue
            module.__class__ = fast
        setattr(module, "impl", impl)  # noqa: B010 (nn.Module's __setattr__ types reject str)
    if isinstance(model, ref_model.ALAEBase):
        _to_fast_model(model, impl)
    return model
