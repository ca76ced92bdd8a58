"""Using a trained model: sample, encode, reconstruct, interpolate, mix styles and edit in W.

Every function takes a model from :func:`alae_fast.load` (or any ALAE model; ``lod`` then
defaults to its ``trained_lod`` attribute, else its last level) and works in batches of
``batch_size`` under ``torch.no_grad()``. Images are float tensors ``[N, C, R, R]`` in
``[-1, 1]``; codes are float32 W vectors ``[N, latent]``.

Seeds: the code of seed ``s`` is ``z = randn(latent)`` from a ``torch.Generator`` seeded with
``s``, so ``generate(model, 4, seed=10)`` shows the seeds 10..13 that
``interpolate_seeds(model, 10, 11, ...)`` starts and ends on, whatever the batch size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL import UnidentifiedImageError

from .data.image_folder import IMAGE_EXTENSIONS
from .data.image_folder import list_image_files
from .data.image_folder import square_image
from .data.transforms import downsample_to
from .data.transforms import uint8_to_float
from .reference.model import MLPALAE
from .reference.model import ALAEBase

__all__ = [
    "STYLE_LEVELS",
    "model_lod",
    "latents_from_seeds",
    "sample_w",
    "decode",
    "generate",
    "encode",
    "reconstruct",
    "interpolate",
    "style_mix",
    "style_levels",
    "pca_directions",
    "edit",
    "read_images",
    "to_model_input",
]

#: The style levels of the style-mixing figure, as StyleGAN and ALAE define them: the style slots
#: of the 4-8 px ("coarse"), 16-32 px ("middle") and 64 px and larger ("fine") generator blocks.
STYLE_LEVELS = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, None)}


def model_lod(model: ALAEBase, lod: int | None = None) -> int:
    """``lod``, else the level the model was trained up to (``trained_lod``), else its last."""
    if lod is None:
        lod = model.trained_lod if model.trained_lod is not None else model.layer_count - 1
    if not 0 <= lod < model.layer_count:
        raise ValueError(f"lod must be in [0, {model.layer_count - 1}] for this model, got {lod}")
    return int(lod)


def _dtype(model: ALAEBase) -> torch.dtype:
    return next(model.parameters()).dtype


def _out(t: torch.Tensor) -> torch.Tensor:
    """On the CPU, in float32 at least (float64 stays float64)."""
    return t.to("cpu", torch.promote_types(t.dtype, torch.float32))


def _batches(n: int, batch_size: int, progress: bool, what: str):
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    starts = range(0, n, batch_size)
    if progress and n > batch_size:
        from tqdm import tqdm

        return tqdm(starts, desc=what, unit="batch")
    return starts


def latents_from_seeds(model: ALAEBase, seeds: Sequence[int]) -> torch.Tensor:
    """z ``[len(seeds), latent]`` on CPU: for each seed, ``randn(latent)`` from a generator seeded with it."""
    out = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seeds must be non-negative ints, got {seed!r}")
        g = torch.Generator().manual_seed(int(seed))
        out.append(torch.randn(model.latent_size, generator=g))
    return torch.stack(out) if out else torch.zeros(0, model.latent_size)


def _truncated(model: ALAEBase, w: torch.Tensor, truncation: float | None) -> torch.Tensor:
    """W ``[N, latent]`` -> styles ``[N, slots, latent]``, the first ``truncation_cutoff`` slots
    (all when the model has none) pulled towards the running W average by ``truncation``."""
    styles = w.unsqueeze(1).expand(-1, model.num_layers, -1)
    if truncation is None:
        return styles
    cutoff = model.truncation_cutoff if model.truncation_cutoff is not None else model.num_layers
    coefs = torch.where(torch.arange(model.num_layers, device=w.device) < cutoff, float(truncation), 1.0)
    return torch.lerp(model.dlatent_avg.buff.to(w), styles, coefs.view(1, -1, 1).to(w))


@torch.no_grad()
def sample_w(model: ALAEBase, seeds: Sequence[int], *, batch_size: int = 256) -> torch.Tensor:
    """W codes ``F(z)`` of the given seeds: float32 ``[len(seeds), latent]`` on CPU."""
    z = latents_from_seeds(model, seeds)
    if len(z) == 0:
        raise ValueError("seeds must hold at least one seed")
    return torch.cat(
        [
            _out(model.mapping(z[i : i + batch_size].to(model.device, _dtype(model))))
            for i in range(0, len(z), batch_size)
        ]
    )


@torch.no_grad()
def decode(
    model: ALAEBase,
    w: torch.Tensor,
    *,
    lod: int | None = None,
    truncation: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    noise: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """G(w): images ``[N, C, R, R]`` on CPU from W codes ``[N, latent]`` (every style slot the
    same code) or per-slot styles ``[N, slots, latent]``.

    Args:
        truncation: pull the codes towards the running W average (psi; 1 or None: off) in the
            model's first ``truncation_cutoff`` slots (every slot when the model has no cutoff).
        seed: seeds the per-pixel noise images.
        noise: ``False``: the generator's noise inputs are zero (deterministic images).
    """
    lod = model_lod(model, lod)
    w = torch.as_tensor(w)
    if w.dim() not in (2, 3) or w.shape[-1] != model.latent_size:
        raise ValueError(
            f"w must have shape [N, {model.latent_size}] or [N, slots, {model.latent_size}], got {list(w.shape)}"
        )
    torch.manual_seed(seed)
    out = []
    for i in _batches(w.shape[0], batch_size, progress, "decode"):
        chunk = w[i : i + batch_size].to(model.device, _dtype(model))
        styles = _truncated(model, chunk, truncation) if chunk.dim() == 2 else chunk
        out.append(_out(model.pixels_from_model(model.decoder(styles, lod, 1.0, noise))))
    side = model.image_size(lod)
    return torch.cat(out) if out else torch.zeros(0, model.channels, side, side)


def generate(
    model: ALAEBase,
    count: int,
    *,
    seed: int = 0,
    truncation: float | None = None,
    lod: int | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> torch.Tensor:
    """``count`` samples ``G(F(z))`` of the seeds ``seed .. seed + count - 1``: ``[count, C, R, R]``."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    w = sample_w(model, range(seed, seed + count))
    return decode(model, w, lod=lod, truncation=truncation, batch_size=batch_size, seed=seed, progress=progress)


