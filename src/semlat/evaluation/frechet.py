"""Fréchet distance between two sets of embeddings (FID / FAD / the TTA papers' FD).

Each set is summarised by the mean ``mu [D]`` and covariance ``sigma [D, D]`` of its embeddings
``[N, D]`` (covariance with ``N - 1`` in the denominator, as numpy's ``np.cov`` and every FAD/FD
implementation), and the distance between the Gaussians is

    FD = |mu_a - mu_b|^2 + tr(sigma_a + sigma_b - 2 (sigma_a sigma_b)^(1/2))

computed with ``scipy.linalg.sqrtm``. When the product is singular (fewer embeddings than
dimensions) the square root is retried with ``eps * I`` added to both covariances, and a tiny
imaginary part from round-off is dropped (an imaginary part larger than ``1e-3`` is an error), as
in the reference FID code. FD is 0 for identical statistics, never negative (clipped at 0 against
round-off), and it is in the squared units of the embedding, so it is comparable only between runs
with the same embedding model — reports name it.

:class:`EmbeddingStats` saves and loads ``(mu, sigma, n, embedder)`` as ``.npz``, so the statistics
of a fixed reference set are computed once.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg

from semlat.errors import ConfigError
from semlat.utils.files import atomic_path

#: Added to both diagonals when the covariance product is singular.
SQRTM_EPS = 1e-6
#: Largest imaginary part of the matrix square root's diagonal that counts as round-off.
MAX_IMAGINARY = 1e-3


@dataclass(frozen=True)
class EmbeddingStats:
    """Gaussian statistics of an embedding set: ``mu [D]``, ``sigma [D, D]``, ``n`` embeddings.

    ``embedder`` names the model that made the embeddings (its ``label``); :func:`frechet_distance`
    refuses to compare statistics of two different embedders.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    embedder: str = ""

    @classmethod
    def from_embeddings(cls, embeddings: Any, embedder: str = "") -> EmbeddingStats:
        """Statistics of ``embeddings [N, D]`` (N >= 2, finite)."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"embeddings must be [N, D], got shape {x.shape}")
        if len(x) < 2:
            raise ValueError(f"a covariance needs at least 2 embeddings, got {len(x)}")
        if not np.isfinite(x).all():
            raise ValueError("embeddings have NaN or infinite values")
        return cls(x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False)), len(x), embedder)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def save(self, path: str | os.PathLike) -> None:
        """Write ``.npz`` atomically (mu, sigma, n, embedder)."""
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, mu=self.mu, sigma=self.sigma, n=np.int64(self.n), embedder=np.str_(self.embedder))

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmbeddingStats:
        """Read a file written by :meth:`save`; a one-line ConfigError when it is not one."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
                n, embedder = int(data["n"]), str(data["embedder"])
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"{path}: not embedding statistics ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise ConfigError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not match")
        return cls(mu, sigma, n, embedder)


def _sqrtm_trace(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """``tr((sigma_a sigma_b)^(1/2))``, regularised when singular."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # singular products are handled below
        root = scipy.linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(root).all():
            offset = np.eye(len(sigma_a)) * SQRTM_EPS
            root = scipy.linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(root):
        imaginary = np.abs(np.diagonal(root).imag).max()
        if imaginary > MAX_IMAGINARY:
            raise ValueError(f"the covariance product's square root has an imaginary part of {imaginary:.3g}")
        root = root.real
    return float(np.trace(root))


def frechet_distance(a: EmbeddingStats, b: EmbeddingStats) -> float:
    """The Fréchet distance between two embedding sets' statistics (0 .. inf, lower is closer)."""
    if a.embedder and b.embedder and a.embedder != b.embedder:
        raise ConfigError(f"cannot compare statistics of two embedders: {a.embedder!r} and {b.embedder!r}")
    if a.dim != b.dim:
        raise ValueError(f"embedding sizes differ: {a.dim} and {b.dim}")
    diff = a.mu - b.mu
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * _sqrtm_trace(a.sigma, b.sigma))
    return max(value, 0.0)


def frechet_distance_of(a: Any, b: Any) -> float:
    """Fréchet distance of two embedding arrays ``[N_a, D]`` and ``[N_b, D]``."""
    return frechet_distance(EmbeddingStats.from_embeddings(a), EmbeddingStats.from_embeddings(b))
