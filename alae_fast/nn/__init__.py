"""Drop-in fast modules: subclasses of the reference blocks that run the fused ops.

Use :func:`optimize` to convert a reference model in place, or build
:class:`alae_fast.models.StyleALAE` / :class:`alae_fast.models.MLPALAE` directly.
"""

from .blocks import Blur, DecodeBlock, EncodeBlock, FromRGB, Generator, PendingAdaIN, ToRGB
from .mapping import EncoderFC, GeneratorFC, MappingD, MappingDFC, MappingF
from .optimize import FAST_MODULES, optimize

__all__ = ["Blur", "DecodeBlock", "EncodeBlock", "FromRGB", "Generator", "PendingAdaIN", "ToRGB",
           "EncoderFC", "GeneratorFC", "MappingD", "MappingDFC", "MappingF", "FAST_MODULES",
           "optimize"]
