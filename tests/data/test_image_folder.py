"""Tests of ImageFolderDataset on tiny synthetic PNG/JPEG files with known content."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from alae_fast.data import ImageFolderDataset

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _save(path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def _filled(colour, side: int) -> torch.Tensor:
    """Expected item: uint8 [3, side, side] of one colour."""
    return torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, side, side)


def _solid(colour, width=8, height=8) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()


def _margins_image(width: int, height: int) -> np.ndarray:
    """Blue centre square with red margins on the long side."""
    array = _solid(RED, width, height)
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    array[top : top + side, left : left + side] = BLUE
    return array


def test_shape_dtype_and_len(tmp_path):
    _save(tmp_path / "a.png", _solid(RED, 40, 30))
    _save(tmp_path / "b.jpg", _solid(BLUE, 20, 20), quality=95)
    dataset = ImageFolderDataset(tmp_path, resolution=16)
    assert len(dataset) == 2
    for item in (dataset[0], dataset[1], dataset[-1]):
        assert item.shape == (3, 16, 16) and item.dtype == torch.uint8
    # Solid colours survive crop + resize exactly (PNG) or nearly (JPEG).
    assert torch.equal(dataset[0], _filled(RED, 16))
    blue = dataset[1].int()
    assert blue[0].max() <= 8 and blue[1].max() <= 8 and blue[2].min() >= 245


@pytest.mark.parametrize("width,height", [(40, 30), (30, 40), (41, 30)])
def test_centre_crop_removes_margins(tmp_path, width, height):
    _save(tmp_path / "m.png", _margins_image(width, height))
    item = ImageFolderDataset(tmp_path, resolution=8)[0]
    # Only the blue centre square is kept: no red anywhere after Lanczos resizing.
    assert torch.equal(item, _filled(BLUE, 8))


def test_centre_crop_offset_exact(tmp_path):
    # 12x8 image with a distinct value per pixel; resolution 8 means crop only (no resize),
    # so the output must be columns 2..9 of the input.
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    _save(tmp_path / "x.png", array)
    item = ImageFolderDataset(tmp_path, resolution=8)[0]
    assert torch.equal(item, torch.from_numpy(array[:, 2:10]).permute(2, 0, 1))
    # Portrait: rows 2..9 are kept.
    _save(tmp_path / "x.png", array.transpose(1, 0, 2).copy())
    item = ImageFolderDataset(tmp_path, resolution=8)[0]
    assert torch.equal(item, torch.from_numpy(array.transpose(1, 0, 2)[2:10]).permute(2, 0, 1))


def test_upscaling_small_images(tmp_path):
    _save(tmp_path / "small.png", _solid((10, 200, 30), 5, 7))
    item = ImageFolderDataset(tmp_path, resolution=32)[0]
    assert item.shape == (3, 32, 32)
    assert torch.equal(item, _filled((10, 200, 30), 32))


def test_grayscale_and_rgb_conversion(tmp_path):
    _save(tmp_path / "colour.png", _solid((10, 200, 30)))
    _save(tmp_path / "gray.png", np.full((8, 8), 77, np.uint8))
    gray = ImageFolderDataset(tmp_path, resolution=4, channels=1)
    assert [p.name for p in gray.paths] == ["colour.png", "gray.png"]
    # ITU-R 601-2 luma: (10*299 + 200*587 + 30*114) / 1000 = 123.81 -> 124.
    assert gray[0].shape == (1, 4, 4) and (gray[0] == 124).all()
    assert (gray[1] == 77).all()
    rgb = ImageFolderDataset(tmp_path, resolution=4, channels=3)
    # A grayscale file is replicated to three equal channels.
    assert rgb[1].shape == (3, 4, 4) and (rgb[1] == 77).all()


def test_recursive_sorted_and_filtered(tmp_path):
    colours = {"b.png": 20, "a.PNG": 10, "sub/c.jpeg": 30, "sub/deeper/d.JPG": 40, "c.png": 25}
    for name, value in colours.items():
        _save(tmp_path / name, np.full((8, 8), value, np.uint8))  # format from the suffix
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "image.gif").write_bytes(b"GIF89a")
    dataset = ImageFolderDataset(tmp_path, resolution=8, channels=1)
    relative = [p.relative_to(tmp_path).as_posix() for p in dataset.paths]
    assert relative == ["a.PNG", "b.png", "c.png", "sub/c.jpeg", "sub/deeper/d.JPG"]
    means = [dataset[i].float().mean().item() for i in range(len(dataset))]
    assert means == pytest.approx([10, 20, 25, 30, 40], abs=2)


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        ImageFolderDataset(tmp_path / "nope", resolution=8)


def test_root_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.png") as info:
        ImageFolderDataset(tmp_path, resolution=8)
    assert str(tmp_path) in str(info.value) and ".jpeg" in str(info.value)


@pytest.mark.parametrize("resolution", [0, 2, 3, 6, 12, -8, 8.0, True])
def test_bad_resolution(tmp_path, resolution):
    _save(tmp_path / "a.png", _solid(RED))
    with pytest.raises(ValueError, match="resolution"):
        ImageFolderDataset(tmp_path, resolution=resolution)


@pytest.mark.parametrize("channels", [0, 2, 4])
def test_bad_channels(tmp_path, channels):
    _save(tmp_path / "a.png", _solid(RED))
    with pytest.raises(ValueError, match="channels"):
        ImageFolderDataset(tmp_path, resolution=8, channels=channels)


def test_index_out_of_range(tmp_path):
    _save(tmp_path / "a.png", _solid(RED))
    dataset = ImageFolderDataset(tmp_path, resolution=4)
    with pytest.raises(IndexError):
        dataset[1]


def test_works_with_dataloader(tmp_path):
    for i in range(5):
        _save(tmp_path / f"{i}.png", np.full((10, 14), i * 50, np.uint8))
    loader = torch.utils.data.DataLoader(ImageFolderDataset(tmp_path, 4, channels=1), batch_size=2)
    batches = list(loader)
    assert [b.shape for b in batches] == [(2, 1, 4, 4), (2, 1, 4, 4), (1, 1, 4, 4)]
    assert torch.cat(batches)[:, 0, 0, 0].tolist() == [0, 50, 100, 150, 200]
