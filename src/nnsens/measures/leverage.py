"""Online sensitivity (ridge-leverage) sampling of feature vectors, as used by LPO.

LPO: Li, Wang, Cheng, Yang (ICML 2023), arXiv 2306.09554.

The *sensitivity* of a new feature vector φ with respect to a core set with weighted Gram matrix Λ_core is its online
ridge leverage ``min(1, φᵀ(Λ_core + λI)⁻¹φ)``: how much one sample can change the squared error of any linear function
relative to the data already kept. A sample enters the core set with probability ``p = min(1, C·score)`` and, when
kept, carries the importance weight ``1/p``, so that the reweighted core Gram matrix is an unbiased estimate of the
full one. The inverse is maintained with Sherman–Morrison rank-one updates and the log-determinant with the matrix
determinant lemma, so each offered sample costs O(d²).

The module works on NumPy arrays in float64 (feature dimension d is small); randomness comes from a
``numpy.random.Generator`` or an int seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = [
    "Coreset",
    "OnlineSensitivitySampler",
    "online_sensitivity_sampling",
    "ridge_leverage",
    "sherman_morrison",
    "spectral_bounds",
]


def _rng(generator: np.random.Generator | int | None, fn: str) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None:
        return np.random.default_rng()
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool) and generator >= 0:
        return np.random.default_rng(int(generator))
    raise TypeError(f"The 'generator' parameter of {fn} must be a non-negative int seed, a numpy.random.Generator "
                    f"or None. Got {generator!r} instead.")


def _positive(value: object, name: str, fn: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok and np.isfinite(value) and (value > 0 or (allow_zero and value == 0)):
        return float(value)
    rng = "[0, inf)" if allow_zero else "(0, inf)"
    raise ValueError(f"The {name!r} parameter of {fn} must be a float in {rng}. Got {value!r} instead.")


def _matrix(x: object, name: str, fn: str, ndim: int) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim or 0 in arr.shape or not np.all(np.isfinite(arr)):
        raise ValueError(f"The {name!r} parameter of {fn} must be a finite non-empty {ndim}-d array. "
                         f"Got shape {arr.shape} instead.")
    return arr


def ridge_leverage(features: np.ndarray, gram_inv: np.ndarray) -> np.ndarray:
    """Online ridge-leverage sensitivity ``min(1, φᵀ G φ)`` of each row φ of ``features``.

    Parameters
    ----------
    features : array of shape (n, d) or (d,)
        Feature vectors.
    gram_inv : array of shape (d, d)
        ``G = (Λ + λI)⁻¹``, the inverse of the ridge-regularised Gram matrix of the data already kept.

    Returns
    -------
    ndarray of shape (n,) (or a 0-d array for one vector)
    """
    phi = np.asarray(features, dtype=np.float64)
    g = _matrix(gram_inv, "gram_inv", "ridge_leverage", 2)
    if phi.shape[-1] != g.shape[0] or g.shape[0] != g.shape[1]:
        raise ValueError(f"The 'features' parameter of ridge_leverage must have last dimension {g.shape[0]} (the "
                         f"size of gram_inv). Got shape {phi.shape} instead.")
    quad = np.einsum("...i,ij,...j->...", phi, g, phi)
    return np.minimum(1.0, np.maximum(quad, 0.0))


def sherman_morrison(inv: np.ndarray, v: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """``(A + w·v vᵀ)⁻¹`` from ``A⁻¹`` (symmetric A) by the Sherman–Morrison formula.

    Parameters
    ----------
    inv : array of shape (d, d)
        ``A⁻¹`` for a symmetric positive definite A.
    v : array of shape (d,)
        The rank-one direction.
    weight : float, default 1.0
        ``w > 0``.
    """
    inv = _matrix(inv, "inv", "sherman_morrison", 2)
    v = _matrix(v, "v", "sherman_morrison", 1)
    w = _positive(weight, "weight", "sherman_morrison")
    u = inv @ v
    return inv - np.outer(u, u) * (w / (1.0 + w * float(v @ u)))


@dataclass(frozen=True)
class Coreset:
    """The outcome of online sensitivity sampling over a stream of n feature vectors."""

    indices: np.ndarray  # (k,) positions of the kept vectors in the stream
    weights: np.ndarray  # (k,) importance weights 1/p
    scores: np.ndarray  # (n,) online sensitivity of every vector when it was offered
    gram: np.ndarray  # (d, d) Σ_kept w φφᵀ (no ridge)

    @property
    def fraction(self) -> float:
        """Fraction of the stream kept."""
        return len(self.indices) / max(len(self.scores), 1)


class OnlineSensitivitySampler:
    """Stateful online ridge-leverage sampler (one ``offer`` per arriving feature vector).

    Parameters
    ----------
    dim : int
        Feature dimension d.
    ridge : float, default 1.0
        λ > 0.
    oversampling : float, default 12.0
        C > 0: keep probability ``min(1, C·score)``.
    generator : numpy.random.Generator or int or None
        Source of the keep/drop coin flips.

    Attributes
    ----------
    gram : (d, d) reweighted core Gram matrix Σ_kept w φφᵀ (no ridge).
    inv : (d, d) ``(gram + λI)⁻¹``, kept up to date by Sherman–Morrison.
    logdet : float, ``log det(gram + λI)`` by the matrix determinant lemma.
    n_seen, n_kept : int
    """

    def __init__(self, dim: int, *, ridge: float = 1.0, oversampling: float = 12.0,
                 generator: np.random.Generator | int | None = None) -> None:
        fn = "OnlineSensitivitySampler"
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"The 'dim' parameter of {fn} must be an int in [1, inf). Got {dim!r} instead.")
        self.dim = int(dim)
        self.ridge = _positive(ridge, "ridge", fn)
        self.oversampling = _positive(oversampling, "oversampling", fn)
        self.rng = _rng(generator, fn)
        self.gram = np.zeros((self.dim, self.dim))
        self.inv = np.eye(self.dim) / self.ridge
        self.logdet = self.dim * float(np.log(self.ridge))
        self.n_seen = 0
        self.n_kept = 0

    def score(self, phi: np.ndarray) -> float:
        """Online sensitivity ``min(1, φᵀ(Λ_core + λI)⁻¹φ)`` of one vector (nothing is changed)."""
        return float(ridge_leverage(phi, self.inv))

    def bonus(self, features: np.ndarray) -> np.ndarray:
        """Elliptical bonus ``sqrt(φᵀ(Λ_core + λI)⁻¹φ)`` for each row (nothing is changed)."""
        phi = np.asarray(features, dtype=np.float64)
        return np.sqrt(np.maximum(np.einsum("...i,ij,...j->...", phi, self.inv, phi), 0.0))

    def offer(self, phi: np.ndarray) -> tuple[bool, float, float]:
        """Offer one vector: returns ``(kept, weight, score)``; a kept vector updates gram, inv and logdet."""
        phi = np.asarray(phi, dtype=np.float64)
        s = self.score(phi)
        p = min(1.0, self.oversampling * s)
        self.n_seen += 1
        if p <= 0.0 or self.rng.random() >= p:
            return False, 0.0, s
        w = 1.0 / p
        u = self.inv @ phi
        q = float(phi @ u)
        self.logdet += float(np.log1p(w * q))
        self.inv -= np.outer(u, u) * (w / (1.0 + w * q))
        self.inv = 0.5 * (self.inv + self.inv.T)  # keep it symmetric over long streams
        self.gram += w * np.outer(phi, phi)
        self.n_kept += 1
        return True, w, s


def online_sensitivity_sampling(features: np.ndarray, *, ridge: float = 1.0, oversampling: float = 12.0,
                                generator: np.random.Generator | int | None = None) -> Coreset:
    """Run online sensitivity sampling over the rows of ``features`` in order.

    Parameters
    ----------
    features : array of shape (n, d)
        The stream.
    ridge, oversampling, generator
        As in :class:`OnlineSensitivitySampler`.

    Returns
    -------
    Coreset
    """
    phi = _matrix(features, "features", "online_sensitivity_sampling", 2)
    sampler = OnlineSensitivitySampler(phi.shape[1], ridge=ridge, oversampling=oversampling, generator=generator)
    idx, wts, scores = [], [], np.empty(phi.shape[0])
    for i, row in enumerate(phi):
        kept, w, scores[i] = sampler.offer(row)
        if kept:
            idx.append(i)
            wts.append(w)
    return Coreset(np.asarray(idx, dtype=np.int64), np.asarray(wts), scores, sampler.gram.copy())


def spectral_bounds(approx: np.ndarray, reference: np.ndarray, *, ridge: float = 0.0) -> tuple[float, float]:
    """Extreme generalised eigenvalues of ``(approx + λI) x = μ (reference + λI) x``.

    ``lo·R ≼ A ≼ hi·R`` holds exactly for ``lo = μ_min`` and ``hi = μ_max``; ``reference + λI`` must be positive
    definite.

    Parameters
    ----------
    approx, reference : arrays of shape (d, d)
        Symmetric matrices (e.g. the reweighted core Gram and the full Gram).
    ridge : float, default 0.0
        λ ≥ 0 added to both.

    Returns
    -------
    (mu_min, mu_max)
    """
    fn = "spectral_bounds"
    a = _matrix(approx, "approx", fn, 2)
    r = _matrix(reference, "reference", fn, 2)
    lam = _positive(ridge, "ridge", fn, allow_zero=True)
    if a.shape != r.shape or a.shape[0] != a.shape[1]:
        raise ValueError(f"The 'approx' and 'reference' parameters of {fn} must be square of the same shape. "
                         f"Got {a.shape} and {r.shape} instead.")
    eye = lam * np.eye(a.shape[0])
    try:
        mu = scipy.linalg.eigh(0.5 * (a + a.T) + eye, 0.5 * (r + r.T) + eye, eigvals_only=True)
    except np.linalg.LinAlgError as err:
        raise ValueError(f"The 'reference' parameter of {fn} (plus ridge) must be positive definite.") from err
    return float(mu[0]), float(mu[-1])
