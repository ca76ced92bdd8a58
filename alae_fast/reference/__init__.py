"""Pure-PyTorch reference ALAE and StyleALAE, faithful to the official implementation.

Everything fast in :mod:`alae_fast` is tested against the modules here.
"""

from . import layers, losses, networks
from .layers import (
    Blur,
    Conv2d,
    ConvTranspose2d,
    Linear,
    downscale2d,
    instance_norm,
    instance_stats,
    pixel_norm,
    style_mod,
    upscale2d,
)
from .losses import discriminator_logistic_r1, generator_logistic_ns, latent_l2, r1_penalty
from .model import MLPALAE, ALAEBase, DLatent, StyleALAE
from .networks import (
    DecodeBlock,
    EncodeBlock,
    Encoder,
    EncoderFC,
    FromRGB,
    Generator,
    GeneratorFC,
    MappingD,
    MappingDFC,
    MappingF,
    ToRGB,
)
from .optim import LREQAdam

__all__ = [
    "layers", "losses", "networks",
    "Blur", "Conv2d", "ConvTranspose2d", "Linear", "downscale2d", "instance_norm",
    "instance_stats", "pixel_norm", "style_mod", "upscale2d",
    "discriminator_logistic_r1", "generator_logistic_ns", "latent_l2", "r1_penalty",
    "ALAEBase", "DLatent", "MLPALAE", "StyleALAE",
    "DecodeBlock", "EncodeBlock", "Encoder", "EncoderFC", "FromRGB", "Generator", "GeneratorFC",
    "MappingD", "MappingDFC", "MappingF", "ToRGB",
    "LREQAdam",
]
