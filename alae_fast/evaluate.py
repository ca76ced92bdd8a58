"""MNIST representation quality, the protocol of the ALAE paper (Table 1): encode the train and
test sets to w with E, then report the test accuracy of a 1-nearest-neighbour classifier and of
a linear classifier (linear SVM, C = 0.1) trained on the train codes.

Features are standardised with the train set's mean and std before the SVM (liblinear converges
badly on unscaled codes); the 1-NN uses raw Euclidean distances.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .checkpoints import build_model
from .checkpoints import load_checkpoint
from .data import mnist_images
from .reference.model import ALAEBase
from .train.config import config_from_dict

__all__ = ["encode_images", "knn1_accuracy", "linear_svm_accuracy", "evaluate_mnist", "format_table"]


@torch.no_grad()
def encode_images(model: ALAEBase, x: torch.Tensor, lod: int | None = None, batch_size: int = 1000) -> torch.Tensor:
    """E(x) for a stack of images [N, C, R, R] -> w [N, latent] (float32, on CPU)."""
    lod = model.layer_count - 1 if lod is None else lod
    device = next(model.parameters()).device
    out = [
        model.encode_w(x[i : i + batch_size].to(device), lod, 1.0)[:, 0].float().cpu()
        for i in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(out)


def knn1_accuracy(
    train_w: torch.Tensor, train_y: torch.Tensor, test_w: torch.Tensor, test_y: torch.Tensor, chunk: int = 1000
) -> float:
    """Accuracy of 1-nearest-neighbour (Euclidean) classification of ``test_w``."""
    if train_w.shape[0] == 0 or test_w.shape[0] == 0:
        raise ValueError("train_w and test_w must hold at least one code each")
    tw = train_w.double()
    correct = 0
    for i in range(0, test_w.shape[0], chunk):
        d = torch.cdist(test_w[i : i + chunk].double(), tw)
        correct += int((train_y[d.argmin(dim=1)] == test_y[i : i + chunk]).sum())
    return correct / test_w.shape[0]


def linear_svm_accuracy(
    train_w: torch.Tensor,
    train_y: torch.Tensor,
    test_w: torch.Tensor,
    test_y: torch.Tensor,
    c: float = 0.1,
    seed: int = 0,
) -> float:
    """Accuracy of a one-vs-rest linear SVM (scikit-learn ``LinearSVC``, C = ``c``) trained on
    standardised train codes."""
    from sklearn.svm import LinearSVC  # heavy import, only for evaluation

    mean, std = train_w.mean(0), train_w.std(0).clamp_min(1e-8)
    clf = LinearSVC(C=c, dual=False, max_iter=5000, random_state=seed)
    clf.fit(((train_w - mean) / std).numpy(), train_y.numpy())
    pred = clf.predict(((test_w - mean) / std).numpy())
    return float((torch.from_numpy(pred) == test_y).double().mean())


def evaluate_mnist(
    checkpoint: str | Path, data: str | None = None, weights: str = "ema", device: str = "cpu", limit: int | None = None
) -> dict:
    """Run the protocol on a training checkpoint.

    Args:
        checkpoint: an alae_fast training checkpoint.
        data: MNIST directory (default lookup otherwise).
        weights: ``"ema"`` (the averaged model, as used for samples) or ``"model"``.
        device: where to run the encoder.
        limit: use only the first ``limit`` train and test images (a quick check; the
            protocol uses all 60000 / 10000).
    Returns: dict with ``knn1``, ``linear_svm`` accuracies in [0, 1], sizes and timings.
    """
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_dict(ckpt["config"])
    if cfg.data.dataset != "mnist":
        raise ValueError(f"{checkpoint} was trained on {cfg.data.dataset!r}, not MNIST")
    model = build_model(cfg.model)
    model.load_state_dict(ckpt[weights])
    model.to(device).eval()
    lod = ckpt["progress"]["lod"]
    lod = model.layer_count - 1 if lod is None else lod
    t0 = time.time()
    res = 4 * 2**lod
    xtr, ytr = mnist_images("train", data, resolution=res)
    xte, yte = mnist_images("test", data, resolution=res)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be a positive number of images, got {limit}")
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[:limit], yte[:limit]
    wtr, wte = encode_images(model, xtr, lod), encode_images(model, xte, lod)
    t1 = time.time()
    knn = knn1_accuracy(wtr, ytr, wte, yte)
    t2 = time.time()
    svm = linear_svm_accuracy(wtr, ytr, wte, yte)
    t3 = time.time()
    return {
        "checkpoint": str(checkpoint),
        "weights": weights,
        "step": ckpt["progress"]["step"],
        "epoch": ckpt["progress"]["epoch"],
        "lod": lod,
        "train_size": len(ytr),
        "test_size": len(yte),
        "knn1": knn,
        "linear_svm": svm,
        "seconds": {"encode": t1 - t0, "knn1": t2 - t1, "linear_svm": t3 - t2},
    }


def format_table(result: dict) -> str:
    """A small markdown table of the accuracies."""
    rows = [("1-nearest neighbour", result["knn1"]), ("linear SVM (C=0.1)", result["linear_svm"])]
    lines = [
        f"MNIST, {result['train_size']} train / {result['test_size']} test codes, "
        f"{result['weights']} weights, step {result['step']}",
        "",
        "| classifier on w | test accuracy |",
        "|---|---|",
    ]
    lines += [f"| {name} | {100 * acc:.2f}% |" for name, acc in rows]
    return "\n".join(lines)
