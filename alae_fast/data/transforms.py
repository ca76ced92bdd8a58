"""Small tensor transforms shared by the datasets: uint8 -> [-1, 1] scaling, centred zero
padding and 2x average-pool downsampling.

They are kept separate from the dataset readers so that MNIST and image folders scale and
resample images the same way.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["uint8_to_float", "pad_to", "downsample_to"]


def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels ``0..255`` to float32 in ``[-1, 1]`` (``x / 127.5 - 1``).

    Args:
        x: uint8 tensor of any shape.

    Returns:
        float32 tensor of the same shape; 0 maps to -1 and 255 to 1.

    Raises:
        TypeError: if ``x`` is not uint8 (guards against scaling an image twice).
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"uint8_to_float expects a uint8 tensor, got dtype {x.dtype}")
    return x.to(torch.float32) / 127.5 - 1.0


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the last two dimensions of ``x`` to ``size x size``, keeping the image centred.

    Padding is done in the input dtype, so for uint8 images the border is 0 (background) and
    becomes -1 after :func:`uint8_to_float`. When the margin is odd, the extra row/column goes
    to the bottom/right.

    Args:
        x: tensor ``[N, H, W]`` or ``[N, C, H, W]`` (typically uint8).
        size: target height and width; must be ``>= H`` and ``>= W``.

    Returns:
        tensor ``[N, size, size]`` or ``[N, C, size, size]`` with the dtype of ``x``.

    Raises:
        ValueError: on a wrong rank or when ``size`` is smaller than the image.
    """
    if x.dim() not in (3, 4):
        raise ValueError(f"pad_to expects a [N,H,W] or [N,C,H,W] tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if size < h or size < w:
        raise ValueError(f"pad_to: size={size} is smaller than the image ({h}x{w})")
    top, left = (size - h) // 2, (size - w) // 2
    out = x.new_zeros((*x.shape[:-2], size, size))
    out[..., top : top + h, left : left + w] = x
    return out


def downsample_to(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Halve the image with 2x2 average pooling until its height equals ``resolution``.

    Repeated 2x2 averaging is what the progressive-growing ALAE data pipeline uses for the
    lower levels of detail, so every resolution is an exact box-filtered copy of the top one.

    Args:
        x: floating-point tensor ``[N, C, H, W]``.
        resolution: target height; ``H`` must reach it by halving (``H = resolution * 2**k``,
            ``k >= 0``), and ``W`` must be divisible by the same ``2**k``.

    Returns:
        tensor ``[N, C, resolution, W * resolution / H]`` (``x`` itself when ``H == resolution``).

    Raises:
        TypeError: if ``x`` is not floating point (average pooling of integers is lossy).
        ValueError: on a wrong rank or a resolution not reachable by halving.
    """
    if x.dim() != 4:
        raise ValueError(f"downsample_to expects a [N,C,H,W] tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"downsample_to expects a floating-point tensor, got dtype {x.dtype}")
    h, w = x.shape[-2:]
    factor = 1
    while h // factor > resolution and (h // factor) % 2 == 0:
        factor *= 2
    if resolution < 1 or h // factor != resolution or w % factor != 0:
        raise ValueError(f"downsample_to: resolution={resolution} cannot be reached from {h}x{w} by halving")
    while x.shape[-2] > resolution:
        x = F.avg_pool2d(x, 2)
    return x
