"""Optimal-transport global sensitivity indices (the index of Borgonovo et al.'s gsaot line of work).

The OT index of input ``i`` measures how far fixing ``X_i`` moves the whole (possibly multivariate) output law:

    ι_i = E_{x_i}[ W₂²(P_Y, P_{Y | X_i = x_i}) ] / E‖Y − Y′‖²,       Y′ an independent copy of Y,

so ι_i ∈ [0, 1]; the denominator is 2 tr Cov(Y). Two estimators live here:

- :func:`gaussian_ot_index`: the closed form for a linear Gaussian model Y = A X + ε, X ~ N(0, Σ_X), ε ~ N(0, Σ_ε),
  where P_{Y|X_i} is Gaussian and W₂² is the Bures–Wasserstein distance (:func:`bures_wasserstein`);
- :func:`ot_indices_binning`: the given-data estimator, quantile bins of each X_i and POT's exact ``ot.emd2``
  between the bin's outputs and the unconditional sample (squared Euclidean cost).

Variance-based (Sobol) indices are in :mod:`nnsens.measures.sobol`.
"""

from __future__ import annotations

import numpy as np
import ot
import torch

from nnsens.measures._checks import InvalidParameterError, check_int

__all__ = ["bures_wasserstein", "gaussian_ot_index", "ot_indices_binning", "quantile_bins"]


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def bures_wasserstein(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between two Gaussians: ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½.

    Parameters
    ----------
    mean1, mean2 : ndarray of shape (k,)
    cov1, cov2 : ndarray of shape (k, k), symmetric positive semi-definite

    Returns
    -------
    float
    """
    m1, m2 = np.atleast_1d(np.asarray(mean1, float)), np.atleast_1d(np.asarray(mean2, float))
    c1, c2 = np.atleast_2d(np.asarray(cov1, float)), np.atleast_2d(np.asarray(cov2, float))
    if c1.shape != c2.shape or c1.shape != (m1.size, m1.size) or m1.shape != m2.shape:
        raise ValueError(f"bures_wasserstein needs means of shape (k,) and covariances of shape (k, k). Got "
                         f"{m1.shape}, {c1.shape}, {m2.shape}, {c2.shape} instead.")
    r1 = _sqrtm_psd(c1)
    cross = _sqrtm_psd(r1 @ c2 @ r1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(cross))


def gaussian_ot_index(a: np.ndarray, cov_x: np.ndarray, noise_cov: np.ndarray | float = 0.0) -> np.ndarray:
    """Closed-form OT indices ι_i of the linear Gaussian model Y = A X + ε.

    Given X_i = x, Y is Gaussian with mean b x, b = A Σ_X[:, i] / Σ_X[i, i], and covariance Σ_Y − Σ_X[i, i] b bᵀ, so
    E_x W₂² = Σ_X[i, i] ‖b‖² + Bures(Σ_Y, Σ_Y − Σ_X[i, i] b bᵀ) and ι_i is that over 2 tr Σ_Y.

    Parameters
    ----------
    a : ndarray of shape (k, d)
    cov_x : ndarray of shape (d, d), positive definite
    noise_cov : float or ndarray of shape (k, k), default 0
        Covariance of the additive output noise (a float is σ² I).

    Returns
    -------
    ndarray of shape (d,)
    """
    a, cov_x = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(cov_x, float))
    k, d = a.shape
    if cov_x.shape != (d, d):
        raise ValueError(f"The 'cov_x' parameter of gaussian_ot_index must have shape ({d}, {d}). "
                         f"Got {cov_x.shape} instead.")
    noise = np.eye(k) * float(noise_cov) if np.ndim(noise_cov) == 0 else np.asarray(noise_cov, float)
    cov_y = a @ cov_x @ a.T + noise
    out = np.zeros(d)
    for i in range(d):
        s_ii = cov_x[i, i]
        b = a @ cov_x[:, i] / s_ii
        cond = cov_y - s_ii * np.outer(b, b)
        out[i] = s_ii * b @ b + bures_wasserstein(np.zeros(k), cov_y, np.zeros(k), cond)
    return out / (2 * np.trace(cov_y))


def quantile_bins(x: np.ndarray, bins: int) -> np.ndarray:
    """Bin labels in {0, …, bins − 1} of each entry of ``x`` by its rank (equal-count bins, ties by position)."""
    x = np.asarray(x)
    ranks = np.empty(x.shape[0], dtype=np.int64)
    ranks[np.argsort(x, kind="stable")] = np.arange(x.shape[0])
    return ranks * bins // x.shape[0]


def _as_numpy(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)


def ot_indices_binning(
    inputs: np.ndarray | torch.Tensor,
    outputs: np.ndarray | torch.Tensor,
    *,
    bins: int = 10,
    n_ref: int | None = None,
    generator: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Given-data OT indices: equal-count bins of each input, exact EMD (POT ``ot.emd2``) per bin.

    ι̂_i = (1/bins) Σ_k W₂²(P̂_Y, P̂_{Y | X_i ∈ bin k}) / (2 tr Ĉov(Y)). The unconditional law is the whole sample, or
    a random subsample of ``n_ref`` rows (the cost matrix is n_ref × n/bins).

    Parameters
    ----------
    inputs : array of shape (n, d)
    outputs : array of shape (n,) or (n, k)
    bins : int, default 10
        Number of equal-count bins per input, in [2, n // 2].
    n_ref : int, optional
        Size of the subsample standing for P_Y (default: all n rows).
    generator : numpy Generator or int, optional
        Draws the ``n_ref`` subsample.

    Returns
    -------
    ndarray of shape (d,)
    """
    x, y = _as_numpy(inputs), _as_numpy(outputs)
    if x.ndim != 2:
        raise ValueError(f"The 'inputs' parameter of ot_indices_binning must be 2-D (n, d). Got shape {x.shape}.")
    y = y[:, None] if y.ndim == 1 else y
    n = x.shape[0]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"The 'outputs' parameter of ot_indices_binning must have {n} rows. Got shape {y.shape}.")
    check_int(bins, "bins", "ot_indices_binning", low=2, high=max(2, n // 2))
    if n_ref is not None:
        check_int(n_ref, "n_ref", "ot_indices_binning", low=2)
    if generator is not None and not isinstance(generator, (np.random.Generator, int)):
        raise InvalidParameterError("The 'generator' parameter of ot_indices_binning must be a numpy Generator, an "
                                    f"int or None. Got {type(generator).__name__} instead.")
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    denom = 2 * np.trace(np.atleast_2d(np.cov(y, rowvar=False)))
    if denom <= 0:
        return np.zeros(x.shape[1])
    ref = y if n_ref is None or n_ref >= n else y[rng.choice(n, n_ref, replace=False)]
    w_ref = np.full(ref.shape[0], 1.0 / ref.shape[0])
    out = np.zeros(x.shape[1])
    for i in range(x.shape[1]):
        labels = quantile_bins(x[:, i], bins)
        total = 0.0
        for b in range(bins):
            yb = y[labels == b]
            cost = ot.dist(ref, yb)  # squared Euclidean
            total += float(ot.emd2(w_ref, np.full(yb.shape[0], 1.0 / yb.shape[0]), cost, numItermax=10_000_000))
        out[i] = total / bins / denom
    return out
