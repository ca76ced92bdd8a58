"""The commands that use a trained model: ``convert-official``, ``generate``, ``reconstruct``,
``encode``, ``interpolate``, ``style-mix``, ``directions``, ``edit`` and ``metrics``.

Each takes one of our checkpoints or an official ALAE file (:func:`alae_fast.load`) and runs the
functions of :mod:`alae_fast.inference` / :mod:`alae_fast.metrics`; pictures are PNG grids
enlarged (``--scale``) so that small images stay visible.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["add_model_commands", "MODEL_COMMANDS", "run_model_command"]

_DESCRIPTION = {
    "generate": "sample images G(F(z)) from seeds",
    "reconstruct": "encode and decode images: originals beside reconstructions",
    "encode": "W codes of images, as a float32 .npy array [N, latent] with the file names beside it",
    "interpolate": "a strip of images along the straight line between two codes in W",
    "style-mix": "the style-mixing figure: coarse, middle or fine styles of the row sources replaced by the columns'",
    "directions": "principal directions of W (PCA of sampled codes), an .npy array [K, latent] of unit vectors",
    "edit": "move images' codes along a direction in W: a strip per image, one column per strength",
    "metrics": "FID of samples and of reconstructions, and perceptual path length, by the official protocol",
}
MODEL_COMMANDS = ("convert-official", *_DESCRIPTION)


def _common(p: argparse.ArgumentParser, picture: bool = True) -> None:
    p.add_argument("checkpoint", help="an alae_fast checkpoint or an official ALAE .pth file")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise images and samples (default 0)")
    p.add_argument(
        "--weights",
        choices=("ema", "model"),
        default="ema",
        help="ema: the averaged weights (default); model: the trained ones",
    )
    p.add_argument("--impl", choices=("fast", "ref", "cpu", "cuda", "triton"), default="fast", help="op implementation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    if picture:
        p.add_argument(
            "--scale", type=int, help="enlarge the PNG by this integer factor (default: tiles of at least 128 px)"
        )


def add_model_commands(sub) -> None:
    """Add the model commands to an ``add_subparsers`` object."""
    c = sub.add_parser(
        "convert-official",
        help="write an official ALAE .pth file as an alae_fast checkpoint",
        description="The architecture is read off the tensor shapes; the trained and the EMA weights are "
        "copied unchanged. The result is for inference (every command reads it), not for resuming training.",
    )
    c.add_argument("src", help="the official .pth file")
    c.add_argument("dst", help="the checkpoint to write")

    g = sub.add_parser("generate", help=_DESCRIPTION["generate"])
    _common(g)
    g.add_argument("--count", type=int, default=16, help="number of samples: seeds SEED .. SEED+COUNT-1 (default 16)")
    g.add_argument("--truncation", type=float, help="truncation psi towards the mean W (default: none)")
    g.add_argument("--out", default="generated.png", help="the grid PNG (default generated.png)")
    g.add_argument("--outdir", help="also write each sample as its own PNG (seed%%06d.png) in this folder")

    r = sub.add_parser("reconstruct", help=_DESCRIPTION["reconstruct"])
    _common(r)
    r.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    r.add_argument("--out", required=True, help="the grid PNG: each original followed by its reconstruction")

    e = sub.add_parser("encode", help=_DESCRIPTION["encode"])
    _common(e, picture=False)
    e.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    e.add_argument("--out", required=True, help="the codes (.npy); the file names go to the same name with .txt")

    i = sub.add_parser("interpolate", help=_DESCRIPTION["interpolate"])
    _common(i)
    ends = i.add_mutually_exclusive_group(required=True)
    ends.add_argument("--seeds", type=int, nargs=2, metavar=("A", "B"), help="two sample seeds")
    ends.add_argument("--images", nargs=2, metavar=("A", "B"), help="two images (encoded; shown at the ends)")
    i.add_argument("--steps", type=int, default=8, help="images along the line, ends included (default 8)")
    i.add_argument("--out", required=True, help="the strip PNG")

    m = sub.add_parser("style-mix", help=_DESCRIPTION["style-mix"])
    _common(m)
    m.add_argument("--row-seeds", type=int, nargs="+", required=True, help="seeds of the row sources")
    m.add_argument("--col-seeds", type=int, nargs="+", required=True, help="seeds of the column sources")
    m.add_argument(
        "--levels",
        nargs="+",
        choices=("coarse", "middle", "fine"),
        help="the level each row takes from the columns (default: half coarse, a sixth fine, the rest middle)",
    )
    m.add_argument("--out", required=True, help="the grid PNG")

    d = sub.add_parser("directions", help=_DESCRIPTION["directions"])
    _common(d, picture=False)
    d.add_argument("--pca", type=int, required=True, metavar="K", help="number of principal directions")
    d.add_argument("--samples", type=int, default=10000, help="sampled codes to analyse (default 10000)")
    d.add_argument("--out", required=True, help="the directions (.npy); their standard deviations go to .json beside")

    t = sub.add_parser("edit", help=_DESCRIPTION["edit"])
    _common(t)
    t.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files or folders")
    t.add_argument("--direction", required=True, help=".npy file: one direction [latent] or several [K, latent]")
    t.add_argument("--index", type=int, default=0, help="which direction of the file (default 0)")
    t.add_argument(
        "--strength",
        type=float,
        nargs="+",
        default=[-3.0, -1.5, 0.0, 1.5, 3.0],
        help="steps along the direction, in W units (default -3 -1.5 0 1.5 3)",
    )
    t.add_argument("--out", required=True, help="the PNG: per image, the original then one column per strength")

    q = sub.add_parser("metrics", help=_DESCRIPTION["metrics"])
    _common(q, picture=False)
    q.set_defaults(batch_size=16)
    q.add_argument(
        "--data", required=True, help="the training images: MNIST files, an image folder or a prepared dataset"
    )
    q.add_argument(
        "--metrics", default="fid,rec_fid,ppl_full,ppl_end", help="comma-separated: fid, rec_fid, ppl_full, ppl_end"
    )
    q.add_argument("--num", type=int, default=50000, help="images per FID set and PPL samples (default 50000)")
    q.add_argument(
        "--ppl-crop",
        choices=("auto", "face", "celeba", "none"),
        default="auto",
        help="PPL crop (official: face; celeba for CelebA); auto: celeba for a celeba config, "
        "none for 1-channel models",
    )
    q.add_argument("--json", help="also write the results as JSON to this file")


def _scale(args, side: int) -> int:
    from .utils.images import display_scale

    return args.scale if args.scale is not None else display_scale(side)


def _load(args):
    from .checkpoints import load

    impl = None if args.impl == "fast" else args.impl
    return load(args.checkpoint, ema=args.weights == "ema", device=args.device, impl=impl)


def _save(images: torch.Tensor, path: str, nrow: int, args) -> None:
    from .utils.images import save_grid

    save_grid(images, path, nrow=nrow, scale=_scale(args, images.shape[-1]))
    print(f"wrote {path}")


def _generate(args) -> None:
    from . import inference

    model = _load(args)
    images = inference.generate(
        model,
        args.count,
        seed=args.seed,
        truncation=args.truncation,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    _save(images, args.out, max(1, math.ceil(math.sqrt(len(images)))), args)
    if args.outdir:
        from .utils.images import save_grid

        for k, image in enumerate(images):
            save_grid(
                image[None],
                Path(args.outdir) / f"seed{args.seed + k:06d}.png",
                padding=0,
                scale=_scale(args, image.shape[-1]),
            )
        print(f"wrote {len(images)} images to {args.outdir}")


def _inputs(model, args, paths):
    from . import inference

    images, names = inference.read_images(paths, model, progress=not args.no_progress)
    return images, names


def _reconstruct(args) -> None:
    from . import inference

    model = _load(args)
    images, _ = _inputs(model, args, args.inputs)
    x = inference.to_model_input(model, images)
    rec = inference.reconstruct(model, x, batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress)
    pairs = torch.stack([x, rec], dim=1).flatten(0, 1)
    _save(pairs, args.out, 2 * min(len(x), 8), args)


def _encode(args) -> None:
    from . import inference

    model = _load(args)
    images, names = _inputs(model, args, args.inputs)
    w = inference.encode(model, images, batch_size=args.batch_size, progress=not args.no_progress)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, w.numpy().astype(np.float32))
    names_file = out.with_suffix(".txt")
    names_file.write_text("".join(f"{name}\n" for name in names))
    print(f"wrote {tuple(w.shape)} codes to {out} and their file names to {names_file}")


def _interpolate(args) -> None:
    from . import inference

    model = _load(args)
    if args.seeds is not None:
        w = inference.sample_w(model, args.seeds)
        strip = inference.interpolate(model, w[0], w[1], args.steps, seed=args.seed)
    else:
        images, _ = _inputs(model, args, args.images)
        x = inference.to_model_input(model, images)
        w = inference.encode(model, x)
        strip = torch.cat([x[:1], inference.interpolate(model, w[0], w[1], args.steps, seed=args.seed), x[1:]])
    _save(strip, args.out, len(strip), args)


def _style_mix(args) -> None:
    from . import inference

    model = _load(args)
    rows, cols = inference.sample_w(model, args.row_seeds), inference.sample_w(model, args.col_seeds)
    grid = inference.style_mix(model, rows, cols, levels=args.levels, seed=args.seed, batch_size=args.batch_size)
    _save(grid, args.out, len(args.col_seeds) + 1, args)


def _directions(args) -> None:
    from . import inference

    model = _load(args)
    dirs, std = inference.pca_directions(model, args.pca, samples=args.samples, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, dirs.numpy())
    info = {"kind": "pca", "checkpoint": str(args.checkpoint), "samples": args.samples, "std": std.tolist()}
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {tuple(dirs.shape)} unit directions to {out}; standard deviation of W along each:")
    for k, s in enumerate(std.tolist()):
        print(f"  {k:3d}  {s:.4f}")


def read_direction(path: str, index: int, latent_size: int) -> torch.Tensor:
    """Row ``index`` of an .npy direction file ([latent] or [K, latent])."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--direction: {file} does not exist")
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"--direction: {file} is not an .npy array: {exc}") from exc
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != latent_size:
        raise ValueError(
            f"--direction: {file} holds shape {list(array.shape)}; expected [K, {latent_size}] or [{latent_size}]"
        )
    if not 0 <= index < array.shape[0]:
        raise ValueError(f"--index {index} is out of range: {file} holds {array.shape[0]} direction(s)")
    if not np.isfinite(array[index]).all():
        raise ValueError(f"--direction: row {index} of {file} is not finite")
    return torch.from_numpy(np.asarray(array[index], dtype=np.float32))


