"""Image grids for sample and reconstruction snapshots."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .files import atomic_write

__all__ = ["make_grid", "save_grid", "display_scale"]


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2) -> np.ndarray:
    """Tile a batch of images into one uint8 picture.

    Args:
        images: float tensor ``[N, C, H, W]`` with values in ``[-1, 1]``
            (values outside are clamped, NaN becomes black); ``C`` is 1 or 3.
        nrow: images per row of the grid (row-major order). With fewer than
            ``nrow`` images the grid is only ``N`` wide.
        padding: black pixels between tiles and around the border.

    Returns:
        ``uint8`` array ``[H', W', C]``, or ``[H', W']`` when ``C == 1``, where
        ``H' = rows * (H + padding) + padding`` and likewise for ``W'``.
        Pixel values are ``round((x + 1) * 127.5)`` (halves rounded up).
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("images is an empty batch (N == 0)")
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got C={c}")
    if not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}")
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")

    x = images.detach().to("cpu", torch.float32)
    # A diverging run may produce NaN; render it black rather than crash the snapshot.
    x = torch.nan_to_num(x, nan=-1.0).clamp(-1.0, 1.0)
    # +0.5 then floor = round half up, independent of torch.round's half-to-even.
    pixels = torch.floor((x + 1.0) * 127.5 + 0.5).to(torch.uint8)
    tiles = pixels.permute(0, 2, 3, 1).numpy()  # [N, H, W, C]

    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        top = padding + r * (h + padding)
        left = padding + col * (w + padding)
        grid[top : top + h, left : left + w] = tiles[i]
    return grid[:, :, 0] if c == 1 else grid


def display_scale(side: int, min_tile: int = 128) -> int:
    """The integer enlargement that shows ``side``-pixel images as tiles of at least ``min_tile``
    pixels (1 for images that large already)."""
    return max(1, math.ceil(min_tile / side))


def save_grid(
    images: torch.Tensor, path: str | os.PathLike[str], nrow: int | None = None, scale: int = 1, padding: int = 2
) -> Path:
    """Write :func:`make_grid` of ``images`` as a PNG at ``path``.

    ``nrow`` defaults to ``ceil(sqrt(N))`` (a near-square grid); ``scale`` enlarges the picture
    by that integer factor, each pixel a ``scale x scale`` block (small images stay sharp). Parent
    directories are created; the file is written to a temporary name in the
    same directory and moved into place, so a viewer never sees half a PNG.
    """
    if nrow is None:
        n = images.shape[0] if isinstance(images, torch.Tensor) and images.dim() > 0 else 0
        nrow = max(1, math.ceil(math.sqrt(n)))
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    grid = make_grid(images, nrow=nrow, padding=padding)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    with atomic_write(path) as f:
        Image.fromarray(grid).save(f, format="PNG")
    return path
