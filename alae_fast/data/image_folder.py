"""A generic folder-of-images dataset for StyleALAE (e.g. FFHQ, CelebA-HQ or LSUN exported as
image files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

__all__ = ["ImageFolderDataset", "IMAGE_EXTENSIONS"]

#: File suffixes that are loaded (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class ImageFolderDataset(Dataset):
    """All PNG/JPEG images under a directory, centre-cropped to a square and resized.

    Files are found recursively (symlinked sub-directories are not followed, which rules out
    cycles) and sorted by their path relative to ``root``, so the index -> file mapping is the
    same on every machine and run.

    Each item is the image converted to ``"L"`` (``channels=1``) or ``"RGB"`` (``channels=3``),
    centre-cropped to its largest square and resized to ``resolution`` with Lanczos filtering.
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
        self._mode = "L" if channels == 1 else "RGB"

        found = []
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(Path(dirpath, name))
        # Sort on the relative POSIX path: independent of the walk order and of the OS separator.
        found.sort(key=lambda p: p.relative_to(self.root).as_posix())
        if not found:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root}")
        self.paths: list[Path] = found

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Load image ``index``.

        Returns:
            uint8 tensor ``[C, R, R]``.
        """
        with Image.open(self.paths[index]) as file:
            image = file.convert(self._mode)
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        if side != self.resolution:
            image = image.resize((self.resolution, self.resolution), Image.Resampling.LANCZOS)
        array = np.array(image, dtype=np.uint8)  # [R, R] for "L", [R, R, 3] for "RGB"
        if array.ndim == 2:
            array = array[:, :, None]
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, resolution={self.resolution}, "
            f"channels={self.channels}, images={len(self)})"
        )
