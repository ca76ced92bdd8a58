"""Evaluation metrics of the ALAE paper, with the official protocol (podgorskiy/ALAE
``metrics/fid.py``, ``fid_rec.py``, ``ppl.py``) on PyTorch networks instead of TF pickles.

- Generation FID: ``num`` (50k) samples, no truncation, no style mixing, against the first
  ``num`` training images; images to uint8 as ``clip((x + 1) * 127, 0, 255)`` truncated (the
  official 127); Inception-v3 pool3 features (torch-fidelity's TF-compatible port); Fréchet
  distance of the fitted Gaussians in float64 with ``scipy.linalg.sqrtm``.
- Reconstruction FID: the same, with the reconstructions E -> G of those training images.
- PPL in W: pairs ``lerp(w0, w1, t)``, ``lerp(w0, w1, t + 1e-4)`` (t ~ U(0, 1) "full", t = 0
  "end"), decoded with shared noise, face-cropped, LPIPS (VGG16) / eps^2, mean between the 1st
  and 99th percentiles.

The networks come from the optional ``metrics`` extra (``pip install "alae_fast[metrics]"``) and
are imported only when a metric needs them; their weights go to torch.hub's cache
(``ALAE_FAST_OFFLINE=1``: never download, say where to put them).
"""

from __future__ import annotations

from .frechet import FeatureStatistics
from .frechet import frechet_distance
from .networks import MetricsSetupError
from .networks import ensure_weights
from .networks import inception_features
from .networks import lpips_distance
from .protocol import CROPS
from .protocol import METRICS
from .protocol import SAMPLINGS
from .protocol import compute_metrics
from .protocol import crop_images
from .protocol import downsample_to_256
from .protocol import filtered_mean
from .protocol import generation_fid
from .protocol import perceptual_path_distances
from .protocol import perceptual_path_length
from .protocol import reconstruction_fid
from .protocol import to_uint8

__all__ = [
    "frechet_distance",
    "FeatureStatistics",
    "MetricsSetupError",
    "ensure_weights",
    "inception_features",
    "lpips_distance",
    "METRICS",
    "CROPS",
    "SAMPLINGS",
    "compute_metrics",
    "generation_fid",
    "reconstruction_fid",
    "perceptual_path_length",
    "perceptual_path_distances",
    "filtered_mean",
    "crop_images",
    "downsample_to_256",
    "to_uint8",
]
