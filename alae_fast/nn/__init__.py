"""Drop-in fast modules: subclasses of the reference blocks that run the fused ops.

Use :func:`optimize` to convert a reference model in place, or build
:class:`alae_fast.models.StyleALAE` / :class:`alae_fast.models.MLPALAE` directly.
"""

from .blocks import Blur
from .blocks import DecodeBlock
from .blocks import EncodeBlock
from .blocks import FromRGB
from .blocks import Generator
from .blocks import PendingAdaIN
from .blocks import ToRGB
from .mapping import EncoderFC
from .mapping import GeneratorFC
from .mapping import MappingD
from .mapping import MappingDFC
from .mapping import MappingF
from .optimize import FAST_MODULES
from .optimize import optimize

__all__ = [
    "Blur",
    "DecodeBlock",
    "EncodeBlock",
    "FromRGB",
    "Generator",
    "PendingAdaIN",
    "ToRGB",
    "EncoderFC",
    "GeneratorFC",
    "MappingD",
    "MappingDFC",
    "MappingF",
    "FAST_MODULES",
    "optimize",
]
