"""MNIST reader for the original IDX files (LeCun et al.), with lookup, optional download and
integrity checks.

Files are looked up in this order (see :func:`find_mnist_dir`):

1. an explicit ``data`` directory (the ``--data PATH`` command-line option);
2. the ``ALAE_FAST_DATA`` environment variable;
3. the cache directory ``$XDG_CACHE_HOME/alae_fast/mnist`` (default ``~/.cache/alae_fast/mnist``),
   where the files are downloaded when none of the above holds them.

Each file may be gzip-compressed (the original ``*.gz``) or uncompressed (same name without
``.gz``); the compressed one is preferred when both exist. Integrity checks:

* ``.gz`` files: the md5 of the file must equal the published md5 (:data:`MNIST_FILES`);
* uncompressed files: only the md5 of ``train-images-idx3-ubyte`` is known to us, so it is
  checked for that file; for the other three the md5 is skipped.
* every file, after decompression: the IDX header (magic 2051 for images / 2049 for labels,
  the expected count, 28x28) and the exact payload size are validated. This catches truncated
  or mixed-up files even where no md5 is available.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import os
import random
import struct
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from ..utils.files import atomic_write
from .transforms import downsample_to
from .transforms import pad_to
from .transforms import uint8_to_float

__all__ = [
    "MNIST_FILES",
    "MNISTDataError",
    "SAME_WRITERS_TRAIN",
    "find_mnist_dir",
    "load_mnist",
    "load_mnist_split",
    "mnist_images",
    "same_writers_order",
]

#: Original file names -> published md5 of the gzip file.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# md5 of the uncompressed files that we know; the others are validated by header and size only.
_RAW_MD5: dict[str, str] = {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb"}

_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
_SIDE = 28

# Uncompressed base name -> (IDX magic, expected item count).
_IDX_SPECS: dict[str, tuple[int, int]] = {
    "train-images-idx3-ubyte": (_IMAGES_MAGIC, 60000),
    "train-labels-idx1-ubyte": (_LABELS_MAGIC, 60000),
    "t10k-images-idx3-ubyte": (_IMAGES_MAGIC, 10000),
    "t10k-labels-idx1-ubyte": (_LABELS_MAGIC, 10000),
}

# split -> (images base name, labels base name)
_SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_ALLOWED_RESOLUTIONS = (4, 8, 16, 28, 32)

# Canonical mirrors of the original files (yann.lecun.com itself is no longer reliable).
_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_DOWNLOAD_TIMEOUT_S = 10.0

_ENV_VAR = "ALAE_FAST_DATA"


class MNISTDataError(RuntimeError):
    """MNIST files are missing, corrupt or could not be downloaded."""


def _base(name: str) -> str:
    return name[:-3] if name.endswith(".gz") else name


def _cache_dir() -> Path:
    """``$XDG_CACHE_HOME/alae_fast/mnist``, or ``~/.cache/alae_fast/mnist`` when unset/empty."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "alae_fast" / "mnist"


def _locate(directory: Path, base: str) -> Path | None:
    """Path of ``base`` in ``directory`` (``.gz`` preferred over uncompressed), or None."""
    for candidate in (directory / f"{base}.gz", directory / base):
        if candidate.is_file():
            return candidate
    return None


def _require(directory: Path, base: str) -> Path:
    """:func:`_locate`, for a directory :func:`find_mnist_dir` accepted (it may change since)."""
    path = _locate(directory, base)
    if path is None:
        raise MNISTDataError(f"{directory} no longer holds {base}.gz or {base}")
    return path


def _missing(directory: Path) -> list[str]:
    """The ``.gz`` names (of :data:`MNIST_FILES`) that ``directory`` holds in neither form."""
    if not directory.is_dir():
        return list(MNIST_FILES)
    return [name for name in MNIST_FILES if _locate(directory, _base(name)) is None]


def _describe_missing(names: list[str]) -> str:
    return ", ".join(f"{n} (or uncompressed {_base(n)})" for n in names)


def _md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


