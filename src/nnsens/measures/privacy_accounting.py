"""Node-level privacy accounting with multi-term amplification by subsampling (arXiv 2111.15521).

In node-level DP training of a 1-layer GNN, one node enters up to K' = K + 1 per-node loss terms (its own and those of
the ≤ K nodes that aggregate it). A batch of B terms drawn without replacement from N then holds ρ of them, with
ρ ~ Hypergeom(N, K', B), and the sensitivity of the clipped sum scales with ρ / K'. The Rényi DP of one step at
order α is bounded by

    RDP(α) = 1/(α − 1) · log Σ_ρ P(ρ) · exp((α − 1) · RDP_G(α) · (ρ / K')²),    RDP_G(α) = α / (2σ²),

the unamplified Gaussian RDP at noise multiplier σ (noise std / full sensitivity). This module reimplements that
bound (the official accountant is in JAX/dp_accounting; opacus lacks it) with ``scipy.stats.hypergeom``, composes it
over steps, converts to (ε, δ) with opacus's RDP-to-DP conversion and calibrates σ for a target ε. The lower bound
RDP(α) ≥ (B/N)² · RDP_G(α) is checked on every call, as in the official accountant.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from scipy import optimize, special, stats

__all__ = ["DEFAULT_ORDERS", "gaussian_rdp", "multiterm_epsilon", "multiterm_noise_multiplier", "multiterm_rdp",
           "subsampled_noise_multiplier"]

#: Rényi orders: the official grid 1.1, 1.2, …, 9.9 plus integers up to 64 (more orders can only tighten ε).
DEFAULT_ORDERS = np.concatenate([np.arange(11, 100) / 10.0, np.arange(10, 65, dtype=float)])


def _pos(name: str, value: object, fn: str) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ValueError(f"The {name!r} parameter of {fn} must be a float in (0, inf). Got {value!r} instead.")
    return float(value)


def _int(name: str, value: object, low: int, fn: str) -> int:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
        raise ValueError(f"The {name!r} parameter of {fn} must be an int in [{low}, inf). Got {value!r} instead.")
    return int(value)


def _orders(orders: object, fn: str) -> np.ndarray:
    a = DEFAULT_ORDERS if orders is None else np.asarray(orders, dtype=float).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 1):
        raise ValueError(f"The 'orders' parameter of {fn} must be a non-empty array of floats > 1. Got {orders!r} "
                         "instead.")
    return a


def gaussian_rdp(noise_multiplier: float, orders=None) -> np.ndarray:
    """Unamplified RDP of the Gaussian mechanism with noise std = ``noise_multiplier`` × sensitivity: α / (2σ²)."""
    sigma = _pos("noise_multiplier", noise_multiplier, "gaussian_rdp")
    return _orders(orders, "gaussian_rdp") / (2.0 * sigma**2)


def multiterm_rdp(noise_multiplier: float, *, num_samples: int, batch_size: int, max_terms_per_node: int,
                  orders=None) -> np.ndarray:
    """RDP of one step at each order: the hypergeometric multi-term amplification bound (module docstring).

    Parameters
    ----------
    noise_multiplier : float
        σ: Gaussian noise std divided by the sensitivity of the clipped sum when all K' terms of a node change.
    num_samples : int
        N, the number of terms (training nodes) a batch is drawn from without replacement.
    batch_size : int
        B ≤ N.
    max_terms_per_node : int
        K' ≥ 1, the most terms one node can enter (K + 1 for a 1-layer GNN with degree bound K; 1 for an MLP).

    Raises
    ------
    ValueError
        On bad inputs, or when the bound falls below (B/N)² · RDP_G (the official sanity check).
    """
    fn = "multiterm_rdp"
    sigma = _pos("noise_multiplier", noise_multiplier, fn)
    n = _int("num_samples", num_samples, 1, fn)
    b = _int("batch_size", batch_size, 1, fn)
    k = _int("max_terms_per_node", max_terms_per_node, 1, fn)
    if b > n:
        raise ValueError(f"The 'batch_size' parameter of {fn} must be at most num_samples={n}. Got {b} instead.")
    if k > n:
        raise ValueError(f"The 'max_terms_per_node' parameter of {fn} must be at most num_samples={n}. Got {k} "
                         "instead.")
    alphas = _orders(orders, fn)
    return _amplified(sigma, _log_pmf(n, k, b), n, b, alphas)


@functools.lru_cache(maxsize=256)
def _log_pmf(n: int, k: int, b: int) -> np.ndarray:
    """log P(ρ) for ρ = 0..K', ρ ~ Hypergeom(N, K', B): affected terms among B drawn without replacement."""
    return stats.hypergeom(n, k, b).logpmf(np.arange(k + 1))


def _amplified(sigma: float, logp: np.ndarray, n: int, b: int, alphas: np.ndarray) -> np.ndarray:
    k = logp.shape[0] - 1
    rho = np.arange(k + 1)
    unamp = alphas / (2.0 * sigma**2)
    log_terms = logp[None, :] + (alphas - 1)[:, None] * unamp[:, None] * (rho[None, :] / k) ** 2
    amp = special.logsumexp(log_terms, axis=1) / (alphas - 1)
    if not np.all(unamp * (b / n) ** 2 <= amp + 1e-6):
        raise ValueError("multiterm_rdp violated its lower bound (B/N)^2 * RDP_G; something is wrong.")
    return amp


def _to_epsilon(orders: np.ndarray, rdp: np.ndarray, delta: float) -> float:
    from opacus.accountants.analysis.rdp import get_privacy_spent

    with warnings.catch_warnings():  # opacus warns when the optimum sits at the edge of the order grid
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = get_privacy_spent(orders=list(orders), rdp=rdp, delta=delta)
    return float(eps)


def multiterm_epsilon(noise_multiplier: float, *, steps: int, delta: float, num_samples: int, batch_size: int,
                      max_terms_per_node: int, orders=None) -> float:
    """ε at ``delta`` after ``steps`` independent batches: the per-step bound times ``steps``, converted to (ε, δ)
    by opacus's ``get_privacy_spent``."""
    fn = "multiterm_epsilon"
    t = _int("steps", steps, 1, fn)
    if not (isinstance(delta, float) and 0 < delta < 1):
        raise ValueError(f"The 'delta' parameter of {fn} must be a float in (0, 1). Got {delta!r} instead.")
    alphas = _orders(orders, fn)
    rdp = multiterm_rdp(noise_multiplier, num_samples=num_samples, batch_size=batch_size,
                        max_terms_per_node=max_terms_per_node, orders=alphas)
    return _to_epsilon(alphas, t * rdp, delta)


