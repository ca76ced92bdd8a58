"""The official ALAE evaluation protocol (podgorskiy/ALAE ``metrics/fid.py``, ``fid_rec.py``,
``ppl.py``) on PyTorch feature networks: generation FID, reconstruction FID and PPL in W.

The feature network (``features``: uint8 images [N, 3, H, W] -> [N, D]) and the perceptual
distance (``distance``: two float image batches in [-1, 1] -> [N]) are arguments, so the protocol
runs with stand-ins; :func:`compute_metrics` builds the real ones (Inception-v3, LPIPS VGG16)
from :mod:`alae_fast.metrics.networks` when it needs them. Single-channel images are repeated to
three channels before either network sees them.

``model`` is an ALAE model (:class:`~alae_fast.reference.model.ALAEBase` or anything with its
``generate``, ``reconstruct``, ``mapping``, ``decoder``, ``num_layers``, ``latent_size`` and
``dlatent_avg_beta``). It is run in eval mode under ``torch.no_grad()``; its training flags and
``dlatent_avg_beta`` are restored afterwards, so its state is unchanged (``generate`` would
otherwise update the running w average). Inputs are put on ``device`` (default: the model's
device, where the model must already be).

Seeding: the latents (and PPL's t) come from ``torch.Generator().manual_seed(seed)`` on the CPU;
the decoder's noise images from the global RNG, seeded once per pass with a value derived from
``seed`` (not ``seed`` itself, which would make the noise replay the latents' numbers) and
restored afterwards. Numbers repeat exactly for the same seed on the same machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import networks
from .frechet import FeatureStatistics

__all__ = [
    "METRICS",
    "CROPS",
    "SAMPLINGS",
    "to_uint8",
    "crop_images",
    "downsample_to_256",
    "filtered_mean",
    "generation_fid",
    "reconstruction_fid",
    "perceptual_path_distances",
    "perceptual_path_length",
    "compute_metrics",
]

Features = Callable[[torch.Tensor], torch.Tensor]
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: A zero-argument callable returning a fresh iterable of uint8 batches [B, C, R, R] (or such an
#: iterable itself, for the single-metric functions).
RealBatches = Callable[[], Iterable[torch.Tensor]] | Iterable[torch.Tensor]

METRICS = ("fid", "rec_fid", "ppl_full", "ppl_end")
CROPS = ("face", "celeba", "none")
SAMPLINGS = ("full", "end")


# -- image conversions ---------------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in about [-1, 1] to uint8 exactly as the official code does:
    ``clip((x + 1) * 127, 0, 255)`` truncated toward zero.

    The factor is 127, not 127.5 (an official quirk: white maps to 254): kept so that FID numbers
    are comparable with the paper's.
    """
    return ((images.float() + 1.0) * 127.0).clamp(0.0, 255.0).to(torch.uint8)


def _public(model: Any, images: torch.Tensor) -> torch.Tensor:
    """G's images in [-1, 1] (``model.pixels_from_model``; models without it make [-1, 1])."""
    convert = getattr(model, "pixels_from_model", None)
    return images if convert is None else convert(images)


