"""Adapters to the pretrained networks of the metrics: torch-fidelity's Inception-v3 (FID) and
the ``lpips`` package's VGG16 LPIPS (PPL).

Nothing here imports those libraries until an adapter is called, and weights are looked up in
(or downloaded to) torch.hub's cache first, so that a machine without internet can be prepared
by copying the files there. ``ALAE_FAST_OFFLINE=1`` forbids any download attempt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = [
    "MetricsSetupError",
    "INCEPTION_WEIGHTS",
    "INCEPTION_URL",
    "VGG16_WEIGHTS",
    "VGG16_URL",
    "ensure_weights",
    "inception_features",
    "lpips_distance",
]

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS}"
VGG16_WEIGHTS = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_WEIGHTS}"

OFFLINE_ENV = "ALAE_FAST_OFFLINE"


class MetricsSetupError(RuntimeError):
    """A metric cannot run here: a library is missing or broken, or weights cannot be fetched."""


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def ensure_weights(filename: str, url: str) -> Path:
    """The weights file ``filename`` in torch.hub's cache (``<torch hub dir>/checkpoints``),
    downloaded from ``url`` if it is not there yet.

    Raises :class:`MetricsSetupError` (naming the file, the URL and the folder) when the file is
    missing and cannot be downloaded, or when ``ALAE_FAST_OFFLINE=1`` forbids the download.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / filename

    def missing(reason: str) -> MetricsSetupError:
        return MetricsSetupError(
            f"Weights file {filename} is missing ({reason}). Download it from {url} and put it in the folder "
            f"{folder} (torch.hub's cache; set TORCH_HOME to move that folder: it is $TORCH_HOME/hub/checkpoints)."
        )

    if path.is_file():
        return path
    if _offline():
        raise missing(f"{OFFLINE_ENV}=1 forbids downloading it")
    tmp = folder / f"{filename}.partial"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(tmp), progress=False)
        os.replace(tmp, path)
    except Exception as err:  # offline, HTTP error, disk full...: one message saying what to do
        tmp.unlink(missing_ok=True)
        raise missing(f"the download failed: {type(err).__name__}: {err}") from err
    return path


def _setup_error(library: str, err: BaseException) -> MetricsSetupError:
    return MetricsSetupError(
        f"The metrics need {library}, which cannot be imported here: {type(err).__name__}: {err}. "
        f'Install the metrics extra, pip install "alae_fast[metrics]", together with a torchvision built for '
        f"the installed torch {torch.__version__} (torchvision is needed by lpips and torch-fidelity)."
    )


def _import_fidelity_inception():
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except (ImportError, RuntimeError) as err:  # RuntimeError: a torchvision built for another torch
        raise _setup_error("torch-fidelity", err) from err
    return FeatureExtractorInceptionV3


def _import_lpips():
    try:
        import lpips  # imports torchvision: a build for another torch raises RuntimeError
    except (ImportError, RuntimeError) as err:
        raise _setup_error("lpips (with torchvision)", err) from err
    return lpips


def _to_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def inception_features(device: torch.device | str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Inception-v3 pool3 features as in the TF FID code (torch-fidelity's "inception-v3-compat").

    Returns ``f(images)`` taking uint8 images [N, 3 (or 1), H, W] on any device (resized to 299
    inside) and returning float features [N, 2048] on ``device``.
    """
    device = torch.device("cpu" if device is None else device)
    extractor_cls = _import_fidelity_inception()
    weights = ensure_weights(INCEPTION_WEIGHTS, INCEPTION_URL)
    net = extractor_cls(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(weights))
    net = net.eval().requires_grad_(False).to(device)

    @torch.no_grad()
    def features(images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise ValueError(f"inception features need uint8 images, got {images.dtype}")
        (out,) = net(_to_rgb(images).to(device))
        return out.reshape(images.shape[0], -1)

    return features


def lpips_distance(device: torch.device | str | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LPIPS (VGG16 backbone, the ``lpips`` package's v0.1 linear weights) between image pairs.

    Returns ``d(a, b)`` taking float images [N, 3 (or 1), H, W] in [-1, 1] and returning [N].
    The VGG16 weights are made sure to be in torch.hub's cache first, where torchvision finds them.
    """
    device = torch.device("cpu" if device is None else device)
    lpips = _import_lpips()
    ensure_weights(VGG16_WEIGHTS, VGG16_URL)
    net = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False).to(device)

    @torch.no_grad()
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = net(_to_rgb(a).to(device, torch.float32), _to_rgb(b).to(device, torch.float32))
        return out.reshape(a.shape[0])

    return distance