def _edit(args) -> None:
    from . import inference

    model = _load(args)
    direction = read_direction(args.direction, args.index, model.latent_size)
    images, _ = _inputs(model, args, args.inputs)
    x = inference.to_model_input(model, images)
    moved = inference.edit(model, x, direction, args.strength, seed=args.seed, batch_size=args.batch_size)
    rows = torch.cat([x.unsqueeze(1), moved], dim=1)
    _save(rows.flatten(0, 1), args.out, rows.shape[1], args)


def _ppl_crop(model, choice: str) -> str:
    if choice != "auto":
        return choice
    if model.channels == 1:
        return "none"
    return "celeba" if model.config.name == "celeba" else "face"


def real_batches(model, data: str, num: int, batch_size: int):
    """A callable giving the first ``num`` training images of ``data`` as uint8 batches at the
    model's resolution (box-filtered down from the data resolution, then rounded)."""
    from . import inference
    from .data import ImageFolderDataset
    from .data import PreparedDataset
    from .data import is_prepared
    from .data import load_mnist
    from .data import pad_to

    resolution, channels = model.image_size(model.layer_count - 1), model.channels
    images: torch.Tensor | PreparedDataset | ImageFolderDataset
    if model.config.data.dataset == "mnist":
        images = pad_to(load_mnist("train", data, download=False)[0], 32).unsqueeze(1)
    elif is_prepared(data):
        images = PreparedDataset(data, resolution, channels=channels)
    elif Path(data).is_dir():
        images = ImageFolderDataset(data, resolution, channels=channels)
    else:
        raise FileNotFoundError(f"--data {data} is neither a folder of images nor a prepared dataset")
    size = min(num, len(images))

    def batches():
        for start in range(0, size, batch_size):
            stop = min(size, start + batch_size)
            if isinstance(images, torch.Tensor):
                chunk = images[start:stop]
            else:
                chunk = torch.stack([images[k] for k in range(start, stop)])
            x = inference.to_model_input(model, chunk)
            yield torch.floor((x + 1.0) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)

    return batches