def _private(model: Any, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] in the range E takes (``model.pixels_to_model``)."""
    convert = getattr(model, "pixels_to_model", None)
    return images if convert is None else convert(images)


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """Single-channel images repeated to three channels (the networks expect RGB)."""
    return images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


def crop_images(images: torch.Tensor, crop: str) -> torch.Tensor:
    """The PPL crop of images [N, C, R, R] (R = ``images.shape[2]``).

    "face" (official default): rows ``3c:7c``, columns ``2c:6c`` with ``c = R // 8``.
    "celeba" (official ``PPL_CELEBA_ADJUSTMENT``): a box of side ``int(R * 4/8 * 2/1.641)``
    (rows and columns), centred on row ``int(R * 5/8)`` and column ``int(R / 2)``.
    "none": the whole image.
    """
    _check_choice("crop", crop, CROPS)
    side = images.shape[2]
    if crop == "face":
        c = side // 8
        return images[:, :, 3 * c : 7 * c, 2 * c : 6 * c]
    if crop == "celeba":
        h = int((7 - 3) / 8 * (2 / 1.6410) * side)
        w = int((6 - 2) / 8 * (2 / 1.6410) * side)
        vc = int((7 + 3) / 2 / 8 * side)
        hc = int((6 + 2) / 2 / 8 * side)
        return images[:, :, vc - h // 2 : vc + h // 2, hc - w // 2 : hc + w // 2]
    return images


def downsample_to_256(images: torch.Tensor) -> torch.Tensor:
    """Box-average images [N, C, H, W] down by ``factor = H // 256`` when that is above 1 (the
    official PPL step for large images). Rows and columns beyond a multiple of the factor are
    dropped (the official code assumes there are none)."""
    factor = images.shape[2] // 256
    if factor <= 1:
        return images
    n, c, h, w = images.shape
    h2, w2 = h // factor, w // factor
    images = images[:, :, : h2 * factor, : w2 * factor]
    return images.reshape(n, c, h2, factor, w2, factor).mean(dim=(3, 5))


def filtered_mean(distances) -> float:
    """Mean of the distances between their 1st (``method="lower"``) and 99th
    (``method="higher"``) percentiles, both included: the official PPL outlier rejection."""
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    if d.size == 0:
        raise ValueError("distances is empty")
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    return float(d[(lo <= d) & (d <= hi)].mean())


# -- checks and context --------------------------------------------------------------------------
def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")


def _check_counts(num: int, batch_size: int) -> None:
    if int(num) < 2:
        raise ValueError(f"num must be at least 2 (a covariance needs two samples), got {num}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def _model_device(model: Any, device: torch.device | str | None) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def _noise_seed(seed: int) -> int:
    """The seed of the global RNG (the decoder's noise images), derived from ``seed`` so that the
    noise stream is not the same sequence as the latents drawn from ``torch.Generator(seed)``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, 0x6E6F697365]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


@contextlib.contextmanager
def _evaluating(model: Any, device: torch.device, seed: int) -> Iterator[None]:
    """Eval mode, no grad, no running-average update, and the global RNG seeded for the noise;
    the model's training flags, ``dlatent_avg_beta`` and the caller's RNG state are restored."""
    modes = [(m, m.training) for m in model.modules()]
    has_beta = hasattr(model, "dlatent_avg_beta")
    beta = model.dlatent_avg_beta if has_beta else None
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        model.eval()
        if has_beta:
            model.dlatent_avg_beta = None
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            torch.manual_seed(_noise_seed(seed))
            yield
    finally:
        if has_beta:
            model.dlatent_avg_beta = beta
        for module, training in modes:
            module.training = training


def _real_chunks(real_batches: RealBatches, num: int, batch_size: int) -> Iterator[torch.Tensor]:
    """The first ``num`` real images, in chunks of at most ``batch_size``."""
    source = real_batches() if callable(real_batches) else real_batches
    seen = 0
    for batch in source:
        if seen >= num:
            break
        if isinstance(batch, (tuple, list)):  # (images, labels) from a data loader
            batch = batch[0]
        if not isinstance(batch, torch.Tensor) or batch.dtype != torch.uint8 or batch.dim() != 4:
            raise ValueError("real_batches must yield uint8 tensors [B, C, R, R]")
        batch = batch[: num - seen]
        for start in range(0, batch.shape[0], batch_size):
            chunk = batch[start : start + batch_size]
            seen += chunk.shape[0]
            yield chunk
    if seen < num:
        raise ValueError(
            f"real_batches yielded only {seen} images, fewer than num={num} (FID compares num real images "
            f"against num generated or reconstructed ones)"
        )


# -- FID -----------------------------------------------------------------------------------------
def _real_statistics(
    model: Any,
    lod: int,
    real_batches: RealBatches,
    *,
    num: int,
    batch_size: int,
    features: Features,
    device: torch.device,
    seed: int,
    progress: bool,
    reconstruct: bool,
) -> tuple[FeatureStatistics, FeatureStatistics | None]:
    """Features of the first ``num`` real images and, if ``reconstruct``, of their
    reconstructions (x -> x / 127.5 - 1 -> E -> G -> uint8), in one pass over the data."""
    real = FeatureStatistics()
    rec = FeatureStatistics() if reconstruct else None
    desc = "real + reconstructions" if reconstruct else "real images"
    with _evaluating(model, device, seed), tqdm(total=num, desc=desc, disable=not progress) as bar:
        for x in _real_chunks(real_batches, num, batch_size):
            x = x.to(device)
            real.update(features(_rgb(x)))
            if rec is not None:
                fake = _public(model, model.reconstruct(_private(model, x.float() / 127.5 - 1.0), lod))
                rec.update(features(_rgb(to_uint8(fake))))
            bar.update(x.shape[0])
    return real, rec


