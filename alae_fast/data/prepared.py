"""Prepared datasets: images decoded, cropped and resized once, then read back fast.

:func:`prepare_dataset` turns a folder (or ``.zip``) of images into a directory holding

- ``images.u8`` (storage ``"raw"``): one uint8 array ``[N, C, R, R]`` (NCHW, C-contiguous), read
  through a memory map; or ``images.zip`` (storage ``"png"``): members ``00000000.png``, ... one
  lossless PNG per image, for when disk space matters more than read speed;
- ``dataset.json``: the manifest (shape, source, the kept / skipped / ignored file names). It is
  written last and atomically, so its presence means the directory is complete.

:class:`PreparedDataset` reads such a directory. Item ``i`` equals ``ImageFolderDataset`` item
``i`` of the same source bit for bit when no file was skipped (both use :func:`square_image`).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import operator
import os
import sys
import time
import zipfile
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from .. import __version__
from .image_folder import IMAGE_EXTENSIONS
from .image_folder import list_image_files
from .image_folder import square_image

__all__ = [
    "PreparedDataset",
    "PrepareReport",
    "prepare_dataset",
    "is_prepared",
    "collate_uint8",
    "MANIFEST_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "STORAGES",
]

#: File name of the manifest inside a prepared directory.
MANIFEST_NAME = "dataset.json"
#: Value of the manifest's "format" field.
FORMAT = "alae_fast.prepared"
#: Version of the on-disk format written by this module; readers accept this one and older.
FORMAT_VERSION = 1
#: Storage kinds: one raw uint8 array, or a zip of PNG files.
STORAGES: tuple[str, ...] = ("raw", "png")
#: Data file name per storage kind.
DATA_FILES = {"raw": "images.u8", "png": "images.zip"}

# Members of zip sources that are macOS metadata, never images.
_ZIP_METADATA_PREFIX = "__MACOSX/"
# At most this many skipped files are named in the log line (all are in the manifest).
_LOG_SKIPPED_LIMIT = 50


def is_prepared(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete prepared dataset (its manifest exists)."""
    return (Path(path).expanduser() / MANIFEST_NAME).is_file()


def collate_uint8(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """``collate_fn`` for a DataLoader over a :class:`PreparedDataset` with a ``batch_sampler``.

    The DataLoader calls :meth:`PreparedDataset.__getitems__` (already one batch tensor) and
    then ``collate_fn``; this passes such a tensor through and stacks a list of items.

    Returns:
        uint8 tensor ``[B, C, R, R]``.
    """
    if isinstance(batch, torch.Tensor):
        return batch
    return torch.stack(list(batch))


@dataclass
class PrepareReport:
    """What :func:`prepare_dataset` did.

    Attributes:
        dst: the prepared directory.
        count: number of images written.
        skipped: ``(file, "ExcType: message")`` for each unreadable image file.
        ignored: files without an image suffix (not tried).
        seconds: wall time of the preparation.
    """

    dst: Path
    count: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ----------------------------------------------------------------------------- writer


def _list_zip(src: Path) -> tuple[list[str], list[str]]:
    """Image candidates and ignored members of the zip ``src``, sorted by name."""
    candidates: list[str] = []
    ignored: list[str] = []
    with zipfile.ZipFile(src) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            is_image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            (candidates if is_image and not name.startswith(_ZIP_METADATA_PREFIX) else ignored).append(name)
    return sorted(candidates), sorted(ignored)


class _Loader:
    """Opens one candidate and converts it; one per process (the zip is opened per process)."""

    def __init__(self, src: str, is_zip: bool, resolution: int, channels: int, storage: str):
        self.src = src
        self.is_zip = is_zip
        self.resolution = resolution
        self.channels = channels
        self.storage = storage
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = -1

    def _open(self, name: str) -> Image.Image:
        if not self.is_zip:
            return Image.open(os.path.join(self.src, name))
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.src)
            self._zip_pid = os.getpid()
        # Read the member whole: PIL may seek, and zip member streams seek slowly.
        return Image.open(io.BytesIO(self._zip.read(name)))

    def __call__(self, name: str) -> tuple[np.ndarray | bytes | None, str | None]:
        """Returns ``(data, None)`` or ``(None, "ExcType: message")``.

        ``data`` is the uint8 array ``[C, R, R]`` (storage "raw") or PNG bytes (storage "png",
        encoded here so that pool workers share the work).
        """
        try:
            with self._open(name) as image:
                image.load()
                array = square_image(image, self.resolution, self.channels)
            if self.storage == "png":
                buffer = io.BytesIO()
                Image.fromarray(array[:, :, 0] if self.channels == 1 else array).save(buffer, "PNG")
                return buffer.getvalue(), None
            return np.ascontiguousarray(array.transpose(2, 0, 1)), None
        except Exception as error:  # any failure of one file skips that file, never the run
            return None, f"{type(error).__name__}: {error}"