def _download(directory: Path, timeout: float = _DOWNLOAD_TIMEOUT_S) -> None:
    """Download the missing ``.gz`` files into ``directory``, verifying their md5.

    Each file is written to a temporary file in the same directory and moved into place with
    ``os.replace``, so an interrupted download never leaves a partial file under the real name.

    Raises:
        MNISTDataError: if any file could not be fetched from any mirror.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name in _missing(directory):
        errors = []
        for mirror in _MIRRORS:
            url = mirror + name
            try:
                # timeout applies per socket operation: an offline machine fails fast.
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
            except (OSError, ValueError, http.client.HTTPException) as exc:
                errors.append(f"{url}: {exc}")
                continue
            actual = _md5(payload)
            if actual != MNIST_FILES[name]:
                errors.append(f"{url}: md5 {actual}, expected {MNIST_FILES[name]}")
                continue
            with atomic_write(directory / name) as f:
                f.write(payload)
            break
        else:
            raise MNISTDataError(f"could not download {name}: " + "; ".join(errors))


def find_mnist_dir(data: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Find (or download) a directory holding the four MNIST files.

    Lookup order: the explicit ``data`` argument, then the ``ALAE_FAST_DATA`` environment
    variable, then the cache directory ``$XDG_CACHE_HOME/alae_fast/mnist`` (default
    ``~/.cache/alae_fast/mnist``). A directory qualifies when it holds all four files of
    :data:`MNIST_FILES`, each gzip-compressed or uncompressed.

    An explicit ``data`` is authoritative: if it lacks files, this raises instead of looking
    elsewhere (the caller asked for that directory). ``ALAE_FAST_DATA`` is only a default: when
    it does not qualify, the cache is tried, and downloads always go to the cache, never into a
    user's data directory.

    Args:
        data: directory to use, or None to search.
        download: when no directory qualifies, download the ``.gz`` files into the cache.

    Returns:
        the qualifying directory (``data`` with ``~`` expanded when given).

    Raises:
        MNISTDataError: if ``data`` lacks files, or no directory qualifies and the download is
            disabled or fails. The message names the expected files, the directories searched
            and how to point at the data.
    """
    if data is not None:
        directory = Path(data).expanduser()
        if not directory.is_dir():
            raise MNISTDataError(
                f"MNIST data directory {directory} does not exist (expected it to hold {', '.join(MNIST_FILES)})"
            )
        missing = _missing(directory)
        if missing:
            raise MNISTDataError(f"MNIST data directory {directory} is missing {_describe_missing(missing)}")
        return directory

    searched: list[tuple[Path, str]] = []
    env = os.environ.get(_ENV_VAR)
    if env:
        searched.append((Path(env).expanduser(), f"${_ENV_VAR}"))
    cache = _cache_dir()
    searched.append((cache, "cache"))
    for directory, _ in searched:
        if directory.is_dir() and not _missing(directory):
            return directory

    if download:
        try:
            _download(cache)
            return cache
        except (MNISTDataError, OSError) as exc:
            outcome = f"Download into {cache} failed: {exc}"
    else:
        outcome = "Download is disabled (download=False)."

    lines = ["MNIST data not found. Expected these four files (gzip, or uncompressed without the .gz suffix):"]
    lines += [f"  {name}" for name in MNIST_FILES]
    lines.append("Directories searched:")
    for directory, origin in searched:
        state = "does not exist" if not directory.is_dir() else "missing " + ", ".join(_missing(directory))
        lines.append(f"  {directory} ({origin}): {state}")
    lines.append(outcome)
    lines.append(f"Point at a directory holding them with --data PATH or the {_ENV_VAR} environment variable.")
    raise MNISTDataError("\n".join(lines))


def _parse_idx(path: Path) -> np.ndarray:
    """Read, verify and parse one IDX file (``.gz`` or uncompressed).

    Returns:
        read-only uint8 array: ``[N, 28, 28]`` for image files, ``[N]`` for label files.

    Raises:
        MNISTDataError: on an md5 mismatch, a broken gzip stream or an invalid header/size.
    """
    payload = path.read_bytes()
    compressed = path.name.endswith(".gz")
    base = _base(path.name)
    expected_md5 = MNIST_FILES.get(path.name) if compressed else _RAW_MD5.get(path.name)
    if expected_md5 is not None:
        actual = _md5(payload)
        if actual != expected_md5:
            raise MNISTDataError(
                f"{path}: md5 mismatch (expected {expected_md5}, got {actual}); "
                "the file is corrupt or not the original MNIST file"
            )
    if compressed:
        try:
            payload = gzip.decompress(payload)
        except (OSError, EOFError, zlib.error) as exc:
            raise MNISTDataError(f"{path}: not a valid gzip file ({exc})") from exc

    magic, count = _IDX_SPECS[base]
    header_size = 16 if magic == _IMAGES_MAGIC else 8
    item_size = _SIDE * _SIDE if magic == _IMAGES_MAGIC else 1
    if len(payload) < header_size:
        raise MNISTDataError(f"{path}: too short for an IDX header ({len(payload)} bytes)")
    header = struct.unpack(f">{header_size // 4}i", payload[:header_size])  # IDX is big-endian
    if header[0] != magic:
        raise MNISTDataError(f"{path}: IDX magic {header[0]}, expected {magic}")
    if header[1] != count:
        raise MNISTDataError(f"{path}: header says {header[1]} items, expected {count}")
    if magic == _IMAGES_MAGIC and header[2:] != (_SIDE, _SIDE):
        raise MNISTDataError(f"{path}: images are {header[2]}x{header[3]}, expected 28x28")
    expected_size = header_size + count * item_size
    if len(payload) != expected_size:
        raise MNISTDataError(f"{path}: {len(payload)} bytes after decompression, expected {expected_size}")

    array = np.frombuffer(payload, dtype=np.uint8, offset=header_size)
    if magic == _IMAGES_MAGIC:
        array = array.reshape(count, _SIDE, _SIDE)
    elif array.max() > 9:
        raise MNISTDataError(f"{path}: label {int(array.max())} outside 0..9")
    return array  # frombuffer over bytes: already read-only, safe to share from the cache


