"""Tests for alae_fast.evaluate (1-NN and linear-SVM accuracies, table, batched encoding)."""

from __future__ import annotations

import pytest
import torch

from alae_fast.evaluate import encode_images
from alae_fast.evaluate import format_table
from alae_fast.evaluate import knn1_accuracy
from alae_fast.evaluate import linear_svm_accuracy

# -- 1-nearest neighbour --------------------------------------------------------------------

TRAIN_W = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
TRAIN_Y = torch.tensor([0, 1, 2])
# nearest train points: 0, 1, 2, and (6, 0) is nearer (10, 0) (distance 4) than (0, 0) (6)
TEST_W = torch.tensor([[1.0, 1.0], [9.0, 1.0], [1.0, 8.0], [6.0, 0.0]])
TEST_Y = torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
def test_knn1_hand_made(chunk):
    assert knn1_accuracy(TRAIN_W, TRAIN_Y, TEST_W, TEST_Y, chunk=chunk) == pytest.approx(0.75)


def test_knn1_all_right_and_all_wrong():
    assert knn1_accuracy(TRAIN_W, TRAIN_Y, TEST_W[:3], TEST_Y[:3]) == 1.0
    assert knn1_accuracy(TRAIN_W, TRAIN_Y, TEST_W[:3], torch.tensor([2, 0, 1])) == 0.0
    # a test point equal to a train point takes that point's label
    assert knn1_accuracy(TRAIN_W, TRAIN_Y, TRAIN_W, TRAIN_Y) == 1.0


def test_knn1_uses_euclidean_distance():
    # from (0, 0): (3, 0) is at L2 3 / L1 3, (1.6, 1.6) at L2 2.26 / L1 3.2 -> Euclidean picks 1
    train_w = torch.tensor([[3.0, 0.0], [1.6, 1.6]])
    train_y = torch.tensor([0, 1])
    test_w = torch.tensor([[0.0, 0.0], [-1.0, -1.0]])  # (-1,-1): L2 4.12 vs 3.69, L1 5 vs 5.2
    assert knn1_accuracy(train_w, train_y, test_w, torch.tensor([1, 1])) == 1.0


def _random_split(seed, n_train, n_test, dim, classes):
    """(train features, train labels, test features, test labels), N(0, 1) and uniform."""
    g = torch.Generator().manual_seed(seed)
    return [
        t
        for n in (n_train, n_test)
        for t in (torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g))
    ]


def test_knn1_matches_brute_force_loop():
    tr, ytr, te, yte = _random_split(0, 40, 25, 3, 4)
    correct = 0
    for i in range(te.shape[0]):
        best, best_d = None, float("inf")
        for j in range(tr.shape[0]):
            d = sum((float(te[i, k]) - float(tr[j, k])) ** 2 for k in range(3))
            if d < best_d:
                best, best_d = j, d
        correct += int(ytr[best] == yte[i])
    expected = correct / te.shape[0]
    for chunk in (1, 7, 1000):
        assert knn1_accuracy(tr, ytr, te, yte, chunk=chunk) == pytest.approx(expected, abs=1e-12)


def test_knn1_empty_raises():
    with pytest.raises(ValueError):
        knn1_accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), TEST_W, TEST_Y)
    with pytest.raises(ValueError):
        knn1_accuracy(TRAIN_W, TRAIN_Y, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


# -- linear SVM -----------------------------------------------------------------------------


def blobs(n_per_class, seed):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.7 * torch.randn(n_per_class, 2, generator=g) for c in centers])
    y = torch.arange(3).repeat_interleave(n_per_class)
    return x, y


def test_linear_svm_separable_blobs():
    xtr, ytr = blobs(30, 0)
    xte, yte = blobs(20, 1)
    assert linear_svm_accuracy(xtr, ytr, xte, yte) == 1.0
    # features on very different scales and offsets are standardised first
    scale = torch.tensor([1000.0, 0.001])
    assert linear_svm_accuracy(xtr * scale + 5.0, ytr, xte * scale + 5.0, yte) == 1.0


def test_linear_svm_random_labels_near_chance():
    xtr, ytr, xte, yte = _random_split(2, 200, 200, 5, 2)
    acc = linear_svm_accuracy(xtr, ytr, xte, yte)
    assert 0.3 < acc < 0.7


def test_linear_svm_accuracy_is_fraction():
    xtr, ytr = blobs(20, 3)
    xte, yte = blobs(5, 4)
    yte = yte.clone()
    yte[:3] = 2  # three of the 15 test labels (class 0 points) are now wrong
    assert linear_svm_accuracy(xtr, ytr, xte, yte) == pytest.approx(12 / 15)


# -- table ----------------------------------------------------------------------------------


def test_format_table():
    result = {
        "knn1": 0.9876,
        "linear_svm": 0.5,
        "train_size": 60000,
        "test_size": 10000,
        "weights": "ema",
        "step": 1234,
    }
    text = format_table(result)
    assert "98.76%" in text
    assert "50.00%" in text
    assert "60000" in text and "10000" in text and "ema" in text and "1234" in text
    lines = text.splitlines()
    knn_line = next(line for line in lines if "nearest" in line)
    svm_line = next(line for line in lines if "SVM" in line)
    assert "98.76%" in knn_line and "50.00%" in svm_line
    assert "100.00%" in format_table({**result, "knn1": 1.0})


# -- encoding -------------------------------------------------------------------------------


def test_encode_images_batched_matches_single_call():
    from alae_fast.reference import MLPALAE

    torch.manual_seed(0)
    # float64 so that batch-size dependent BLAS rounding cannot hide behind the tolerance
    model = MLPALAE(latent_size=8, mapping_layers=2).double().eval()
    x = torch.randn(10, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = model.encoder(x, 3, 1.0).reshape(10, 8)
    w = encode_images(model, x, batch_size=3)
    assert w.shape == (10, 8)
    assert w.dtype == torch.float32
    assert w.device.type == "cpu"
    assert not w.requires_grad
    torch.testing.assert_close(w.double(), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(w[0], w[1])
    torch.testing.assert_close(encode_images(model, x, lod=3, batch_size=100).double(), expected, rtol=0, atol=1e-6)
    # batch_size that divides N, and batch_size 1
    torch.testing.assert_close(encode_images(model, x, batch_size=5).double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(encode_images(model, x[:4], batch_size=1).double(), expected[:4], rtol=0, atol=1e-6)


def test_encode_images_float32_model():
    from alae_fast.reference import MLPALAE

    torch.manual_seed(1)
    model = MLPALAE(latent_size=8, mapping_layers=2).eval()
    x = torch.randn(10, 1, 32, 32)
    with torch.no_grad():
        expected = model.double().encoder(x.double(), 3, 1.0).reshape(10, 8)
    model.float()
    w = encode_images(model, x, batch_size=3)
    assert w.dtype == torch.float32 and w.shape == (10, 8)
    # float32 matmuls over 1024-wide layers: allow float32 rounding only
    torch.testing.assert_close(w.double(), expected, rtol=1e-4, atol=1e-5)
