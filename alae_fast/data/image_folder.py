"""A generic folder-of-images dataset for StyleALAE (e.g. FFHQ, CelebA-HQ or LSUN exported as
image files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL import ImageOps
from torch.utils.data import Dataset

__all__ = ["ImageFolderDataset", "IMAGE_EXTENSIONS", "square_image"]

#: File suffixes that are loaded (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# Modes PIL converts to "L" and "RGB" directly and without loss of meaning.
_DIRECT_MODES = ("1", "L", "P", "RGB")


def _to_8bit(image: Image.Image) -> Image.Image:
    """``image`` in a mode of 8 bits per channel (``"1"``, ``"L"``, ``"P"`` or ``"RGB"``).

    Alpha is dropped (not composited onto a background), CMYK and other colour spaces become
    RGB, integer grayscale is scaled from 16 bits and float grayscale is clipped to 0..255.
    """
    mode = image.mode
    if (mode == "P" and "transparency" in image.info) or mode == "PA":
        # PIL warns when a palette with transparency is converted straight to RGB or L.
        image = image.convert("RGBA")
        mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # PIL's convert("L") clips these at 255 instead of scaling; "I" (32-bit) is read as
        # 16-bit data too, which is what older Pillows (and most files) give for it.
        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        return Image.fromarray(np.rint(values * (255 / 65535)).astype(np.uint8), "L")
    if mode == "F":
        values = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0, 255)
        return Image.fromarray(np.rint(values).astype(np.uint8), "L")
    if mode not in _DIRECT_MODES:
        # RGBA, LA, CMYK, YCbCr, ...: one route for all (RGBA/LA -> RGB just drops alpha).
        image = image.convert("RGB")
    return image


def square_image(image: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """Convert one decoded image to a square training image.

    Steps: apply the EXIF orientation; convert to ``"L"`` (``channels=1``) or ``"RGB"``
    (``channels=3``); centre-crop to the largest square; resize to ``resolution`` with Lanczos
    filtering (only when the side differs).

    Mode handling: an alpha channel (RGBA, LA, palette transparency) is dropped, not blended
    onto a background; CMYK is converted to RGB; 16-bit integer grayscale (``"I;16"``,
    ``"I;16B"``, and ``"I"``, read as 16-bit values and clipped to 0..65535) is scaled to 8 bits
    as ``round(value * 255 / 65535)``; float grayscale (``"F"``) is clipped to 0..255 and rounded.
    RGB to L uses PIL's ITU-R 601-2 luma.

    Args:
        image: a PIL image in any mode (already loaded, or loadable).
        resolution: output side length.
        channels: 1 (grayscale) or 3 (RGB).

    Returns:
        uint8 array ``[resolution, resolution, channels]`` (HWC).

    Raises:
        ValueError: on ``channels`` other than 1 or 3. Anything PIL raises for an unreadable
        image propagates.
    """
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    image = ImageOps.exif_transpose(image)
    image = _to_8bit(image).convert("L" if channels == 1 else "RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    array = np.array(image, dtype=np.uint8)  # [R, R] for "L", [R, R, 3] for "RGB"
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def list_image_files(root: Path) -> tuple[list[str], list[str]]:
    """The image files (by suffix, case-insensitively) and the other files below ``root``, as
    sorted relative POSIX paths: the same order on every machine, whatever the walk order and
    the OS separator. Symlinked folders are not followed (os.walk's default), which rules out
    cycles."""
    images: list[str] = []
    others: list[str] = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            relative = Path(dirpath, name).relative_to(root).as_posix()
            (images if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS else others).append(relative)
    return sorted(images), sorted(others)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class ImageFolderDataset(Dataset):
    """All images (PNG, JPEG, WebP, BMP) under a directory, centre-cropped to a square and resized.

    Files are found recursively (symlinked sub-directories are not followed, which rules out
    cycles) and sorted by their path relative to ``root``, so the index -> file mapping is the
    same on every machine and run.

    Each item is :func:`square_image` of the file: the image converted to ``"L"``
    (``channels=1``) or ``"RGB"`` (``channels=3``), centre-cropped to its largest square and
    resized to ``resolution`` with Lanczos filtering.
    Lanczos is used in both directions: it is the best-quality PIL filter for downscaling (the
    common case), and for the rare upscaled image it stays sharp; using one filter keeps the
    output a deterministic function of the file alone.

    Args:
        root: directory to search.
        resolution: output side length; a power of two ``>= 4``.
        channels: 1 (grayscale) or 3 (RGB).

    Raises:
        FileNotFoundError: if ``root`` does not exist.
        NotADirectoryError: if ``root`` is a file.
        ValueError: on a bad ``resolution`` or ``channels``, or when no image is found.

    Items: uint8 tensor ``[channels, resolution, resolution]`` (convert with
    :func:`alae_fast.data.uint8_to_float`).
    """

    def __init__(self, root: str | os.PathLike, resolution: int, channels: int = 3):
        if (
            isinstance(resolution, bool)
            or not isinstance(resolution, int)
            or resolution < 4
            or not _is_power_of_two(resolution)
        ):
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution!r}")
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        if not self.root.is_dir():
            raise NotADirectoryError(f"image folder {self.root} is not a directory")
        self.resolution = resolution
        self.channels = channels

        found = list_image_files(self.root)[0]
        if not found:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root}")
        self.paths: list[Path] = [self.root / name for name in found]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Load image ``index``.

        Returns:
            uint8 tensor ``[C, R, R]``.
        """
        with Image.open(self.paths[index]) as file:
            array = square_image(file, self.resolution, self.channels)
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, resolution={self.resolution}, "
            f"channels={self.channels}, images={len(self)})"
        )
