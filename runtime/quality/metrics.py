"""Distribution metrics on feature vectors (NumPy only; features [N, D], float64).

- Fréchet distance, as FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge
  to a Local Nash Equilibrium"): ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½), between Gaussians fitted to
  the two feature sets. Biased upward at small N, so it is only compared between sets of equal size.
- KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of MMD² with the cubic
  polynomial kernel k(x, y) = (xᵀy / D + 1)³, averaged over random subsets; unbiased, so ≈ 0 (and can
  go slightly negative) for sets drawn from one distribution.
- Precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
  Generative Models"): each set's manifold is the union of balls around its points with radius the
  distance to the point's k-th nearest neighbour (k = 3); precision is the fraction of generated points
  inside the real manifold (fidelity), recall the fraction of real points inside the generated one
  (coverage).
- Class accuracy: how often the classifier's argmax is the requested class.
"""
from __future__ import annotations

import numpy as np

from ..errors import DdpmEdgeError


def _features(x, name: str, min_rows: int = 2) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < min_rows:
        raise DdpmEdgeError(f"{name} must be [N, D] with N >= {min_rows}, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DdpmEdgeError(f"{name} holds non-finite values")
    return x


def feature_stats(x) -> tuple[np.ndarray, np.ndarray]:
    """(μ [D], Σ [D, D]) with the unbiased (N − 1) covariance, as FID implementations use."""
    x = _features(x, "features")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via eigh (negative rounding noise clipped to 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^½.

    tr (Σ₁ Σ₂)^½ without a general sqrtm: Σ₁ Σ₂ is similar to the symmetric PSD matrix A Σ₂ A with
    A = Σ₁^½ (A⁻¹ (A Σ₂ A) A = Σ₁ Σ₂ when Σ₁ is invertible, and by continuity otherwise), so their
    eigenvalues agree and the trace of the square root is Σ √λᵢ(A Σ₂ A).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise DdpmEdgeError(f"mismatched statistics: μ {mu1.shape} vs {mu2.shape}, "
                            f"Σ {sigma1.shape} vs {sigma2.shape}")
    root = _sqrt_psd(sigma1)
    middle = root @ sigma2 @ root
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fd(x, y) -> float:
    """Fréchet distance between two feature sets [N, D], [M, D]."""
    return frechet_distance(*feature_stats(x), *feature_stats(y))


def kid(x, y, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Mean over `subsets` random subsets (without replacement, m = min(subset_size, N, M) rows each) of
    the unbiased MMD² with k(a, b) = (aᵀb / D + 1)³ (Bińkowski et al. 2018, eq. for MMD²_u)."""
    x, y = _features(x, "features"), _features(y, "features")
    if x.shape[1] != y.shape[1]:
        raise DdpmEdgeError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    d = x.shape[1]
    m = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets)
    for s in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        estimates[s] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                        - 2 * kxy.mean())
    return float(estimates.mean())


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)]."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(sq, 0, None))


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest neighbour within x (itself excluded)."""
    dist = _pairwise_distances(x, x)
    return np.partition(dist, k, axis=1)[:, k]      # column 0 of the sorted row is the point itself


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of `fake` against `real` (Kynkäänniemi et al. 2019), k-NN radii with k = 3."""
    real, fake = _features(real, "real features", k + 1), _features(fake, "generated features", k + 1)
    if real.shape[1] != fake.shape[1]:
        raise DdpmEdgeError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    between = _pairwise_distances(fake, real)                                  # [M, N]
    precision = (between <= _radii(real, k)[None, :]).any(axis=1).mean()       # fake inside real balls
    recall = (between <= _radii(fake, k)[:, None]).any(axis=0).mean()          # real inside fake balls
    return float(precision), float(recall)


def class_accuracy(logits, requested) -> float:
    """Fraction of rows whose argmax is the requested class index."""
    logits, requested = np.asarray(logits), np.asarray(requested)
    if logits.ndim != 2 or requested.shape != (len(logits),):
        raise DdpmEdgeError(f"requested classes must be [N] for logits [N, K]; "
                            f"got {requested.shape} for {logits.shape}")
    return float((logits.argmax(axis=1) == requested).mean())
