"""Tests of prepare_dataset / PreparedDataset on tiny image files of many modes with known content."""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from support import mixed_image_folder

from alae_fast.data import ImageFolderDataset
from alae_fast.data import PreparedDataset
from alae_fast.data import collate_uint8
from alae_fast.data import is_prepared
from alae_fast.data import prepare_dataset
from alae_fast.data import square_image
from alae_fast.data.prepared import FORMAT_VERSION
from alae_fast.data.prepared import MANIFEST_NAME

RED, GREEN, BLUE = (255, 0, 0), (0, 200, 0), (0, 0, 255)
CORRUPT = ["bad/half.png", "x.jpg"]


def _save(path, image: Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def _solid(colour, width=8, height=8) -> Image.Image:
    return Image.fromarray(np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy())


def _random(width, height, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _filled(colour, side: int) -> torch.Tensor:
    """Expected item: uint8 [len(colour), side, side] of one colour."""
    return torch.tensor(colour, dtype=torch.uint8).view(-1, 1, 1).expand(len(colour), side, side)


def _prepare(src, dst, **kwargs):
    lines: list[str] = []
    kwargs.setdefault("resolution", 8)
    report = prepare_dataset(src, dst, progress=False, log=lines.append, **kwargs)
    return report, lines


# ----------------------------------------------------------------------------- writer


def test_mixed_folder_workers_identical_and_manifest(tmp_path):
    good, _ = mixed_image_folder(tmp_path / "src")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. PIL's palette-transparency warning
        report0, lines0 = _prepare(tmp_path / "src", tmp_path / "p0", resolution=16)
    report2, lines2 = _prepare(tmp_path / "src", tmp_path / "p2", resolution=16, workers=2)
    data0 = (tmp_path / "p0/images.u8").read_bytes()
    assert data0 == (tmp_path / "p2/images.u8").read_bytes()
    assert len(data0) == len(good) * 3 * 16 * 16
    assert report0.count == report2.count == len(good)
    assert [name for name, _ in report0.skipped] == CORRUPT
    assert report0.ignored == ["notes.txt"]

    manifest = json.loads((tmp_path / "p0" / MANIFEST_NAME).read_text())
    assert manifest["format"] == "alae_fast.prepared" and manifest["format_version"] == 1
    assert manifest["count"] == len(good) and manifest["files"] == good
    assert [entry["file"] for entry in manifest["skipped"]] == CORRUPT
    assert all(": " in entry["error"] for entry in manifest["skipped"])
    assert manifest["ignored"] == ["notes.txt"]
    assert manifest["source"] == str((tmp_path / "src").absolute())
    assert (manifest["resolution"], manifest["channels"], manifest["storage"]) == (16, 3, "raw")
    assert (manifest["dtype"], manifest["layout"]) == ("uint8", "NCHW")

    for lines in (lines0, lines2):
        assert lines[0].startswith(f"prepared {len(good)} images (16x16, 3 channels, raw) from ")
        assert lines[1].startswith("skipped 2 unreadable files: ")
        assert all(name in lines[1] for name in CORRUPT)
    # Nothing but the data file and the manifest is left in dst.
    assert sorted(os.listdir(tmp_path / "p0")) == [MANIFEST_NAME, "images.u8"]


def test_prepared_equals_image_folder_dataset(tmp_path):
    mixed_image_folder(tmp_path / "src", corrupt=False)
    for channels in (1, 3):
        _prepare(tmp_path / "src", tmp_path / f"p{channels}", resolution=16, channels=channels)
        prepared = PreparedDataset(tmp_path / f"p{channels}")
        folder = ImageFolderDataset(tmp_path / "src", 16, channels=channels)
        assert len(prepared) == len(folder) == 9
        assert prepared.manifest["files"] == [p.relative_to(tmp_path / "src").as_posix() for p in folder.paths]
        for i in range(len(folder)):
            assert torch.equal(prepared[i], folder[i]), folder.paths[i]


def test_known_pixel_values(tmp_path):
    src = tmp_path / "src"
    _save(src / "a_red.png", _solid(RED, 12, 9))
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[...] = (10, 20, 30, 0)  # fully transparent: alpha is dropped, the colour stays
    _save(src / "b_rgba.png", Image.fromarray(rgba))
    _save(src / "c_cmyk.jpg", Image.new("CMYK", (8, 8), (0, 0, 0, 0)), quality=95)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([255, 0, 255] + list(GREEN) + [0] * 762)
    _save(src / "d_pal.png", palette, transparency=1)
    margins = np.zeros((8, 14, 3), np.uint8)
    margins[...] = RED
    margins[:, 3:11] = BLUE
    _save(src / "e_margins.png", Image.fromarray(margins))
    _prepare(src, tmp_path / "p")
    dataset = PreparedDataset(tmp_path / "p")
    assert torch.equal(dataset[0], _filled(RED, 8))
    assert torch.equal(dataset[1], _filled((10, 20, 30), 8))
    assert dataset[2].min() >= 250  # CMYK (0, 0, 0, 0) is white (JPEG: almost exactly)
    assert torch.equal(dataset[3], _filled(GREEN, 8))
    assert torch.equal(dataset[4], _filled(BLUE, 8))  # only the centre square is kept


def test_sixteen_bit_grayscale_is_scaled(tmp_path):
    src = tmp_path / "src"
    for name, value in (("a.png", 65535), ("b.png", 32768), ("c.png", 257 * 40)):
        _save(src / name, Image.fromarray(np.full((8, 8), value, np.uint16)))
    assert Image.open(src / "a.png").mode.startswith("I")
    _prepare(src, tmp_path / "p", channels=1)
    dataset = PreparedDataset(tmp_path / "p")
    assert (dataset[0] == 255).all()
    assert (dataset[1].int() - 128).abs().max() <= 1  # convert("L") would clip this to 255
    assert (dataset[2] == 40).all()


def test_square_image_float_int32_and_exif(tmp_path):
    floats = Image.fromarray(np.array([[-5.0, 300.0], [100.4, np.nan]], np.float32))
    assert square_image(floats, 2, 1)[..., 0].tolist() == [[0, 255], [100, 0]]
    ints = Image.fromarray(np.array([[65535, 0], [70000, 32768]], np.int32))
    assert ints.mode == "I"
    result = square_image(ints, 2, 3)
    assert result.shape == (2, 2, 3) and result[..., 1].tolist() == [[255, 0], [255, 128]]

    # Orientation 3 (rotated 180 degrees): a red-top / blue-bottom file is shown blue-top.
    array = np.zeros((8, 8, 3), np.uint8)
    array[:4], array[4:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = 3
    _save(tmp_path / "turned.png", Image.fromarray(array), exif=exif)
    with Image.open(tmp_path / "turned.png") as image:
        out = square_image(image, 8, 3)
    assert out[0, 0].tolist() == list(BLUE) and out[7, 7].tolist() == list(RED)


def test_png_storage_and_zip_source_match_raw(tmp_path):
    good, _ = mixed_image_folder(tmp_path / "src", corrupt=False)
    _prepare(tmp_path / "src", tmp_path / "raw")
    _prepare(tmp_path / "src", tmp_path / "png", storage="png")
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as archive:
        archive.writestr("sub/", "")  # a directory entry
        for name in reversed(good + ["notes.txt"]):
            archive.write(tmp_path / "src" / name, name)
    report, _ = _prepare(tmp_path / "src.zip", tmp_path / "zipped", workers=2)
    assert report.ignored == ["notes.txt"]
    raw, png, zipped = (PreparedDataset(tmp_path / n) for n in ("raw", "png", "zipped"))
    assert png.storage == "png" and raw.storage == "raw"
    assert len(raw) == len(png) == len(zipped) == len(good)
    assert zipped.manifest["files"] == raw.manifest["files"] == good
    with zipfile.ZipFile(tmp_path / "png/images.zip") as archive:
        assert archive.namelist() == [f"{i:08d}.png" for i in range(len(good))]
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    for i in range(len(good)):
        assert torch.equal(raw[i], png[i]) and torch.equal(raw[i], zipped[i])
    assert torch.equal(raw[-1], raw[len(good) - 1])


# ----------------------------------------------------------------------------- reader


def _gray_values(tmp_path, storage, values=(10, 20, 30, 40)):
    for i, value in enumerate(values):
        _save(tmp_path / "src" / f"{i}.png", Image.fromarray(np.full((6, 9), value, np.uint8)))
    _prepare(tmp_path / "src", tmp_path / storage, resolution=4, channels=1, storage=storage)
    return PreparedDataset(tmp_path / storage, resolution=4, channels=1)


@pytest.mark.parametrize("storage", ["raw", "png"])
def test_items_getitems_and_pickle(tmp_path, storage):
    dataset = _gray_values(tmp_path, storage)
    assert len(dataset) == 4 and dataset.resolution == 4 and dataset.channels == 1
    assert dataset[0].shape == (1, 4, 4) and dataset[0].dtype == torch.uint8
    assert [int(dataset[i][0, 0, 0]) for i in (0, 1, 2, 3, -1, -4)] == [10, 20, 30, 40, 40, 10]
    batch = dataset.__getitems__([3, 1, 1, -2])
    assert batch.shape == (4, 1, 4, 4) and batch[:, 0, 0, 0].tolist() == [40, 20, 20, 30]
    assert torch.equal(batch, torch.stack([dataset[i] for i in (3, 1, 1, -2)]))
    assert dataset.__getitems__([]).shape == (0, 1, 4, 4)
    for bad in (4, -5):
        with pytest.raises(IndexError):
            dataset[bad]
    with pytest.raises(IndexError):
        dataset.__getitems__([0, 4])
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone.__getitems__([0, 1, 2, 3]), dataset.__getitems__([0, 1, 2, 3]))
    assert f"storage={storage!r}" in repr(dataset) and "images=4" in repr(dataset)


@pytest.mark.parametrize("storage", ["raw", "png"])
def test_dataloader_workers_batch_sampler(tmp_path, storage):
    dataset = _gray_values(tmp_path, storage)
    dataset[0]  # handles opened in the parent must not be reused by the workers
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=[[3, 1], [0, 2]], collate_fn=collate_uint8, num_workers=2
    )
    batches = list(loader)
    assert [b.shape for b in batches] == [(2, 1, 4, 4), (2, 1, 4, 4)]
    assert [b[:, 0, 0, 0].tolist() for b in batches] == [[40, 20], [10, 30]]


def test_collate_uint8():
    batch = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    assert collate_uint8(batch) is batch
    items = [torch.full((1, 4, 4), v, dtype=torch.uint8) for v in (5, 6)]
    assert collate_uint8(items)[:, 0, 0, 0].tolist() == [5, 6]


# ----------------------------------------------------------------------------- errors


def test_existing_dataset_needs_overwrite(tmp_path):
    dataset = _gray_values(tmp_path, "raw")
    assert is_prepared(tmp_path / "raw") and not is_prepared(tmp_path / "src")
    with pytest.raises(FileExistsError, match="overwrite") as info:
        _prepare(tmp_path / "src", tmp_path / "raw", resolution=4)
    assert str(tmp_path / "raw") in str(info.value)
    assert len(dataset) == 4  # untouched
    report, _ = _prepare(tmp_path / "src", tmp_path / "raw", resolution=8, storage="png", overwrite=True)
    assert report.count == 4
    assert sorted(os.listdir(tmp_path / "raw")) == [MANIFEST_NAME, "images.zip"]  # the old images.u8 is gone
    assert PreparedDataset(tmp_path / "raw").resolution == 8


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        _prepare(tmp_path / "nope", tmp_path / "dst")
    assert not (tmp_path / "dst").exists() or not is_prepared(tmp_path / "dst")


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"resolution": 6}, "resolution"),
        ({"resolution": 2}, "resolution"),
        ({"resolution": True}, "resolution"),
        ({"channels": 2}, "channels"),
        ({"storage": "jpeg"}, "storage"),
        ({"workers": -1}, "workers"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, name):
    _save(tmp_path / "src/a.png", _solid(RED))
    with pytest.raises(ValueError, match=name):
        _prepare(tmp_path / "src", tmp_path / "dst", **kwargs)
    assert not is_prepared(tmp_path / "dst")