# The loader of a pool worker process, set by _init_worker.
_WORKER_LOADER: _Loader | None = None


def _init_worker(src: str, is_zip: bool, resolution: int, channels: int, storage: str) -> None:
    global _WORKER_LOADER
    _WORKER_LOADER = _Loader(src, is_zip, resolution, channels, storage)


def _work(name: str) -> tuple[np.ndarray | bytes | None, str | None]:
    assert _WORKER_LOADER is not None, "_init_worker did not run"
    return _WORKER_LOADER(name)


def _check_arguments(resolution: Any, channels: Any, workers: Any, storage: Any) -> None:
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, int)
        or resolution < 4
        or resolution & (resolution - 1) != 0
    ):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution!r}")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(map(repr, STORAGES))}, got {storage!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0 (0: in this process), got {workers!r}")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def prepare_dataset(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    resolution: int,
    channels: int = 3,
    workers: int = 0,
    storage: str = "raw",
    progress: bool = True,
    overwrite: bool = False,
    log: Callable[[str], Any] = print,
) -> PrepareReport:
    """Decode, centre-crop and resize every image of ``src`` once, into the directory ``dst``.

    Candidates are the files whose suffix is in ``IMAGE_EXTENSIONS`` (case-insensitively), in the
    order of their relative POSIX paths (as :class:`~alae_fast.data.ImageFolderDataset`); other
    files are ignored. Each candidate goes through :func:`square_image`; a file that fails in any
    way (corrupt, truncated, unsupported, a decompression bomb) is skipped and recorded.

    Args:
        src: a folder of images (searched recursively, symlinked folders not followed) or a
            ``.zip`` file of them.
        dst: output directory, created if missing.
        resolution: output side length; a power of two ``>= 4``.
        channels: 1 (grayscale) or 3 (RGB).
        workers: 0 decodes in this process; ``N > 0`` uses a pool of N processes.
        storage: ``"raw"`` (``images.u8``, uint8 ``[N, C, R, R]``: fastest to read) or ``"png"``
            (``images.zip`` of PNG files: smaller).
        progress: show a progress bar on stderr.
        overwrite: replace a prepared dataset already in ``dst``.
        log: receives the summary line and the skipped-files line.

    Returns:
        a :class:`PrepareReport`.

    Raises:
        FileNotFoundError: if ``src`` does not exist.
        FileExistsError: if ``dst`` is already prepared and ``overwrite`` is false.
        NotADirectoryError: if ``dst`` is a file.
        ValueError: on a bad argument, a ``src`` file that is not a ``.zip``, or when no image
            could be read.
    """
    start = time.perf_counter()
    _check_arguments(resolution, channels, workers, storage)
    src_path = Path(src).expanduser().absolute()
    dst_path = Path(dst).expanduser()
    if not src_path.exists():
        raise FileNotFoundError(f"image source {src_path} does not exist")
    is_zip = src_path.is_file()
    if is_zip and src_path.suffix.lower() != ".zip":
        raise ValueError(f"image source {src_path} must be a folder or a .zip file")
    if dst_path.exists() and not dst_path.is_dir():
        raise NotADirectoryError(f"output {dst_path} is a file, not a directory")
    manifest_path = dst_path / MANIFEST_NAME
    if manifest_path.exists() and not overwrite:
        raise FileExistsError(
            f"{dst_path} already holds a prepared dataset; pass overwrite=True (--overwrite) to replace it"
        )
    candidates, ignored = _list_zip(src_path) if is_zip else list_image_files(src_path)
    if not candidates:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {src_path}")
    # The old manifest goes first: an interrupted rerun must not look complete.
    _remove(manifest_path)
    for name in DATA_FILES.values():
        _remove(dst_path / name)
    dst_path.mkdir(parents=True, exist_ok=True)

    data_path = dst_path / DATA_FILES[storage]
    tmp_path = data_path.with_name(data_path.name + ".tmp")
    sample = channels * resolution * resolution
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    try:
        results: Iterator[tuple[np.ndarray | bytes | None, str | None]]
        loader_args = (str(src_path), is_zip, resolution, channels, storage)
        pool = None
        bar = tqdm(total=len(candidates), disable=not progress, file=sys.stderr, unit="img", desc="prepare")
        try:
            if workers > 0:
                # Top-level worker functions and picklable arguments: works with fork and spawn.
                pool = multiprocessing.get_context().Pool(workers, initializer=_init_worker, initargs=loader_args)
                results = pool.imap(_work, candidates, chunksize=8)  # in order
            else:
                results = map(_Loader(*loader_args), candidates)
            if storage == "raw":
                # Preallocated for every candidate; cut to the kept count at the end.
                shape = (len(candidates), channels, resolution, resolution)
                images = np.memmap(tmp_path, dtype=np.uint8, mode="w+", shape=shape)
                for name, (data, error) in zip(candidates, results):
                    if data is None:
                        skipped.append((name, str(error)))
                    else:
                        images[len(kept)] = data
                        kept.append(name)
                    bar.update()
                images.flush()
                del images
                os.truncate(tmp_path, len(kept) * sample)
            else:
                # PNG is compressed already: deflate would spend time for nothing.
                with zipfile.ZipFile(tmp_path, "w", compression=zipfile.ZIP_STORED) as archive:
                    for name, (data, error) in zip(candidates, results):
                        if data is None:
                            skipped.append((name, str(error)))
                        else:
                            assert isinstance(data, bytes)
                            archive.writestr(f"{len(kept):08d}.png", data)
                            kept.append(name)
                        bar.update()
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()  # every result is read by now, or the run failed
                pool.join()
        if not kept:
            raise ValueError(
                f"no readable image in {src_path}: all {len(skipped)} image files were skipped "
                f"(first: {skipped[0][0]}: {skipped[0][1]})"
            )
        os.replace(tmp_path, data_path)
    finally:
        _remove(tmp_path)

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "storage": storage,
        "count": len(kept),
        "resolution": resolution,
        "channels": channels,
        "dtype": "uint8",
        "layout": "NCHW",
        "source": str(src_path),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "alae_fast_version": __version__,
        "files": kept,
        "skipped": [{"file": name, "error": error} for name, error in skipped],
        "ignored": ignored,
    }
    manifest_tmp = manifest_path.with_name(MANIFEST_NAME + ".tmp")
    manifest_tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(manifest_tmp, manifest_path)

    seconds = time.perf_counter() - start
    log(
        f"prepared {len(kept)} images ({resolution}x{resolution}, {channels} channels, {storage}) "
        f"from {src_path} into {dst_path} in {seconds:.1f} s"
    )
    if skipped:
        named = ", ".join(f"{name} ({error})" for name, error in skipped[:_LOG_SKIPPED_LIMIT])
        more = len(skipped) - _LOG_SKIPPED_LIMIT
        tail = f", and {more} more (all are listed in {manifest_path})" if more > 0 else ""
        log(f"skipped {len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''}: {named}{tail}")
    return PrepareReport(dst=dst_path, count=len(kept), skipped=skipped, ignored=ignored, seconds=seconds)


