"""Pure-PyTorch reference ALAE and StyleALAE, faithful to the official implementation.

Everything fast in :mod:`alae_fast` is tested against the modules here.
"""

from . import layers
from . import losses
from . import networks
from .layers import Blur
from .layers import Conv2d
from .layers import ConvTranspose2d
from .layers import Linear
from .layers import downscale2d
from .layers import instance_norm
from .layers import instance_stats
from .layers import pixel_norm
from .layers import style_mod
from .layers import upscale2d
from .losses import discriminator_logistic_r1
from .losses import generator_logistic_ns
from .losses import latent_l2
from .losses import r1_penalty
from .model import MLPALAE
from .model import ALAEBase
from .model import DLatent
from .model import StyleALAE
from .networks import DecodeBlock
from .networks import EncodeBlock
from .networks import Encoder
from .networks import EncoderFC
from .networks import FromRGB
from .networks import Generator
from .networks import GeneratorFC
from .networks import MappingD
from .networks import MappingDFC
from .networks import MappingF
from .networks import ToRGB
from .optim import LREQAdam

__all__ = [
    "layers",
    "losses",
    "networks",
    "Blur",
    "Conv2d",
    "ConvTranspose2d",
    "Linear",
    "downscale2d",
    "instance_norm",
    "instance_stats",
    "pixel_norm",
    "style_mod",
    "upscale2d",
    "discriminator_logistic_r1",
    "generator_logistic_ns",
    "latent_l2",
    "r1_penalty",
    "ALAEBase",
    "DLatent",
    "MLPALAE",
    "StyleALAE",
    "DecodeBlock",
    "EncodeBlock",
    "Encoder",
    "EncoderFC",
    "FromRGB",
    "Generator",
    "GeneratorFC",
    "MappingD",
    "MappingDFC",
    "MappingF",
    "ToRGB",
    "LREQAdam",
]