def test_only_corrupt_files(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "src/b.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="all 2 image files were skipped"):
        _prepare(tmp_path / "src", tmp_path / "dst")
    assert os.listdir(tmp_path / "dst") == []  # no data file, no manifest


def test_resolution_and_channels_mismatch(tmp_path):
    _gray_values(tmp_path, "raw")
    with pytest.raises(ValueError) as info:
        PreparedDataset(tmp_path / "raw", resolution=32)
    assert str(info.value) == (
        f"prepared dataset {tmp_path / 'raw'} has resolution 4, but 32 was expected (data.resolution); "
        "prepare it again with --resolution 32"
    )
    with pytest.raises(ValueError, match=r"has channels 1, but 3 was expected .*--channels 3"):
        PreparedDataset(tmp_path / "raw", channels=3)


def test_truncated_raw_file(tmp_path):
    _gray_values(tmp_path, "raw")
    os.truncate(tmp_path / "raw/images.u8", 4 * 16 - 1)
    with pytest.raises(ValueError, match=r"images\.u8 is truncated"):
        PreparedDataset(tmp_path / "raw")


def test_newer_format_version_and_not_prepared(tmp_path):
    _gray_values(tmp_path, "raw")
    path = tmp_path / "raw" / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="newer alae_fast"):
        PreparedDataset(tmp_path / "raw")
    manifest.update(format_version=1, format="something else")
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format"):
        PreparedDataset(tmp_path / "raw")
    with pytest.raises(FileNotFoundError, match=MANIFEST_NAME):
        PreparedDataset(tmp_path / "src")