def multiterm_noise_multiplier(epsilon: float, *, steps: int, delta: float, num_samples: int, batch_size: int,
                               max_terms_per_node: int, orders=None) -> float:
    """The smallest σ (to 1e-4 relative) whose :func:`multiterm_epsilon` is at most ``epsilon``."""
    eps = _pos("epsilon", epsilon, "multiterm_noise_multiplier")

    def gap(log_sigma: float) -> float:
        return multiterm_epsilon(math.exp(log_sigma), steps=steps, delta=delta, num_samples=num_samples,
                                 batch_size=batch_size, max_terms_per_node=max_terms_per_node, orders=orders) - eps

    lo, hi = math.log(1e-2), math.log(1e4)
    if gap(hi) > 0:
        raise ValueError(f"The 'epsilon' parameter of multiterm_noise_multiplier is unreachable with σ ≤ 1e4. "
                         f"Got {epsilon!r} instead.")
    while gap(lo) <= 0 and lo > math.log(1e-6):
        lo -= 2.0
    root = optimize.brentq(gap, lo, hi, xtol=1e-5)
    return float(math.exp(root + 1e-5))  # on the safe side of the root


def subsampled_noise_multiplier(epsilon: float, *, steps: int, delta: float, sample_rate: float) -> float:
    """σ for ``steps`` Poisson-subsampled Gaussian steps at ``sample_rate`` within (ε, δ): opacus's ``compute_rdp`` at
    the integer orders 2..64 (its fast exact path; opacus's own search also evaluates fractional orders, which is
    ~50× slower) and its RDP-to-DP conversion, with the same root search as :func:`multiterm_noise_multiplier`."""
    from opacus.accountants.analysis.rdp import compute_rdp

    eps = _pos("epsilon", epsilon, "subsampled_noise_multiplier")
    t = _int("steps", steps, 1, "subsampled_noise_multiplier")
    q = _pos("sample_rate", sample_rate, "subsampled_noise_multiplier")
    orders = np.arange(2, 65, dtype=float)

    def gap(log_sigma: float) -> float:
        rdp = compute_rdp(q=q, noise_multiplier=math.exp(log_sigma), steps=t, orders=list(orders))
        return _to_epsilon(orders, np.asarray(rdp), delta) - eps

    lo, hi = math.log(1e-2), math.log(1e4)
    while gap(lo) <= 0 and lo > math.log(1e-6):
        lo -= 2.0
    return float(math.exp(optimize.brentq(gap, lo, hi, xtol=1e-5) + 1e-5))
