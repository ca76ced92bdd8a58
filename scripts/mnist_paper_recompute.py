"""Recompute the paper-protocol MNIST accuracies from the features `eval-mnist --dump` wrote,
with code that shares nothing with alae_fast.evaluate, and check the same-writers split.

    python scripts/mnist_paper_recompute.py FEATURES.npz RESULT.json [--data DIR] [--tolerance 0.3]

- 1-NN: Euclidean nearest training code in float64 (|a|^2 - 2ab + |b|^2, chunked), not scikit-learn.
- Linear SVM: the problem scikit-learn's LinearSVC(C=0.02) solves (liblinear's default: one-vs-rest,
  squared hinge, L2 penalty that also covers the intercept, which enters as a constant feature 1)
  minimised in the primal with scipy's trust-region Newton-CG to a tight tolerance, all ten classes
  at once (the objective is a sum over classes). The evaluation runs liblinear's dual solver for max_iter=5000
  as the official code does, so the two agree as far as that solver converged.
- Split: the labels in the dump against the MNIST label files read here with numpy: the
  different-writers split is the files' own order; the same-writers split is the official
  mnist_ref one (prepare_mnist_tfrecords.py: random.seed(0); random.shuffle of the training
  items in file order; test = the last 10000, train = the first 50000).

Prints a table of (reported, recomputed, difference) and exits 1 when a difference exceeds the
tolerance (points of accuracy) or a label sequence differs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

C = 0.02


def read_idx_labels(folder: Path, stem: str) -> np.ndarray:
    """Labels of an IDX1 file ``stem`` (raw or .gz) in ``folder``."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            assert int.from_bytes(data[:4], "big") == 2049, f"{path}: not an IDX1 label file"
            count = int.from_bytes(data[4:8], "big")
            return np.frombuffer(data, dtype=np.uint8, count=count, offset=8).astype(np.int64)
    raise SystemExit(f"no {stem}[.gz] in {folder}")


def expected_labels(folder: Path) -> dict[str, np.ndarray]:
    train = read_idx_labels(folder, "train-labels-idx1-ubyte")
    test = read_idx_labels(folder, "t10k-labels-idx1-ubyte")
    items = list(enumerate(train.tolist()))  # the official list holds (label, image) items
    random.seed(0)
    random.shuffle(items)
    shuffled = np.array([label for _, label in items])
    return {
        "different_train_labels": train,
        "different_test_labels": test,
        "same_train_labels": shuffled[:50000],
        "same_test_labels": shuffled[50000:],
    }


def nearest_neighbour_accuracy(train: np.ndarray, labels: np.ndarray, test: np.ndarray, truth: np.ndarray) -> float:
    train = train.astype(np.float64)
    train_sq = (train * train).sum(1)
    hits = 0
    for start in range(0, len(test), 500):
        block = test[start : start + 500].astype(np.float64)
        dist = train_sq[None, :] - 2.0 * block @ train.T  # |block|^2 is the same along a row
        hits += int((labels[dist.argmin(1)] == truth[start : start + 500]).sum())
    return 100.0 * hits / len(test)


def squared_hinge_svm_accuracy(train: np.ndarray, labels: np.ndarray, test: np.ndarray, truth: np.ndarray) -> float:
    x = np.hstack([train.astype(np.float64), np.ones((len(train), 1))])
    classes = np.unique(labels)
    y = np.where(labels[:, None] == classes[None, :], 1.0, -1.0)  # one-vs-rest targets [N, K]
    shape = (x.shape[1], len(classes))

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(shape)
        slack = np.maximum(0.0, 1.0 - y * (x @ w))
        value = 0.5 * float((w * w).sum()) + C * float((slack * slack).sum())
        return value, (w - 2.0 * C * (x.T @ (y * slack))).ravel()

    def hessian_times(flat: np.ndarray, v: np.ndarray) -> np.ndarray:
        # The generalised Hessian of the squared hinge: I + 2C X_a^T X_a over the margin violators.
        active = (1.0 - y * (x @ flat.reshape(shape))) > 0
        v = v.reshape(shape)
        return (v + 2.0 * C * (x.T @ (active * (x @ v)))).ravel()

    start = np.zeros(x.shape[1] * len(classes))
    first = np.linalg.norm(objective(start)[1])
    # A Newton method with conjugate-gradient steps, as liblinear's primal solver; stopped when
    # the gradient has shrunk a millionfold, far past where any prediction still changes.
    res = minimize(objective, start, jac=True, hessp=hessian_times, method="trust-ncg", options={"gtol": 1e-6 * first})
    w = res.x.reshape(shape)
    scores = np.hstack([test.astype(np.float64), np.ones((len(test), 1))]) @ w
    return 100.0 * float((classes[scores.argmax(1)] == truth).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("features", help="the .npz of eval-mnist --protocol paper --dump")
    p.add_argument("result", help="the .json of eval-mnist --protocol paper --json")
    p.add_argument("--data", default="../shared/data/mnist", help="MNIST directory (IDX files)")
    p.add_argument("--tolerance", type=float, default=0.3, help="largest accepted difference, in points")
    args = p.parse_args(argv)
    dump = np.load(args.features)
    reported = json.loads(Path(args.result).read_text())
    ok = True
    for key, labels in expected_labels(Path(args.data)).items():
        if key not in dump.files:  # eval-mnist --splits evaluated the other split only
            continue
        # A run with eval-mnist --limit dumps only the first rows of each side.
        same = np.array_equal(dump[key], labels[: len(dump[key])])
        print(f"{key}: {len(dump[key])} labels {'match' if same else 'DIFFER from'} the official split")
        ok &= same
    print(f"{'split':10} {'feature':8} {'classifier':10} {'reported':>9} {'recomputed':>10} {'diff':>6}")
    for split in reported:
        train_y, test_y = dump[f"{split}_train_labels"], dump[f"{split}_test_labels"]
        for feature in ("w", "h"):
            train_x, test_x = dump[f"{split}_{feature}_train"], dump[f"{split}_{feature}_test"]
            for name, fn in (("1nn", nearest_neighbour_accuracy), ("svm", squared_hinge_svm_accuracy)):
                mine = fn(train_x, train_y, test_x, test_y)
                theirs = float(reported[split][feature][name])
                diff = mine - theirs
                ok &= abs(diff) <= args.tolerance
                print(f"{split:10} {feature:8} {name:10} {theirs:9.2f} {mine:10.2f} {diff:+6.2f}")
    print("all within tolerance" if ok else f"FAILED: a difference above {args.tolerance} points or a label mismatch")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