def to_model_input(model: ALAEBase, images: torch.Tensor, lod: int | None = None) -> torch.Tensor:
    """uint8 images ``[N, C, S, S]`` at the model's data resolution -> float ``[-1, 1]`` at the
    resolution of ``lod`` (box-filtered down, as in training)."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != model.channels:
        raise ValueError(f"images must be uint8 [N, {model.channels}, S, S], got {images.dtype} {list(images.shape)}")
    return downsample_to(uint8_to_float(images), model.image_size(model_lod(model, lod)))


def _as_input(model: ALAEBase, images: torch.Tensor, lod: int) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return to_model_input(model, images, lod)
    side = model.image_size(lod)
    if images.dim() != 4 or tuple(images.shape[1:]) != (model.channels, side, side):
        raise ValueError(
            f"images must be float [N, {model.channels}, {side}, {side}] in [-1, 1] (or uint8 at the data "
            f"resolution), got {list(images.shape)}"
        )
    return images


@torch.no_grad()
def encode(
    model: ALAEBase, images: torch.Tensor, *, lod: int | None = None, batch_size: int = 32, progress: bool = False
) -> torch.Tensor:
    """E(x): W codes float32 ``[N, latent]`` on CPU of images (float ``[-1, 1]`` at the model's
    resolution, or uint8 at its data resolution)."""
    lod = model_lod(model, lod)
    x = _as_input(model, images, lod)
    out = [
        _out(
            model.encode_w(model.pixels_to_model(x[i : i + batch_size].to(model.device, _dtype(model))), lod, 1.0)[:, 0]
        )
        for i in _batches(x.shape[0], batch_size, progress, "encode")
    ]
    return torch.cat(out) if out else torch.zeros(0, model.latent_size)


def reconstruct(
    model: ALAEBase,
    images: torch.Tensor,
    *,
    lod: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """G(E(x)): reconstructions ``[N, C, R, R]`` of images (as :func:`encode` takes them)."""
    w = encode(model, images, lod=lod, batch_size=batch_size, progress=progress)
    return decode(model, w, lod=lod, batch_size=batch_size, seed=seed)


def interpolate(
    model: ALAEBase, w_a: torch.Tensor, w_b: torch.Tensor, steps: int, *, lod: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Images along the straight line from ``w_a`` to ``w_b`` in W (both ``[latent]``), ends
    included: ``[steps, C, R, R]``. The noise images are the same at every step."""
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (the two ends included), got {steps!r}")
    t = torch.linspace(0.0, 1.0, steps).view(-1, 1)
    w = torch.lerp(w_a.view(1, -1), w_b.view(1, -1), t.to(w_a.dtype))
    return decode(model, w, lod=lod, batch_size=steps, seed=seed)