def _metrics(args) -> None:
    from .metrics import METRICS
    from .metrics import compute_metrics

    names = [n.strip() for n in args.metrics.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(f"--metrics: unknown metric(s) {unknown or names}; choose from {', '.join(METRICS)}")
    model = _load(args)
    result = compute_metrics(
        model,
        model.trained_lod,
        names,
        real_batches=real_batches(model, args.data, args.num, args.batch_size)
        if {"fid", "rec_fid"} & set(names)
        else None,
        num=args.num,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
        ppl_crop=_ppl_crop(model, args.ppl_crop),
    )
    for name, value in result.items():
        print(f"{name:10s} {value:.4f}")
    if args.json:
        info = {"checkpoint": str(args.checkpoint), "weights": args.weights, "num": args.num, **result}
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")


def _convert(args) -> None:
    from .checkpoints import convert_official

    print(f"wrote {convert_official(args.src, args.dst)}")


_RUN = {
    "convert-official": _convert,
    "generate": _generate,
    "reconstruct": _reconstruct,
    "encode": _encode,
    "interpolate": _interpolate,
    "style-mix": _style_mix,
    "directions": _directions,
    "edit": _edit,
    "metrics": _metrics,
}


def run_model_command(args) -> int:
    if getattr(args, "batch_size", 1) < 1:
        raise ValueError(f"--batch-size must be a positive number, got {args.batch_size}")
    if getattr(args, "scale", None) is not None and args.scale < 1:
        raise ValueError(f"--scale must be a positive integer, got {args.scale}")
    _RUN[args.command](args)
    return 0
