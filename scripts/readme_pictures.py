"""Make README's "Using a trained model" pictures: run each command on a checkpoint and keep what
it writes, plus two plots of the files that are not pictures (codes.npy, dirs.json).

    python scripts/readme_pictures.py runs/readme/checkpoint.pt --data ../shared/data/mnist --out docs/images/use

The checkpoint is an MNIST StyleALAE (the README says which run); the inputs are MNIST test digits
written as PNG files, as a user would have them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def command(*argv) -> None:
    cmd = [sys.executable, "-m", "alae_fast", *map(str, argv), "--no-progress"]
    print("$ alae-fast", " ".join(map(str, argv)), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="MNIST directory")
    p.add_argument("--out", default="docs/images/use")
    args = p.parse_args()
    out = Path(args.out)
    digits_dir = out / "inputs"
    digits_dir.mkdir(parents=True, exist_ok=True)

    from alae_fast.data import load_mnist

    images, labels = load_mnist("test", args.data)
    for k in range(8):
        Image.fromarray(images[k].numpy()).save(digits_dir / f"digit{k}.png")
    codes_dir = out.parent / f"{out.name}-codes"
    codes_dir.mkdir(exist_ok=True)
    for k in range(1000):
        Image.fromarray(images[k].numpy()).save(codes_dir / f"{k:04d}.png")

    ckpt = args.checkpoint
    digits = [digits_dir / f"digit{k}.png" for k in range(8)]
    command("generate", ckpt, "--count", 32, "--seed", 0, "--out", out / "generate.png")
    command("reconstruct", ckpt, *digits, "--out", out / "reconstruct.png")
    command("interpolate", ckpt, "--seeds", 1, 7, "--steps", 8, "--out", out / "interpolate_seeds.png")
    command(
        "interpolate", ckpt, "--images", digits[0], digits[1], "--steps", 8, "--out", out / "interpolate_images.png"
    )
    command(
        "style-mix",
        ckpt,
        "--row-seeds",
        1,
        2,
        3,
        4,
        5,
        6,
        "--col-seeds",
        11,
        12,
        13,
        14,
        15,
        "--out",
        out / "style_mix.png",
    )
    command("directions", ckpt, "--pca", 8, "--samples", 10000, "--out", out / "dirs.npy")
    std = json.loads((out / "dirs.json").read_text())["std"]
    command(
        "edit",
        ckpt,
        *digits[:4],
        "--direction",
        out / "dirs.npy",
        "--index",
        0,
        "--strength",
        *[s * std[0] for s in (-2, -1, 0, 1, 2)],
        "--out",
        out / "edit.png",
    )
    command("encode", ckpt, codes_dir, "--out", out / "codes.npy")

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    codes = np.load(out / "codes.npy")
    dirs = np.load(out / "dirs.npy")
    xy = (codes - codes.mean(0)) @ dirs[:2].T
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    scatter = a.scatter(xy[:, 0], xy[:, 1], c=labels[:1000].numpy(), cmap="tab10", s=6)
    a.set_title("encode: codes of 1000 test digits\n(on the first two directions)", fontsize=9)
    fig.colorbar(scatter, ax=a, ticks=range(10))
    b.bar(range(len(std)), std)
    b.set_title("directions --pca 8: std of W along each", fontsize=9)
    b.set_xlabel("direction")
    fig.tight_layout()
    fig.savefig(out / "encode_directions.png", dpi=100)
    for temp in (out / "codes.npy", out / "codes.txt", out / "dirs.npy", out / "dirs.json"):
        temp.unlink()
    for f in codes_dir.iterdir():
        f.unlink()
    codes_dir.rmdir()
    for f in digits_dir.iterdir():
        f.unlink()
    digits_dir.rmdir()


if __name__ == "__main__":
    main()