def _generated_statistics(
    model: Any,
    lod: int,
    *,
    num: int,
    batch_size: int,
    features: Features,
    device: torch.device,
    seed: int,
    progress: bool,
) -> FeatureStatistics:
    """Features of ``num`` samples: z ~ N(0, I) from ``torch.Generator(seed)``, no truncation,
    no style mixing, per-sample noise."""
    generator = torch.Generator().manual_seed(int(seed))
    stats = FeatureStatistics()
    with _evaluating(model, device, seed), tqdm(total=num, desc="generated images", disable=not progress) as bar:
        for start in range(0, num, batch_size):
            n = min(batch_size, num - start)
            z = torch.randn(n, model.latent_size, generator=generator).to(device)
            images = _public(model, model.generate(lod, 1.0, z=z, mixing=False, noise=True, no_truncation=True))
            stats.update(features(_rgb(to_uint8(images))))
            bar.update(n)
    return stats


def generation_fid(
    model: Any,
    lod: int,
    real_batches: RealBatches,
    *,
    num: int,
    batch_size: int = 16,
    features: Features,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> float:
    """FID between ``num`` samples of ``model`` at ``lod`` and the first ``num`` real images."""
    return _one_fid("fid", model, lod, real_batches, num, batch_size, features, device, seed, progress)


def reconstruction_fid(
    model: Any,
    lod: int,
    real_batches: RealBatches,
    *,
    num: int,
    batch_size: int = 16,
    features: Features,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> float:
    """FID between the reconstructions of the first ``num`` real images and those images."""
    return _one_fid("rec_fid", model, lod, real_batches, num, batch_size, features, device, seed, progress)


def _one_fid(name, model, lod, real_batches, num, batch_size, features, device, seed, progress) -> float:
    source = real_batches if callable(real_batches) else lambda: real_batches
    return compute_metrics(
        model,
        lod,
        [name],
        real_batches=source,
        num=num,
        batch_size=batch_size,
        device=device,
        seed=seed,
        progress=progress,
        features=features,
    )[name]


# -- PPL -----------------------------------------------------------------------------------------
def perceptual_path_distances(
    model: Any,
    lod: int,
    *,
    num: int,
    sampling: str = "full",
    epsilon: float = 1e-4,
    crop: str = "face",
    batch_size: int = 16,
    distance: Distance,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """The ``num`` unfiltered per-pair PPL distances (float64), ``d(G(w_t), G(w_{t+eps})) / eps^2``.

    Per batch of n: ``z0`` [n, latent], then ``z1`` [n, latent], then (``sampling="full"``) ``t``
    [n] ~ U(0, 1) are drawn from ``torch.Generator(seed)`` (``t = 0`` for ``"end"``);
    ``w = mapping(z)``, the two interpolants are decoded together (the n first points, then the
    n second points) with one noise image shared by the batch, cropped, box-downsampled to about
    256 if larger, and compared by ``distance``.
    """
    _check_counts(num, batch_size)
    _check_choice("sampling", sampling, SAMPLINGS)
    _check_choice("crop", crop, CROPS)
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    dev = _model_device(model, device)
    generator = torch.Generator().manual_seed(int(seed))
    out: list[np.ndarray] = []
    with _evaluating(model, dev, seed), tqdm(total=num, desc=f"PPL ({sampling})", disable=not progress) as bar:
        for start in range(0, num, batch_size):
            n = min(batch_size, num - start)
            z0 = torch.randn(n, model.latent_size, generator=generator)
            z1 = torch.randn(n, model.latent_size, generator=generator)
            t = torch.rand(n, generator=generator) if sampling == "full" else torch.zeros(n)
            w0 = model.mapping(z0.to(dev))
            w1 = model.mapping(z1.to(dev))
            t = t.to(dev, w0.dtype).unsqueeze(1)
            we0 = w0 + (w1 - w0) * t
            we1 = w0 + (w1 - w0) * (t + epsilon)
            styles = torch.cat([we0, we1]).unsqueeze(1).expand(-1, model.num_layers, -1)
            images = _public(model, model.decoder(styles, lod, 1.0, "batch_constant"))
            images = _rgb(downsample_to_256(crop_images(images, crop)))
            d = distance(images[:n], images[n:])
            out.append(d.detach().to("cpu", torch.float64).reshape(n).numpy() / epsilon**2)
            bar.update(n)
    return np.concatenate(out)


def perceptual_path_length(
    model: Any,
    lod: int,
    *,
    num: int,
    sampling: str = "full",
    epsilon: float = 1e-4,
    crop: str = "face",
    batch_size: int = 16,
    distance: Distance,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> float:
    """PPL in W: :func:`perceptual_path_distances` then :func:`filtered_mean`."""
    return filtered_mean(
        perceptual_path_distances(
            model,
            lod,
            num=num,
            sampling=sampling,
            epsilon=epsilon,
            crop=crop,
            batch_size=batch_size,
            distance=distance,
            device=device,
            seed=seed,
            progress=progress,
        )
    )


# -- all together --------------------------------------------------------------------------------
def compute_metrics(
    model: Any,
    lod: int,
    names: str | Sequence[str],
    *,
    real_batches: Callable[[], Iterable[torch.Tensor]] | None = None,
    num: int = 50000,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = False,
    features: Features | None = None,
    distance: Distance | None = None,
    ppl_crop: str = "face",
) -> dict[str, float]:
    """The metrics ``names`` (from ``"fid"``, ``"rec_fid"``, ``"ppl_full"``, ``"ppl_end"``) of
    ``model`` at ``lod``, in the order asked.

    ``real_batches`` (needed for the FIDs) returns a fresh iterable of uint8 batches; the real
    statistics are computed once, in the same pass as the reconstructions. ``features`` and
    ``distance`` default to Inception-v3 and LPIPS on ``device``, built only when needed. Each
    metric gives the same number as its own function called with the same ``seed``.
    """
    wanted = [names] if isinstance(names, str) else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in METRICS]
    if unknown:
        raise ValueError(f"names has unknown metric(s) {unknown}; valid ones: {', '.join(METRICS)}")
    if not wanted:
        raise ValueError(f"names is empty; valid ones: {', '.join(METRICS)}")
    _check_counts(num, batch_size)
    _check_choice("ppl_crop", ppl_crop, CROPS)
    need_fid = [n for n in wanted if n in ("fid", "rec_fid")]
    if need_fid and real_batches is None:
        raise ValueError(f"real_batches is needed for {' and '.join(need_fid)}")

    dev = _model_device(model, device)
    results: dict[str, float] = {}
    if need_fid:
        assert real_batches is not None
        feats = features if features is not None else networks.inception_features(dev)
        real, rec = _real_statistics(
            model,
            lod,
            real_batches,
            num=num,
            batch_size=batch_size,
            features=feats,
            device=dev,
            seed=seed,
            progress=progress,
            reconstruct="rec_fid" in wanted,
        )
        if rec is not None:
            results["rec_fid"] = rec.frechet_distance(real)
        if "fid" in wanted:
            fake = _generated_statistics(
                model, lod, num=num, batch_size=batch_size, features=feats, device=dev, seed=seed, progress=progress
            )
            results["fid"] = fake.frechet_distance(real)
    ppl = [n for n in wanted if n.startswith("ppl_")]
    if ppl:
        dist = distance if distance is not None else networks.lpips_distance(dev)
        for name in ppl:
            results[name] = perceptual_path_length(
                model,
                lod,
                num=num,
                sampling=name[len("ppl_") :],
                crop=ppl_crop,
                batch_size=batch_size,
                distance=dist,
                device=dev,
                seed=seed,
                progress=progress,
            )
    return {name: results[name] for name in wanted}
