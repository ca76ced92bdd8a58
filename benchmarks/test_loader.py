"""Images/s of the training data loader, per storage, resolution and worker count, and the
images/s one H100 could consume (``scripts/flops_per_image.py``), for the "## Data loader"
section of RESULTS.md.

Sources: 48 photographs made from scikit-learn's two sample photos (china.jpg, flower.jpg,
427x640) by seeded random crops, flips and upscaling to 1040-1280 px, saved as JPEG (quality
95). They are read three ways, each through ``torch.utils.data.DataLoader`` as the trainer
does (a ``batch_sampler`` of index lists in a fresh random order each epoch, ``collate_uint8``):
``raw`` (``PreparedDataset`` over images.u8, np.memmap), ``png`` (``PreparedDataset`` over
images.zip, decoded at read time) and ``image folder`` (``ImageFolderDataset``: decode, crop and
resize every source JPEG at every read, what training did before prepared datasets). The page
cache is warm (every file is read once before timing), so this is the CPU cost of reading,
decoding and batching, not the disk's. The first batches of each run (worker start-up) are not
timed. No assertion is made on the timings. Only a run of all 12 cases rewrites the section.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import random
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from alae_fast.data import ImageFolderDataset
from alae_fast.data.prepared import PreparedDataset
from alae_fast.data.prepared import collate_uint8
from alae_fast.data.prepared import prepare_dataset

from . import bench_support

SOURCE_COUNT = 48
SOURCE_SIDES = (1040, 1280)  # short side of the sources: above 1024, as FFHQ's 1024² files are for 1024²
BATCH = {256: 16, 1024: 8}  # per-GPU batch sizes of the trainer at these resolutions
WARMUP_BATCHES = 3
SECONDS_PER_CASE = 2.5
FORMATS = ("raw", "png", "image folder")
SECTION = "## Data loader"
COMMAND = "PYTHONPATH=. pytest benchmarks/test_loader.py"
FFHQ_PNG_MB = 1.3  # average size of FFHQ's 1024² PNGs

ROWS: list[dict] = []
LOAD: list[float] = []  # 1-minute load average before the first case and after the last


def _make_sources(root: Path) -> list[Path]:
    datasets = pytest.importorskip("sklearn.datasets")
    photos = [Image.fromarray(a) for a in datasets.load_sample_images().images]
    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(SOURCE_COUNT):
        photo = photos[i % len(photos)]
        w, h = photo.size
        # A crop of 60-100% of the photo's height, aspect 1 to 1.25, upscaled to the source size.
        ch = int(h * rng.uniform(0.6, 1.0))
        cw = min(w, int(ch * rng.uniform(1.0, 1.25)))
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        image = photo.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        side = rng.randint(*SOURCE_SIDES)
        image = image.resize((round(side * cw / ch), side), Image.Resampling.BICUBIC)
        path = root / f"{i:03d}.jpg"
        image.save(path, quality=95)
        paths.append(path)
    return paths


def _warm_page_cache(path: Path) -> int:
    """Read every file under ``path`` once; returns the bytes read."""
    total = 0
    for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        with open(file, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    return total


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader") / "sources"
    paths = _make_sources(root)
    return root, sum(p.stat().st_size for p in paths) / len(paths)


_DATASETS: dict = {}


def _dataset(fmt: str, resolution: int, sources) -> tuple[torch.utils.data.Dataset, float]:
    """The dataset of one format and resolution (prepared once per module) and its bytes per image."""
    root, source_bytes = sources
    if (fmt, resolution) not in _DATASETS:
        if fmt == "image folder":
            _DATASETS[fmt, resolution] = ImageFolderDataset(root, resolution, channels=3), source_bytes
        else:
            dst = root.parent / f"{fmt}-{resolution}"
            report = prepare_dataset(root, dst, resolution, storage=fmt, workers=2, progress=False, log=lambda s: None)
            assert report.count == SOURCE_COUNT and not report.skipped
            size = sum(p.stat().st_size for p in dst.iterdir() if p.is_file())
            _DATASETS[fmt, resolution] = PreparedDataset(dst), size / report.count
    return _DATASETS[fmt, resolution]


def _batches(n: int, batch: int, images: int) -> list[list[int]]:
    """Index lists of ``images`` images (rounded up to whole epochs), each epoch a fresh
    permutation cut into batches, the last incomplete batch dropped (as the trainer does)."""
    g = torch.Generator().manual_seed(0)
    lists: list[list[int]] = []
    while len(lists) * batch < images:
        order = torch.randperm(n, generator=g)
        lists += [order[i : i + batch].tolist() for i in range(0, n - batch + 1, batch)]
    return lists


def _images_per_second(dataset, batch: int, workers: int, seconds: float) -> tuple[float, int]:
    """Images/s through the trainer's DataLoader after ``WARMUP_BATCHES`` untimed batches,
    for about ``seconds`` (at least one batch). Returns (images/s, images timed)."""
    lists = _batches(len(dataset), batch, images=60_000)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=lists, num_workers=workers, pin_memory=False, collate_fn=collate_uint8
    )
    it = iter(loader)
    try:
        for _ in range(WARMUP_BATCHES):
            x = next(it)
            assert x.dtype == torch.uint8 and x.shape[0] == batch
        images, t0 = 0, time.perf_counter()
        for x in it:
            images += x.shape[0]
            if time.perf_counter() - t0 >= seconds:
                break
        elapsed = time.perf_counter() - t0
    finally:
        del it  # stops the workers
    return images / elapsed, images


@pytest.fixture(scope="module", autouse=True)
def _write_section(request):
    LOAD.append(os.getloadavg()[0])
    yield
    LOAD.append(os.getloadavg()[0])
    # Only a run of the whole grid rewrites the section (a -k run would drop the other rows).
    if len(ROWS) == len(FORMATS) * 2 * 2 and not request.config.getoption("benchmark_disable", False):
        bench_support.write_section(SECTION, _section_lines())


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("resolution", [256, 1024])
@pytest.mark.parametrize("fmt", FORMATS)
def test_loader_images_per_second(request, sources, fmt, resolution, workers):
    dataset, nbytes = _dataset(fmt, resolution, sources)
    assert tuple(dataset[0].shape) == (3, resolution, resolution)
    path = Path(sources[0]) if fmt == "image folder" else Path(dataset.root)
    _warm_page_cache(path)
    disabled = request.config.getoption("benchmark_disable", False)
    rate, images = _images_per_second(dataset, BATCH[resolution], workers, 0.0 if disabled else SECONDS_PER_CASE)
    assert images > 0
    if not disabled:
        ROWS.append(dict(fmt=fmt, resolution=resolution, workers=workers, rate=rate, images=images, mb=nbytes / 1e6))


# ---- the RESULTS.md section ------------------------------------------------------------------


def _flops_module():
    path = Path(__file__).resolve().parents[1] / "scripts" / "flops_per_image.py"
    spec = importlib.util.spec_from_file_location("flops_per_image", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FORMAT_LABELS = {
    "raw": "raw (images.u8, np.memmap)",
    "png": "png (images.zip, decoded per read)",
    "image folder": "image folder (decode + crop + Lanczos resize of the JPEG sources)",
}


def _section_lines() -> list[str]:
    from .conftest import _cpu_name

    rows = sorted(ROWS, key=lambda r: (FORMATS.index(r["fmt"]), r["resolution"], r["workers"]))
    png = [r["mb"] for r in rows if r["fmt"] == "png" and r["resolution"] == 1024]
    png_mb = f"{png[0]:.2f}" if png else "?"
    lines = [
        SECTION,
        "",
        f"Written by `{COMMAND}` ({bench_support.DEVICE} host: {_cpu_name()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; measured "
        f"{datetime.date.today().isoformat()}).",
        "",
        f"Images/s of the training DataLoader as the trainer builds it (`batch_sampler` of index lists, a fresh "
        f"random order each epoch, `collate_fn=collate_uint8`, `pin_memory` off on a CPU host), batch "
        f"{BATCH[256]} at 256² and {BATCH[1024]} at 1024², {WARMUP_BATCHES} warm-up batches not timed, then "
        f"about {SECONDS_PER_CASE} s timed. The page cache is warm (every file read once before timing): these "
        f"are the CPU costs of reading, decoding and batching, not the disk's. Sources: {SOURCE_COUNT} JPEGs "
        f"(quality 95, short side {SOURCE_SIDES[0]}-{SOURCE_SIDES[1]} px) made by seeded random crops, flips "
        f"and upscaling of scikit-learn's two sample photos (china.jpg, flower.jpg, 427x640). MB/image is on "
        f"disk: the prepared file per image for raw and png, the source JPEG for the image folder. Upscaled "
        f"crops are smoother than real photographs and compress better (png here: {png_mb} MB/image at 1024²; "
        f"FFHQ's 1024² PNGs average about {FFHQ_PNG_MB} MB), so real PNGs take somewhat longer to decode. "
        f"Each worker is one process on one core; on this {os.cpu_count()}-core machine, shared with other "
        "jobs, a second worker competes with the main process (which unpickles and batches) and gains little. "
        f"The 1-minute load average was {LOAD[0]:.1f} before the first case and {LOAD[-1]:.1f} after the last: "
        "rates move between runs when other jobs load the machine.",
        "",
        "| format | resolution | workers | images/s | MB/image |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {_FORMAT_LABELS[r['fmt']]} | {r['resolution']}² | {r['workers']} | {r['rate']:.0f} | {r['mb']:.3f} |"
        )
    flops = _flops_module()
    gpu = flops.table()
    pct = f"{flops.UTILISATION:.0%}"
    lines += [
        "",
        "### What one H100 consumes",
        "",
        "FLOPs per image of one training iteration (D step with R1, G step, AE step; one real and one "
        "generated image) of the official configs' StyleALAE models at the final lod, counted on the `meta` "
        "device with `torch.utils.flop_counter`'s formulas (convolutions, matmuls), by "
        f"`PYTHONPATH=. python scripts/flops_per_image.py`. H100 SXM peak: {flops.H100_SXM['bf16'] / 1e12:.1f} "
        f"TFLOP/s dense bf16, {flops.H100_SXM['tf32'] / 1e12:.1f} TF32 (what float32 convolutions run as by "
        f"default), {flops.H100_SXM['fp32'] / 1e12:.0f} float32 without tensor cores. Utilisation "
        f"{flops.UTILISATION_NOTE}. The eager roofline charges every op max(FLOPs / peak, bytes / "
        f"{flops.H100_SXM['hbm'] / 1e12:.2f} TB/s) at batch {flops.BATCH} with no fusion and no cache: the "
        "reference model's unfused element-wise ops cap "
        + ", ".join(f"{g['model']} at {g['bf16_roofline'] / g['bf16_peak']:.0%}" for g in gpu)
        + " of the bf16 FLOP bound; the stated utilisation assumes fused kernels (`alae_fast.optimize`).",
        "",
        *flops.markdown(gpu),
        "",
        *_comparison(rows, gpu, pct),
    ]
    return lines


def _comparison(rows: list[dict], gpu: list[dict], pct: str) -> list[str]:
    """Loader workers one GPU needs per storage: the GPU's images/s (bf16 at the stated
    utilisation, the most demanding model of each resolution) over one worker's images/s."""
    one_worker = {(r["fmt"], r["resolution"]): r["rate"] for r in rows if r["workers"] == 1}
    demand: dict[int, dict] = {}
    for g in gpu:
        if g["bf16_util"] > demand.get(g["resolution"], {}).get("bf16_util", 0.0):
            demand[g["resolution"]] = g
    lines = [
        f"Loader workers one H100 needs (images/s at bf16 {pct} of the most demanding model of the resolution, "
        "over one worker's measured images/s on this CPU):",
        "",
        "| resolution | H100 images/s (model) | " + " | ".join(f"workers: {f}" for f in FORMATS) + " |",
        "|---|---:|" + "---:|" * len(FORMATS),
    ]
    enough = []
    for resolution, g in sorted(demand.items()):
        if not any((f, resolution) in one_worker for f in FORMATS):
            continue
        need = g["bf16_util"]
        cells = [f"{need / one_worker[f, resolution]:.1f}" if (f, resolution) in one_worker else "-" for f in FORMATS]
        lines.append(f"| {resolution}² | {need:.0f} ({g['model']}) | " + " | ".join(cells) + " |")
        fed = [f for f in FORMATS if (f, resolution) in one_worker and need / one_worker[f, resolution] <= 2.0]
        enough.append(f"{resolution}²: {', '.join(fed) if fed else 'none'}")
    if len(lines) == 4:
        return []
    return lines + [
        "",
        "Storages from which at most 2 loader cores keep one H100 fed at that rate: " + "; ".join(enough) + ".",
        "This is why `alae-fast prepare-dataset` stores `raw` by default: it reads with a fraction of a core "
        "per GPU where the PNG zip needs several at 1024², for 2-3x the disk (MB/image above); `--storage png` "
        "is there for disk-limited machines with cores to spare.",
    ]
