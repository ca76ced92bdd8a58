"""MNIST representation quality: encode the train and test images with E, then report the test
accuracy of a 1-nearest-neighbour classifier and of a linear SVM trained on the train codes.

Two protocols:

``"master"`` (:func:`evaluate_mnist`, the default of ``alae-fast eval-mnist``): w of the EMA
encoder on the standard 60000/10000 split; the SVM (C = 0.1) is trained on codes standardised
with the train set's mean and std.

``"paper"`` (:func:`evaluate_mnist_paper`): what the official branch ``mnist_ref`` computes for
the paper's MNIST numbers (``Z_GAN.py`` ``eval()``): the live (not averaged) encoder; two
features, w (E's output) and h (E's 1024-wide hidden layer before its output layer); 1-NN with
Euclidean distances and ``LinearSVC(C=0.02, max_iter=5000)``, both on raw codes; and two splits,
different writers (the standard 60000 train / 10000 test files) and same writers (the official
50000/10000 split of the 60000 training images, :func:`alae_fast.data.same_writers_order`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .checkpoints import build_model
from .checkpoints import load_checkpoint
from .data import load_mnist_split
from .data import pad_to
from .data import uint8_to_float
from .data.transforms import downsample_to
from .reference.model import ALAEBase
from .train.config import config_from_dict

__all__ = [
    "PROTOCOLS",
    "PAPER_SPLITS",
    "encode_images",
    "encode_features",
    "mnist_inputs",
    "knn1_accuracy",
    "linear_svm_accuracy",
    "paper_svm_accuracy",
    "evaluate_mnist",
    "evaluate_mnist_paper",
    "format_table",
    "format_paper_table",
]

#: ``alae-fast eval-mnist --protocol``: the protocol -> the weights it uses by default.
PROTOCOLS = {"master": "ema", "paper": "model"}
#: The paper protocol's splits: result key -> the ``data.split`` name.
PAPER_SPLITS = {"different": "different-writers", "same": "same-writers"}


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


@torch.no_grad()
def encode_features(model: ALAEBase, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """E's output w [N, latent] and hidden layer h [N, 1024] (float32, on CPU) of the MLP model
    for a stack of images [N, C, R, R]."""
    features = getattr(model.encoder, "features", None)
    if features is None:
        raise ValueError("the paper protocol needs the MLP model (model.kind mlp): its E has the 1024-wide h layer")
    device = next(model.parameters()).device
    ws, hs = [], []
    for i in range(0, x.shape[0], batch_size):
        w, h = features(x[i : i + batch_size].to(device))
        ws.append(w.float().cpu())
        hs.append(h.float().cpu())
    return torch.cat(ws), torch.cat(hs)


def mnist_inputs(model: ALAEBase, images: torch.Tensor, lod: int) -> torch.Tensor:
    """uint8 MNIST digits [N, 28, 28] as the model's input [N, 1, R, R]: for an MLP model with
    ``images == "raw28"`` the digits in [0, 1] (``x / 255``); otherwise padded to 32x32 in
    [-1, 1] and box-filtered down to the resolution of ``lod``, as in training."""
    if getattr(model, "images", "pad32") == "raw28":
        return images.unsqueeze(1).to(torch.float32) / 255.0
    return downsample_to(uint8_to_float(pad_to(images, 32)).unsqueeze(1), 4 * 2**lod)


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


def paper_svm_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor
) -> float:
    """Accuracy of the official ``mnist_ref`` linear classifier: scikit-learn
    ``LinearSVC(C=0.02, max_iter=5000)`` on the raw (unscaled) codes (``dual=True``, the
    scikit-learn default of the time)."""
    from sklearn.svm import LinearSVC  # heavy import, only for evaluation

    clf = LinearSVC(C=0.02, max_iter=5000, dual=True, random_state=0)
    clf.fit(train_x.numpy(), train_y.numpy())
    return float((torch.from_numpy(clf.predict(test_x.numpy())) == test_y).double().mean())


def _paper_knn1_accuracy(train_x, train_y, test_x, test_y) -> float:
    return knn1_accuracy(train_x, train_y, test_x, test_y, chunk=256)


def _load_for_eval(checkpoint: str | Path, weights: str, device: str):
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
    return ckpt, cfg, model, lod


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")


def evaluate_mnist_paper(
    checkpoint: str | Path,
    data: str | None = None,
    weights: str = "model",
    device: str = "cpu",
    limit: int | None = None,
    dump: str | Path | None = None,
    splits: tuple[str, ...] = tuple(PAPER_SPLITS),
    log=None,
) -> dict:
    """The paper protocol (official ``mnist_ref`` ``eval()``) on an MLP training checkpoint.

    Args:
        checkpoint: an alae_fast training checkpoint of the MLP model.
        data: MNIST directory (default lookup otherwise).
        weights: ``"model"`` (the live encoder, as the official eval) or ``"ema"``.
        device: where to run the encoder.
        limit: use only the first ``limit`` train and test images of each split (a quick check).
        dump: write the features and labels to this ``.npz`` file, keys
            ``{different,same}_{w,h}_{train,test}`` and ``{different,same}_{train,test}_labels``.
        splits: the splits to evaluate, a subset of :data:`PAPER_SPLITS` (the keys of the result
            and of the dump follow it).
        log: callable taking one line per accuracy as it is computed, with its time (progress).
    Returns: ``{"different"|"same": {"w"|"h": {"1nn": pct, "svm": pct}}}``, accuracies in percent.
    """
    _check_limit(limit)
    unknown = [k for k in splits if k not in PAPER_SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty subset of {list(PAPER_SPLITS)}, got {list(splits)}")
    log = log or (lambda line: None)
    ckpt, cfg, model, lod = _load_for_eval(checkpoint, weights, device)
    result: dict = {}
    arrays: dict[str, np.ndarray] = {}
    for key in splits:
        split = PAPER_SPLITS[key]
        feats, labels = {}, {}
        for part in ("train", "test"):
            images, y = load_mnist_split(split, part, data)
            if limit is not None:
                images, y = images[:limit], y[:limit]
            feats[part] = dict(zip(("w", "h"), encode_features(model, mnist_inputs(model, images, lod)), strict=True))
            labels[part] = y
            arrays[f"{key}_{part}_labels"] = y.numpy()
        result[key] = {}
        for name in ("w", "h"):
            train_x, test_x = feats["train"][name], feats["test"][name]
            arrays[f"{key}_{name}_train"], arrays[f"{key}_{name}_test"] = train_x.numpy(), test_x.numpy()
            result[key][name] = {}
            for classifier, accuracy in (("1nn", _paper_knn1_accuracy), ("svm", paper_svm_accuracy)):
                start = time.time()
                pct = 100.0 * accuracy(train_x, labels["train"], test_x, labels["test"])
                result[key][name][classifier] = pct
                log(f"{key} writers, {name}, {classifier}: {pct:.2f}% ({time.time() - start:.0f} s)")
    if dump is not None:
        np.savez(dump, **arrays)  # type: ignore[arg-type]
    return result


def format_paper_table(result: dict, note: str = "") -> str:
    """The paper protocol's accuracies as the paper's MNIST table (markdown)."""
    lines = [
        "| features | different writers 1-NN | different writers linear SVM | same writers 1-NN | "
        "same writers linear SVM |",
        "|---|---|---|---|---|",
    ]
    names = {"w": "w (E's output)", "h": "h (E's 1024-wide hidden layer)"}
    for name, label in names.items():
        cells = [f"{result[k][name][c]:.2f}%" if k in result else "-" for k in PAPER_SPLITS for c in ("1nn", "svm")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ([f"\n{note}"] if note else []))


def paper_note(checkpoint: str | Path, splits: tuple[str, ...] = tuple(PAPER_SPLITS)) -> str:
    """A warning for the paper table when the checkpoint's training images include a test set
    of the protocol (a model trained on the 60000 standard training images has seen the
    same-writers test images); empty when the evaluated ``splits`` are the model's own."""
    cfg = config_from_dict(load_checkpoint(checkpoint)["config"])
    own = "different" if cfg.data.split == "different-writers" else "same"
    if tuple(splits) == (own,):
        return ""
    if own == "different":
        return (
            "Note: this model was trained on data.split different-writers (all 60000 training images), "
            "which hold the same-writers test images: train with data.split=same-writers for that column."
        )
    return (
        "Note: this model was trained on data.split same-writers (50000 images): the different-writers "
        "classifiers see 10000 training images the model was not trained on."
    )


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
    _check_limit(limit)
    ckpt, cfg, model, lod = _load_for_eval(checkpoint, weights, device)
    t0 = time.time()
    itr, ytr = load_mnist_split("different-writers", "train", data)
    ite, yte = load_mnist_split("different-writers", "test", data)
    if limit is not None:
        itr, ytr, ite, yte = itr[:limit], ytr[:limit], ite[:limit], yte[:limit]
    xtr, xte = mnist_inputs(model, itr, lod), mnist_inputs(model, ite, lod)
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