def style_levels(model: ALAEBase, lod: int | None = None) -> dict[str, range]:
    """The style slots of each level for this model at ``lod``: :data:`STYLE_LEVELS`, or, for a
    generator of less than 64 px (no fine level), its used slots split in three."""
    if isinstance(model, MLPALAE):
        raise ValueError("style mixing needs a StyleALAE: the MLP generator takes a single w for the whole image")
    used = 2 * (model_lod(model, lod) + 1)
    if used > STYLE_LEVELS["fine"][0]:
        return {name: range(a, used if b is None else min(b, used)) for name, (a, b) in STYLE_LEVELS.items()}
    cuts = [0, math.ceil(used / 3), math.ceil(2 * used / 3), used]
    return {name: range(cuts[i], cuts[i + 1]) for i, name in enumerate(STYLE_LEVELS)}


def default_row_levels(rows: int) -> list[str]:
    """The ALAE figure's pattern: the first half of the rows coarse, the last sixth fine (at
    least one row when there are three or more), the rest middle (3/2/1 for six rows)."""
    coarse = math.ceil(rows / 2)
    fine = max(1, rows // 6) if rows >= 3 else 0
    return ["coarse"] * coarse + ["middle"] * (rows - coarse - fine) + ["fine"] * fine


def style_mix(
    model: ALAEBase,
    row_w: torch.Tensor,
    col_w: torch.Tensor,
    *,
    levels: Sequence[str] | None = None,
    lod: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> torch.Tensor:
    """The style-mixing figure: ``[(rows + 1) * (cols + 1), C, R, R]``, row-major.

    Cell (0, 0) is blank (-1), row 0 holds the column sources G(col_w), column 0 the row sources
    G(row_w); cell (r, c) is row r's styles with those of level ``levels[r - 1]`` (``"coarse"``,
    ``"middle"``, ``"fine"``; default :func:`default_row_levels`) taken from column c.
    """
    lod = model_lod(model, lod)
    bands = style_levels(model, lod)
    rows, cols = row_w.shape[0], col_w.shape[0]
    if rows < 1 or cols < 1:
        raise ValueError("style_mix needs at least one row and one column source")
    levels = list(levels) if levels is not None else default_row_levels(rows)
    if len(levels) != rows:
        raise ValueError(f"levels must name one level per row ({rows}), got {len(levels)}")
    for level in levels:
        if level not in bands:
            raise ValueError(f"levels: {level!r} is not one of {list(bands)}")
        if len(bands[level]) == 0:
            raise ValueError(f"levels: this model has no {level!r} styles at lod {lod}")
    slots = model.num_layers
    mixed = row_w.view(rows, 1, 1, -1).expand(rows, cols, slots, -1).clone()
    for r, level in enumerate(levels):
        band = bands[level]
        mixed[r, :, band.start : band.stop] = col_w.view(cols, 1, -1)
    sources = decode(model, torch.cat([col_w, row_w]), lod=lod, seed=seed, batch_size=batch_size)
    cells = decode(model, mixed.reshape(rows * cols, slots, -1), lod=lod, seed=seed, batch_size=batch_size)
    blank = torch.full_like(sources[:1], -1.0)
    grid = [blank, sources[:cols]]
    for r in range(rows):
        grid += [sources[cols + r : cols + r + 1], cells[r * cols : (r + 1) * cols]]
    return torch.cat(grid)


@torch.no_grad()
def pca_directions(
    model: ALAEBase, k: int, *, samples: int = 10000, seed: int = 0, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal directions of W from ``samples`` codes F(z) (seeds ``seed ..``).

    Returns:
        ``(directions, std)``: unit vectors float32 ``[k, latent]`` by decreasing variance (each
        signed so that its largest component is positive), and the standard deviation of W
        along each ``[k]``.
    """
    if not isinstance(k, int) or not 1 <= k <= model.latent_size:
        raise ValueError(f"k must be an int in [1, {model.latent_size}] (the latent size), got {k!r}")
    if samples <= k:
        raise ValueError(f"samples must exceed k ({k}), got {samples}")
    w = sample_w(model, range(seed, seed + samples), batch_size=batch_size).double()
    centred = w - w.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    dirs = vh[:k]
    signs = torch.sign(dirs.gather(1, dirs.abs().argmax(1, keepdim=True)))
    return (dirs * signs).float(), (s[:k] / math.sqrt(samples - 1)).float()


def edit(
    model: ALAEBase,
    images: torch.Tensor,
    direction: torch.Tensor,
    strengths: Sequence[float],
    *,
    lod: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> torch.Tensor:
    """Move each image's code along ``direction`` ``[latent]``: ``G(E(x) + s * direction)``
    for every ``s`` of ``strengths``. Returns ``[N, len(strengths), C, R, R]``."""
    direction = torch.as_tensor(direction, dtype=torch.float32).reshape(-1)
    if direction.numel() != model.latent_size:
        raise ValueError(f"direction must have {model.latent_size} values (the latent size), got {direction.numel()}")
    if len(strengths) == 0:
        raise ValueError("strengths must hold at least one value")
    w = encode(model, images, lod=lod, batch_size=batch_size)
    s = torch.tensor([float(v) for v in strengths]).view(1, -1, 1)
    moved = (w.unsqueeze(1) + s * direction.view(1, 1, -1)).reshape(-1, model.latent_size)
    out = decode(model, moved, lod=lod, seed=seed, batch_size=batch_size)
    return out.view(w.shape[0], len(strengths), *out.shape[1:])


# ---- image files ---------------------------------------------------------------------------------


def _channels_of(image: Image.Image) -> int:
    """1 for grey modes (with or without alpha), else 3."""
    return 1 if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3


def _read_one(path: Path, resolution: int, channels: int, mnist_padding: bool) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            found = _channels_of(image)
            if found != channels:
                raise ValueError(
                    f"{path}: a {found}-channel image ({image.mode}), but the model takes {channels}-channel images; "
                    f"convert it first (e.g. PIL's image.convert({'L' if channels == 1 else 'RGB'!r}))"
                )
            if mnist_padding and image.size == (28, 28) and resolution == 32:
                # MNIST models learned 28x28 digits padded to 32x32, not resized.
                pixels = np.asarray(square_image(image, 28, channels))
                return np.pad(pixels, ((2, 2), (2, 2), (0, 0)))
            return square_image(image, resolution, channels)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path} is not a readable image: {exc}") from exc


def read_images(
    inputs: Sequence[str | os.PathLike], model: ALAEBase, *, progress: bool = False
) -> tuple[torch.Tensor, list[str]]:
    """Read image files and folders (searched recursively, sorted) for ``model``.

    Each image is centre-cropped to a square and resized to the model's data resolution
    (:func:`~alae_fast.data.square_image`; a 28x28 image for an MNIST model is padded to 32x32
    as in training). Its channel count must be the model's.

    Returns:
        ``(images, names)``: uint8 ``[N, C, S, S]`` and the path of each image, in order.

    Raises:
        FileNotFoundError: an input that does not exist. ValueError: a file that is not an image,
        an image with another channel count, or inputs with no image at all.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found, _ = list_image_files(path)
            if not found:
                raise ValueError(f"{path} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            files += [path / name for name in found]
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    if not files:
        raise ValueError("no input images given")
    resolution = model.image_size(model.layer_count - 1)
    mnist_padding = model.config is not None and model.config.data.dataset == "mnist" and resolution == 32
    it = files
    if progress and len(files) > 64:
        from tqdm import tqdm

        it = tqdm(files, desc="read", unit="image")
    pixels = [_read_one(f, resolution, model.channels, mnist_padding) for f in it]
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous(), [str(f) for f in files]
