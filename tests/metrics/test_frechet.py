"""Fréchet distance against closed forms on Gaussians, and FeatureStatistics against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alae_fast.metrics import FeatureStatistics
from alae_fast.metrics import frechet_distance

EPS = np.finfo(np.float64).eps


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def test_one_dimensional_literal():
    # N(0, 1) vs N(3, 4): 3^2 + (1 - 2)^2 = 10.
    assert frechet_distance([0.0], [[1.0]], [3.0], [[4.0]]) == pytest.approx(10.0, rel=1e-12)


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    dim = 12
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim) * 3
    a, b = rng.uniform(0.1, 5.0, dim), rng.uniform(0.1, 5.0, dim)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-10)


def test_commuting_covariances_closed_form():
    # Same eigenvectors: sqrtm(S1 S2) = Q diag(sqrt(a b)) Q^T, so the trace term is
    # sum (sqrt(a) - sqrt(b))^2 as in the diagonal case.
    rng = np.random.default_rng(1)
    dim = 16
    q = random_rotation(dim, rng)
    a, b = rng.uniform(0.2, 4.0, dim), rng.uniform(0.2, 4.0, dim)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    assert np.abs(s1 - np.diag(a)).max() > 0.1  # really not diagonal
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_same_gaussian_is_zero():
    rng = np.random.default_rng(2)
    dim = 20
    x = rng.standard_normal((dim, dim))
    s = x @ x.T + 0.1 * np.eye(dim)
    m = rng.standard_normal(dim)
    assert abs(frechet_distance(m, s, m, s)) < 1e-9 * np.trace(s)


def test_accepts_tensors():
    got = frechet_distance(torch.zeros(2), torch.eye(2), torch.ones(2), 4 * torch.eye(2))
    assert got == pytest.approx(2.0 + 2.0, rel=1e-12)


@pytest.mark.parametrize(
    "args, name",
    [
        ((np.zeros((2, 1)), np.eye(2), np.zeros(2), np.eye(2)), "mu1"),
        ((np.zeros(2), np.eye(2), np.zeros(3), np.eye(2)), "mu2"),
        ((np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), "sigma1"),
        ((np.zeros(2), np.eye(2), np.zeros(2), np.zeros(2)), "sigma2"),
    ],
)
def test_shape_errors_name_the_argument(args, name):
    with pytest.raises(ValueError, match=name):
        frechet_distance(*args)


def test_statistics_match_numpy_over_uneven_batches():
    rng = np.random.default_rng(3)
    dim = 9
    data = rng.standard_normal((161, dim)) * rng.uniform(0.5, 3.0, dim) + 5.0
    data[:, 1] += 0.7 * data[:, 0]  # correlated columns
    stats = FeatureStatistics()
    start = 0
    for size in (1, 7, 100, 3, 0, 50):
        stats.update(torch.from_numpy(data[start : start + size]))
        start += size
    assert start == data.shape[0] and stats.count == data.shape[0]
    # Summation error of a mean / covariance over n float64 terms is below n * eps * max term.
    n = data.shape[0]
    tol = 8 * n * EPS * np.max(data**2)
    np.testing.assert_allclose(stats.mean(), data.mean(axis=0), rtol=0, atol=tol)
    np.testing.assert_allclose(stats.covariance(), np.cov(data, rowvar=False), rtol=0, atol=tol)
    assert stats.mean().dtype == np.float64 and stats.covariance().dtype == np.float64


def test_statistics_accumulate_in_float64():
    # float32 features whose mean is far above their spread: float32 accumulation would lose it.
    x = torch.tensor([[1e4], [1e4 + 1], [1e4 + 2], [1e4 + 3]], dtype=torch.float32)
    stats = FeatureStatistics()
    for row in x:
        stats.update(row[None])
    assert stats.mean()[0] == 1e4 + 1.5
    assert stats.covariance()[0, 0] == pytest.approx(5.0 / 3.0, rel=1e-12)  # unbiased: 5 / (4 - 1)


def test_statistics_frechet_distance_of_shifted_copy():
    # y = x + c: same covariance, so FD = ||c||^2.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 5))
    c = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    a, b = FeatureStatistics(), FeatureStatistics()
    a.update(torch.from_numpy(x))
    b.update(torch.from_numpy(x + c))
    assert a.frechet_distance(b) == pytest.approx(float(c @ c), rel=1e-8)


def test_statistics_errors():
    stats = FeatureStatistics()
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean()
    stats.update(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="at least 2"):
        stats.covariance()
    with pytest.raises(ValueError, match="dimensions"):
        stats.update(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        stats.update(torch.zeros(3))
