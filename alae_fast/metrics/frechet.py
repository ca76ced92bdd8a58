"""The Fréchet distance between two Gaussians, and running feature statistics (float64).

``d = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2))`` with ``sqrtm`` from SciPy and its real
part taken, as the official ALAE ``metrics/fid.py`` (and the TTUR reference) do.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["frechet_distance", "FeatureStatistics"]


def _as_float64(name: str, value, ndim: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    return arr


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    ``mu1``, ``mu2``: [D]; ``sigma1``, ``sigma2``: [D, D] (NumPy arrays or tensors).
    """
    mu1 = _as_float64("mu1", mu1, 1)
    mu2 = _as_float64("mu2", mu2, 1)
    sigma1 = _as_float64("sigma1", sigma1, 2)
    sigma2 = _as_float64("sigma2", sigma2, 2)
    dim = mu1.shape[0]
    if mu2.shape != (dim,):
        raise ValueError(f"mu2 must have shape ({dim},) like mu1, got {mu2.shape}")
    if sigma1.shape != (dim, dim):
        raise ValueError(f"sigma1 must have shape ({dim}, {dim}) to match mu1, got {sigma1.shape}")
    if sigma2.shape != (dim, dim):
        raise ValueError(f"sigma2 must have shape ({dim}, {dim}) to match mu1, got {sigma2.shape}")

    from scipy import linalg  # lazily: importing alae_fast.metrics stays light

    covmean = linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    dist = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(np.real(dist))


class FeatureStatistics:
    """Mean and covariance of feature vectors fed batch by batch, accumulated in float64.

    Batches are merged with the pairwise (Chan et al.) update of the mean and of the sum of
    squared deviations, which is as accurate as a two-pass computation over the concatenation.
    """

    def __init__(self) -> None:
        self.count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # sum of outer products of deviations from the mean

    def update(self, features: torch.Tensor) -> None:
        """Add a batch of features [B, D]."""
        if features.dim() != 2:
            raise ValueError(f"features must have shape [B, D], got {list(features.shape)}")
        x = features.detach().to("cpu", torch.float64).numpy()
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(axis=0)
        dev = x - mean_b
        m2_b = dev.T @ dev
        if self._mean is None or self._m2 is None:
            self._mean, self._m2, self.count = mean_b, m2_b, n_b
            return
        if x.shape[1] != self._mean.shape[0]:
            raise ValueError(f"features have {x.shape[1]} dimensions, earlier batches had {self._mean.shape[0]}")
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)
        self.count = n

    def _check(self) -> None:
        if self.count < 2:
            raise ValueError(f"FeatureStatistics needs at least 2 samples, has {self.count}")

    def mean(self) -> np.ndarray:
        """Mean [D] (float64)."""
        self._check()
        assert self._mean is not None
        return self._mean.copy()

    def covariance(self) -> np.ndarray:
        """Unbiased covariance [D, D] (float64), as ``np.cov(x, rowvar=False)``."""
        self._check()
        assert self._m2 is not None
        return self._m2 / (self.count - 1)

    def frechet_distance(self, other: FeatureStatistics) -> float:
        """Fréchet distance between the Gaussians fitted to ``self`` and ``other``."""
        return frechet_distance(self.mean(), self.covariance(), other.mean(), other.covariance())
