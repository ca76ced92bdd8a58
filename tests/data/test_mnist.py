"""Tests of the MNIST reader and the shared transforms, against the real MNIST files in
``shared/data/mnist`` and against published facts about them (sizes, first labels, class counts).

Nothing here touches the network: lookups use ``download=False``, and the download test serves
the files from a ``file://`` mirror.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
import torch

from alae_fast.data import MNIST_FILES
from alae_fast.data import MNISTDataError
from alae_fast.data import downsample_to
from alae_fast.data import find_mnist_dir
from alae_fast.data import load_mnist
from alae_fast.data import mnist as mnist_module
from alae_fast.data import mnist_images
from alae_fast.data import pad_to
from alae_fast.data import uint8_to_float

MNIST_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"

# Published class counts of MNIST.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Keep the user's env var and cache out of every test."""
    monkeypatch.delenv("ALAE_FAST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))


def _link_all(directory: Path, skip: tuple[str, ...] = ()) -> Path:
    """Fill ``directory`` with symlinks to the real ``.gz`` files (except ``skip``)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        if name not in skip:
            (directory / name).symlink_to(MNIST_DIR / name)
    return directory


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------
# Content


def test_shared_data_path():
    # <checkout>/tests/data/test_mnist.py -> <checkout>/../shared/data/mnist
    assert MNIST_DIR.parts[-3:] == ("shared", "data", "mnist")
    assert set(MNIST_FILES) <= set(os.listdir(MNIST_DIR))


def test_train_split():
    images, labels = load_mnist("train", MNIST_DIR, download=False)
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert labels[0].item() == 5
    counts = torch.bincount(labels, minlength=10)
    assert counts.sum().item() == 60000
    assert counts[1].item() == 6742
    assert counts.tolist() == TRAIN_COUNTS
    assert images.min().item() == 0 and images.max().item() == 255
    # Background: the corners of every digit are empty.
    assert images[:, 0, 0].max().item() == 0


def test_test_split():
    images, labels = load_mnist("test", MNIST_DIR, download=False)
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.int64
    assert labels[:3].tolist() == [7, 2, 1]
    assert torch.bincount(labels, minlength=10).tolist() == TEST_COUNTS


def test_returned_tensors_are_private_copies():
    images, labels = load_mnist("test", MNIST_DIR, download=False)
    images.zero_()
    labels.fill_(3)
    images2, labels2 = load_mnist("test", MNIST_DIR, download=False)
    assert images2.max().item() == 255 and labels2[0].item() == 7


def test_mnist_images_native_and_padded():
    images, labels = load_mnist("test", MNIST_DIR, download=False)
    x28, y28 = mnist_images("test", MNIST_DIR, resolution=28, download=False)
    x32, y32 = mnist_images("test", MNIST_DIR, resolution=32, download=False)
    assert x28.shape == (10000, 1, 28, 28) and x28.dtype == torch.float32
    assert x32.shape == (10000, 1, 32, 32) and x32.dtype == torch.float32
    assert torch.equal(y28, labels) and torch.equal(y32, labels)
    # 0 -> -1, 255 -> 1, linear in between.
    assert x28.min().item() == -1.0 and x28.max().item() == 1.0
    expected = images.double().div(127.5).sub(1).float()
    assert torch.allclose(x28[:, 0], expected, atol=1e-6, rtol=0)
    # 2-pixel background border on each side, then the native image in the centre.
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (x32[:, 0][:, border] == -1.0).all()
    assert torch.equal(x32[:, :, 2:30, 2:30], x28)


def test_mnist_images_lower_resolutions_are_box_filtered():
    x32, _ = mnist_images("test", MNIST_DIR, resolution=32, download=False)
    x16, _ = mnist_images("test", MNIST_DIR, resolution=16, download=False)
    x4, _ = mnist_images("test", MNIST_DIR, resolution=4, download=False)
    n = x32.shape[0]
    expected16 = x32.reshape(n, 1, 16, 2, 16, 2).mean(dim=(3, 5))
    assert x16.shape == (n, 1, 16, 16)
    assert torch.allclose(x16, expected16, atol=1e-6)
    expected4 = x32.reshape(n, 1, 4, 8, 4, 8).mean(dim=(3, 5))
    assert x4.shape == (n, 1, 4, 4)
    assert torch.allclose(x4, expected4, atol=1e-5)


@pytest.mark.parametrize("split", ["val", "TRAIN", ""])
def test_bad_split(split):
    with pytest.raises(ValueError, match="split"):
        load_mnist(split, MNIST_DIR, download=False)
    with pytest.raises(ValueError, match="split"):
        mnist_images(split, MNIST_DIR, download=False)


@pytest.mark.parametrize("resolution", [2, 12, 24, 64, 0, True])
def test_bad_resolution(resolution):
    with pytest.raises(ValueError, match="resolution") as info:
        mnist_images("test", MNIST_DIR, resolution=resolution, download=False)
    assert "28" in str(info.value) and "32" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Lookup


def test_lookup_order(tmp_path, monkeypatch):
    explicit = _link_all(tmp_path / "explicit")
    from_env = _link_all(tmp_path / "env")
    cache = _link_all(tmp_path / "xdg" / "alae_fast" / "mnist")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("ALAE_FAST_DATA", str(from_env))

    assert find_mnist_dir(explicit, download=False) == explicit
    assert find_mnist_dir(str(explicit), download=False) == explicit
    assert find_mnist_dir(download=False) == from_env
    monkeypatch.delenv("ALAE_FAST_DATA")
    assert find_mnist_dir(download=False) == cache
    # An env var pointing at an incomplete directory falls back to the cache.
    monkeypatch.setenv("ALAE_FAST_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert find_mnist_dir(download=False) == cache


def test_default_cache_is_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = _link_all(tmp_path / ".cache" / "alae_fast" / "mnist")
    assert find_mnist_dir(download=False) == cache
    images, labels = load_mnist("test", download=False)
    assert images.shape == (10000, 28, 28) and labels[0].item() == 7


def test_nothing_found_error_names_files_dirs_and_hints(tmp_path, monkeypatch):
    monkeypatch.setenv("ALAE_FAST_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(MNISTDataError) as info:
        load_mnist("train", download=False)
    message = str(info.value)
    for name in MNIST_FILES:
        assert name in message
    assert str(tmp_path / "nowhere") in message
    assert str(tmp_path / "no-cache" / "alae_fast" / "mnist") in message
    assert "--data" in message and "ALAE_FAST_DATA" in message


def test_explicit_dir_missing_files_is_not_bypassed(tmp_path, monkeypatch):
    partial = _link_all(tmp_path / "partial", skip=("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"))
    # A complete env dir must not be used silently when an explicit path was given.
    monkeypatch.setenv("ALAE_FAST_DATA", str(MNIST_DIR))
    with pytest.raises(MNISTDataError) as info:
        find_mnist_dir(partial, download=False)
    message = str(info.value)
    assert str(partial) in message
    assert "train-labels-idx1-ubyte.gz" in message and "t10k-images-idx3-ubyte.gz" in message
    assert "train-images-idx3-ubyte.gz" not in message
    with pytest.raises(MNISTDataError, match="does not exist"):
        find_mnist_dir(tmp_path / "absent", download=False)


def test_download_from_mirror_verifies_and_writes_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    dead = (tmp_path / "dead-mirror").as_uri() + "/"
    monkeypatch.setattr(mnist_module, "_MIRRORS", (dead, MNIST_DIR.as_uri() + "/"))
    directory = find_mnist_dir(download=True)
    assert directory == tmp_path / "xdg" / "alae_fast" / "mnist"
    assert sorted(p.name for p in directory.iterdir()) == sorted(MNIST_FILES)  # no temp left
    assert (directory / "t10k-labels-idx1-ubyte.gz").read_bytes() == (
        MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    ).read_bytes()


def test_download_failure_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "_MIRRORS", ((tmp_path / "dead").as_uri() + "/",))
    with pytest.raises(MNISTDataError) as info:
        find_mnist_dir(download=True)
    message = str(info.value)
    assert "failed" in message and "train-images-idx3-ubyte.gz" in message
    assert "--data" in message


# ---------------------------------------------------------------------------------------------
# Integrity and raw files


def test_corrupt_gz_raises_md5_error(tmp_path):
    directory = _link_all(tmp_path / "bad", skip=("t10k-labels-idx1-ubyte.gz",))
    bad = directory / "t10k-labels-idx1-ubyte.gz"
    shutil.copyfile(MNIST_DIR / bad.name, bad)
    _flip_byte(bad, 1000)
    with pytest.raises(MNISTDataError, match="md5") as info:
        load_mnist("test", directory, download=False)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert MNIST_FILES["t10k-labels-idx1-ubyte.gz"] in message


def _write_raw(directory: Path, name: str) -> Path:
    raw = directory / name[:-3]
    raw.write_bytes(gzip.decompress((MNIST_DIR / name).read_bytes()))
    return raw


def test_raw_files_load_identically(tmp_path):
    directory = tmp_path / "raw"
    directory.mkdir()
    for name in MNIST_FILES:
        if name.startswith("t10k"):
            _write_raw(directory, name)
    # Train files stay compressed: a directory may mix both forms.
    (directory / "train-labels-idx1-ubyte.gz").symlink_to(MNIST_DIR / "train-labels-idx1-ubyte.gz")
    (directory / "train-images-idx3-ubyte.gz").symlink_to(MNIST_DIR / "train-images-idx3-ubyte.gz")
    images, labels = load_mnist("test", directory, download=False)
    ref_images, ref_labels = load_mnist("test", MNIST_DIR, download=False)
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)


def test_raw_train_images_md5_checked(tmp_path):
    directory = _link_all(tmp_path / "raw", skip=("train-images-idx3-ubyte.gz",))
    raw = _write_raw(directory, "train-images-idx3-ubyte.gz")
    images, _ = load_mnist("train", directory, download=False)
    assert images.shape == (60000, 28, 28)
    _flip_byte(raw, 16 + 5 * 784 + 400)  # a pixel, so the header stays valid
    with pytest.raises(MNISTDataError, match="md5") as info:
        load_mnist("train", directory, download=False)
    assert "6bbc9ace898e44ae57da46a324031adb" in str(info.value)


def test_raw_files_without_md5_are_header_checked(tmp_path):
    directory = _link_all(tmp_path / "raw", skip=("t10k-labels-idx1-ubyte.gz",))
    raw = _write_raw(directory, "t10k-labels-idx1-ubyte.gz")
    _flip_byte(raw, 3)  # magic 2049 -> 2049 ^ 0xFF
    with pytest.raises(MNISTDataError, match="magic"):
        load_mnist("test", directory, download=False)
    raw.write_bytes(gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())[:-1])
    with pytest.raises(MNISTDataError, match="bytes"):
        load_mnist("test", directory, download=False)


def test_mixed_up_files_are_rejected(tmp_path):
    # Raw label data stored under the raw image name: no md5 known, header check catches it.
    directory = _link_all(tmp_path / "mixed", skip=("t10k-images-idx3-ubyte.gz",))
    (directory / "t10k-images-idx3-ubyte").write_bytes(
        gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    )
    with pytest.raises(MNISTDataError, match="2051"):
        load_mnist("test", directory, download=False)


# ---------------------------------------------------------------------------------------------
# Transforms


def test_uint8_to_float_values():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(uint8_to_float(x), torch.tensor([-1.0, -0.6, 1.0]))
    with pytest.raises(TypeError):
        uint8_to_float(x.float())


def test_pad_to_centres():
    x = torch.arange(1, 7, dtype=torch.uint8).reshape(1, 2, 3)
    out = pad_to(x, 5)
    expected = torch.tensor(
        [[0, 0, 0, 0, 0], [0, 1, 2, 3, 0], [0, 4, 5, 6, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.uint8
    )
    assert out.dtype == torch.uint8 and torch.equal(out[0], expected)
    assert pad_to(x.unsqueeze(1), 5).shape == (1, 1, 5, 5)
    with pytest.raises(ValueError, match="size"):
        pad_to(x, 2)


def test_downsample_to_values():
    x = torch.tensor([[1.0, 3.0, 5.0, 7.0], [1.0, 3.0, 5.0, 7.0], [0.0, 0.0, 4.0, 8.0], [0.0, 0.0, 0.0, 0.0]]).reshape(
        1, 1, 4, 4
    )
    assert torch.equal(downsample_to(x, 2)[0, 0], torch.tensor([[2.0, 6.0], [0.0, 3.0]]))
    assert torch.equal(downsample_to(x, 1)[0, 0], torch.tensor([[2.75]]))
    assert downsample_to(x, 4) is x
    for bad in (3, 8, 0):
        with pytest.raises(ValueError, match="resolution"):
            downsample_to(x, bad)
