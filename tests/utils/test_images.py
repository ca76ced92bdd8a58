"""Tests for alae_fast.utils.images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from alae_fast.utils.images import display_scale
from alae_fast.utils.images import make_grid
from alae_fast.utils.images import save_grid


def constant_batch(values, c=1, h=2, w=2):
    return torch.stack([torch.full((c, h, w), float(v)) for v in values])


def test_grid_values_and_positions():
    # -1 -> 0, 0 -> 127.5 -> 128, 1 -> 255, 0.5 -> 191.25 -> 191
    grid = make_grid(constant_batch([-1.0, 0.0, 1.0, 0.5]), nrow=2, padding=1)
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 128, 128, 0],
            [0, 0, 0, 0, 128, 128, 0],
            [0, 0, 0, 0, 0, 0, 0],
            [0, 255, 255, 0, 191, 191, 0],
            [0, 255, 255, 0, 191, 191, 0],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    assert grid.dtype == np.uint8
    np.testing.assert_array_equal(grid, expected)


def test_grid_row_major_and_default_padding():
    grid = make_grid(constant_batch([1.0, 0.0, -0.5]), nrow=3)  # padding 2, one row
    assert grid.shape == (2 + 2 + 2, 3 * (2 + 2) + 2)
    assert grid[2, 2] == 255 and grid[2, 6] == 128 and grid[2, 10] == 64
    # Padding rows/columns are black.
    assert grid[:2].max() == 0 and grid[4:].max() == 0
    assert grid[:, :2].max() == 0 and grid[:, 4:6].max() == 0


def test_incomplete_last_row_is_black():
    grid = make_grid(constant_batch([1.0, 1.0, 1.0]), nrow=2, padding=0)
    np.testing.assert_array_equal(grid[2:, 2:], np.zeros((2, 2), np.uint8))
    assert grid[2:, :2].min() == 255


def test_nrow_larger_than_batch_uses_batch_width():
    grid = make_grid(constant_batch([1.0, 1.0]), nrow=8, padding=0)
    assert grid.shape == (2, 4)


def test_clamp_and_nan():
    grid = make_grid(constant_batch([5.0, -7.0, float("nan")]), nrow=3, padding=0)
    np.testing.assert_array_equal(grid[0], [255, 255, 0, 0, 0, 0])


def test_rgb_grid():
    img = torch.zeros(1, 3, 2, 2)
    img[0, 0] = 1.0  # red
    img[0, 2] = -1.0  # blue channel black; green stays 0 -> 128
    grid = make_grid(img.repeat(2, 1, 1, 1), nrow=2, padding=1)
    assert grid.shape == (4, 7, 3)
    np.testing.assert_array_equal(grid[1, 1], [255, 128, 0])
    np.testing.assert_array_equal(grid[1, 4], [255, 128, 0])
    np.testing.assert_array_equal(grid[0, 0], [0, 0, 0])


@pytest.mark.parametrize(
    "images, match",
    [(torch.zeros(2, 2, 2), "images"), (torch.zeros(2, 2, 4, 4), "channels"), (torch.zeros(0, 1, 4, 4), "empty")],
)
def test_errors(images, match):
    with pytest.raises(ValueError, match=match):
        make_grid(images, nrow=2)


def test_bad_nrow():
    with pytest.raises(ValueError, match="nrow"):
        make_grid(torch.zeros(1, 1, 2, 2), nrow=0)


def test_save_grid_round_trip(tmp_path):
    torch.manual_seed(0)
    images = torch.rand(5, 1, 3, 3) * 2 - 1
    path = save_grid(images, tmp_path / "a" / "b" / "grid.png")
    assert path == tmp_path / "a" / "b" / "grid.png"
    with Image.open(path) as im:
        assert im.format == "PNG"
        back = np.asarray(im)
    # nrow defaults to ceil(sqrt(5)) = 3 -> 2 rows x 3 columns.
    assert back.shape == (2 * 5 + 2, 3 * 5 + 2)
    np.testing.assert_array_equal(back, make_grid(images, nrow=3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["grid.png"]


def test_save_grid_rgb(tmp_path):
    images = torch.zeros(4, 3, 2, 2)
    path = save_grid(images, tmp_path / "rgb.png", nrow=4)
    with Image.open(path) as im:
        assert im.mode == "RGB"
        assert im.size == (4 * 4 + 2, 6)
        assert im.getpixel((2, 2)) == (128, 128, 128)


def test_save_grid_scale_makes_each_pixel_a_block(tmp_path):
    images = torch.linspace(-1, 1, 2 * 3 * 5 * 5).reshape(2, 3, 5, 5)
    save_grid(images, tmp_path / "one.png", nrow=2)
    save_grid(images, tmp_path / "three.png", nrow=2, scale=3)
    one = np.asarray(Image.open(tmp_path / "one.png"))
    three = np.asarray(Image.open(tmp_path / "three.png"))
    assert np.array_equal(three, np.kron(one, np.ones((3, 3, 1), dtype=np.uint8)))
    with pytest.raises(ValueError, match="scale must be a positive int"):
        save_grid(images, tmp_path / "x.png", scale=0)


def test_display_scale_shows_tiles_of_at_least_128_pixels():
    assert [display_scale(s) for s in (4, 28, 32, 100, 128, 1024)] == [32, 5, 4, 2, 1, 1]