# ----------------------------------------------------------------------------- reader


class PreparedDataset(Dataset):
    """A directory written by :func:`prepare_dataset`.

    File handles (the memory map or the zip) are opened on first use and again in every new
    process, so the dataset pickles and works in DataLoader workers (fork or spawn).

    Args:
        path: the prepared directory.
        resolution: if given, the resolution the caller expects (checked against the manifest).
        channels: if given, the channel count the caller expects (checked likewise).

    Raises:
        FileNotFoundError: if ``path`` has no manifest or its data file is missing.
        ValueError: on a manifest of another format or a newer version, a resolution or channel
            count other than the expected one, or a data file of the wrong size.

    Items: uint8 tensor ``[C, R, R]``; :meth:`__getitems__` gives a batch ``[B, C, R, R]``.
    """

    def __init__(self, path: str | os.PathLike, resolution: int | None = None, channels: int | None = None):
        self._root = Path(path).expanduser()
        manifest_path = self._root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{self._root} is not a prepared dataset (no {MANIFEST_NAME}); create it with prepare_dataset"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{manifest_path} is not valid JSON: {error}") from error
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise ValueError(f"{manifest_path} is not an {FORMAT} manifest (format: {found!r})")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"{manifest_path} has an invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise ValueError(
                f"prepared dataset {self._root} was made by a newer alae_fast (format_version {version}, "
                f"this version reads up to {FORMAT_VERSION}); upgrade alae_fast or prepare it again"
            )
        storage, count = manifest.get("storage"), manifest.get("count")
        stored_resolution, stored_channels = manifest.get("resolution"), manifest.get("channels")
        if (
            storage not in STORAGES
            or not isinstance(count, int)
            or count < 0
            or not isinstance(stored_resolution, int)
            or stored_resolution < 1
            or stored_channels not in (1, 3)
            or manifest.get("dtype") != "uint8"
            or manifest.get("layout") != "NCHW"
        ):
            raise ValueError(f"{manifest_path} is damaged: bad storage, count, resolution, channels, dtype or layout")
        self._storage: str = storage
        self._count: int = count
        self._resolution: int = stored_resolution
        self._channels: int = int(stored_channels)
        for name, value, expected, key in (
            ("resolution", self._resolution, resolution, "data.resolution"),
            ("channels", self._channels, channels, "model.channels"),
        ):
            if expected is not None and value != expected:
                raise ValueError(
                    f"prepared dataset {self._root} has {name} {value}, but {expected} was expected ({key}); "
                    f"prepare it again with --{name} {expected}"
                )
        self._manifest: dict[str, Any] = manifest
        self._data_path = self._root / DATA_FILES[self._storage]
        if not self._data_path.is_file():
            raise FileNotFoundError(f"prepared dataset {self._root} lacks its data file {self._data_path.name}")
        if self._storage == "raw":
            expected_size = self._count * self._channels * self._resolution**2
            size = self._data_path.stat().st_size
            if size != expected_size:
                raise ValueError(
                    f"{self._data_path.name} is truncated or damaged in {self._root}: {size} bytes, but "
                    f"{self._count} images of {self._channels}x{self._resolution}x{self._resolution} need "
                    f"{expected_size}; prepare it again"
                )
        self._pid = -1
        self._images: np.memmap | None = None
        self._zip: zipfile.ZipFile | None = None

    @property
    def root(self) -> Path:
        return self._root

    @property
    def resolution(self) -> int:
        return self._resolution

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def storage(self) -> str:
        return self._storage

    @property
    def manifest(self) -> dict[str, Any]:
        """The parsed ``dataset.json`` (shared, not a copy)."""
        return self._manifest

    def __len__(self) -> int:
        return self._count

    def _index(self, index: int) -> int:
        index = operator.index(index)
        if not -self._count <= index < self._count:
            raise IndexError(f"index {index} is out of range for {self._count} images")
        return index % self._count

    def _open(self) -> None:
        """(Re)open the data file in this process."""
        if self._pid == os.getpid():
            return
        self._images = None
        self._zip = None
        if self._storage == "raw":
            if self._count:  # np.memmap cannot map an empty file
                shape = (self._count, self._channels, self._resolution, self._resolution)
                self._images = np.memmap(self._data_path, dtype=np.uint8, mode="r", shape=shape)
        else:
            self._zip = zipfile.ZipFile(self._data_path)
        self._pid = os.getpid()

    def _decode(self, index: int) -> torch.Tensor:
        assert self._zip is not None
        with Image.open(io.BytesIO(self._zip.read(f"{index:08d}.png"))) as image:
            array = np.asarray(image)
        r, c = self._resolution, self._channels
        if array.dtype != np.uint8 or array.shape != ((r, r) if c == 1 else (r, r, 3)):
            raise ValueError(f"image {index} of {self._data_path} has shape {array.shape}, expected {r}x{r}x{c}")
        array = array.reshape(r, r, c)
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    def __getitem__(self, index: int) -> torch.Tensor:
        """Image ``index`` (negative counts from the end).

        Returns:
            uint8 tensor ``[C, R, R]``.

        Raises:
            IndexError: if ``index`` is out of range.
        """
        index = self._index(index)
        self._open()
        if self._images is not None:
            return torch.from_numpy(np.array(self._images[index]))
        return self._decode(index)

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        """Images ``indices`` in one read (for raw storage, one fancy index of the memory map).

        Returns:
            uint8 tensor ``[len(indices), C, R, R]``, in the order of ``indices``.

        Raises:
            IndexError: if an index is out of range.
        """
        positions = [self._index(i) for i in indices]
        self._open()
        if not positions:
            return torch.empty(0, self._channels, self._resolution, self._resolution, dtype=torch.uint8)
        if self._images is not None:
            return torch.from_numpy(self._images[np.asarray(positions, dtype=np.int64)])
        return torch.stack([self._decode(i) for i in positions])

    def __getstate__(self) -> dict[str, Any]:
        # Handles stay behind: the receiving process opens its own.
        state = self.__dict__.copy()
        state.update(_pid=-1, _images=None, _zip=None)
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self._root)!r}, resolution={self._resolution}, "
            f"channels={self._channels}, storage={self._storage!r}, images={len(self)})"
        )