@functools.lru_cache(maxsize=8)
def _parse_cached(resolved: str, mtime_ns: int, size: int) -> np.ndarray:
    # Keyed on the resolved path (symlinks to one file share an entry); mtime and size are part
    # of the key so that a file replaced on disk is re-read and re-verified.
    return _parse_idx(Path(resolved))


def _read(path: Path) -> np.ndarray:
    resolved = path.resolve()
    stat = resolved.stat()
    return _parse_cached(str(resolved), stat.st_mtime_ns, stat.st_size)


def load_mnist(
    split: str, data: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one MNIST split.

    Parsed files are cached in memory (per resolved path), so repeated loads only copy.

    Args:
        split: ``"train"`` (60000 images) or ``"test"`` (10000 images).
        data: directory holding the files, or None to search (see :func:`find_mnist_dir`).
        download: allow downloading into the cache when no directory holds the files.

    Returns:
        ``(images, labels)``: uint8 ``[N, 28, 28]`` (0 = background) and int64 ``[N]`` in 0..9.
        Both are fresh tensors that the caller may modify.

    Raises:
        ValueError: if ``split`` is not ``"train"`` or ``"test"``.
        MNISTDataError: if the files are missing or corrupt.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    directory = find_mnist_dir(data, download=download)
    images_base, labels_base = _SPLITS[split]
    images = _read(_require(directory, images_base))
    labels = _read(_require(directory, labels_base))
    # Copy: the cached arrays are shared and read-only.
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def mnist_images(
    split: str, data: str | os.PathLike | None = None, *, resolution: int = 32, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images as network input: float in ``[-1, 1]`` at a given resolution.

    Resolution 28 is the native size. 32 zero-pads 2 pixels on each side in uint8 space, so
    the border is background (-1), as in the official ALAE MNIST preparation. 16, 8 and 4 are
    the 32x32 images average-pooled by 2 repeatedly.

    Args:
        split: ``"train"`` or ``"test"``.
        data: directory holding the files, or None to search (see :func:`find_mnist_dir`).
        resolution: one of 4, 8, 16, 28, 32.
        download: allow downloading into the cache when no directory holds the files.

    Returns:
        ``(x, labels)``: float32 ``[N, 1, R, R]`` in ``[-1, 1]`` and int64 ``[N]``.

    Raises:
        ValueError: on a bad ``split`` or ``resolution``.
        MNISTDataError: if the files are missing or corrupt.
    """
    if isinstance(resolution, bool) or resolution not in _ALLOWED_RESOLUTIONS:
        raise ValueError(f"resolution must be one of {_ALLOWED_RESOLUTIONS}, got {resolution!r}")
    images, labels = load_mnist(split, data, download=download)
    if resolution == _SIDE:
        return uint8_to_float(images).unsqueeze(1), labels
    x = uint8_to_float(pad_to(images, 32)).unsqueeze(1)
    return downsample_to(x, resolution), labels


#: Size of the training part of the same-writers split (the official ``mnist_ref`` split).
SAME_WRITERS_TRAIN = 50000


def same_writers_order() -> torch.Tensor:
    """The official ``mnist_ref`` order of the 60000 training images: python's
    ``random.seed(0); random.shuffle`` of their indices in file order (the global ``random``
    state is left alone). The first :data:`SAME_WRITERS_TRAIN` are its training set, the other
    10000 its test set."""
    order = list(range(60000))
    random.Random(0).shuffle(order)
    return torch.tensor(order, dtype=torch.int64)


def load_mnist_split(
    split: str, part: str, data: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """One side of a train/test split of MNIST, as :func:`load_mnist` returns it (uint8
    ``[N, 28, 28]``, int64 labels).

    Args:
        split: ``"different-writers"`` (the standard files: 60000 train, 10000 test) or
            ``"same-writers"`` (the 60000 training images in :func:`same_writers_order`: the
            first 50000 train, the last 10000 test).
        part: ``"train"`` or ``"test"``.
    """
    if part not in _SPLITS:
        raise ValueError(f"part must be one of {sorted(_SPLITS)}, got {part!r}")
    if split == "different-writers":
        return load_mnist(part, data, download=download)
    if split != "same-writers":
        raise ValueError(f"split must be 'different-writers' or 'same-writers', got {split!r}")
    images, labels = load_mnist("train", data, download=download)
    order = same_writers_order()
    idx = order[:SAME_WRITERS_TRAIN] if part == "train" else order[SAME_WRITERS_TRAIN:]
    return images[idx], labels[idx]
