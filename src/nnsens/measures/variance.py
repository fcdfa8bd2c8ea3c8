"""Variance between training runs (arXiv 2304.01910, Jordan, *Calibrated Chaos*).

The measures take the outcome of ``R`` independently trained runs on the same ``n`` test examples:

- :func:`independent_errors_variance`: the variance of test-set accuracy that the *independent errors* model
  predicts, ``Var_pred = R/(R-1) * sum_i p_i (1 - p_i) / n**2``, where ``p_i`` is the fraction of runs that get
  example ``i`` wrong (the factor ``R/(R-1)`` removes the bias of the plug-in ``p(1 - p)``);
- :func:`empirical_variance`: the across-run variance of accuracy (ddof 1);
- :func:`churn` and :func:`mean_pairwise_churn`: the fraction of examples on which two runs predict different
  classes;
- :func:`split_half_correlation`: the Pearson correlation between run accuracies on two disjoint halves of the test
  set (near 0 when runs differ only by test-set noise, near 1 when they differ in distribution-level accuracy);
- :func:`bootstrap_variance_ratio`: ``Var_emp / Var_pred`` with a percentile bootstrap CI over runs.

Inputs may be numpy arrays or torch tensors; results are Python floats or numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _as_numpy(name: str, fn: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        msg = f"The {name!r} parameter of {fn} must be an array-like. Got {type(value).__name__} instead."
        raise TypeError(msg) from None
    if arr.dtype == object:
        raise TypeError(f"The {name!r} parameter of {fn} must be a numeric array-like. Got dtype object instead.")
    return arr


def _error_matrix(errors: Any, fn: str, name: str = "errors") -> np.ndarray:
    """Validate an (R, n) 0/1 matrix (runs x examples) and return it as float64."""
    arr = _as_numpy(name, fn, errors)
    if arr.ndim != 2:
        raise ValueError(f"The {name!r} parameter of {fn} must be a 2-D (runs, examples) array. "
                         f"Got shape {arr.shape} instead.")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"The {name!r} parameter of {fn} needs at least 2 runs and 1 example. "
                         f"Got shape {arr.shape} instead.")
    arr = arr.astype(np.float64)
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"The {name!r} parameter of {fn} must hold only 0/1 (or bool) entries.")
    return arr


def independent_errors_variance(errors: Any) -> float:
    """Variance of test accuracy predicted by the independent-errors model.

    Parameters
    ----------
    errors : array-like of shape (R, n)
        ``errors[r, i]`` is 1 (or True) when run ``r`` misclassifies test example ``i``; ``R >= 2``.

    Returns
    -------
    float
        ``R/(R-1) * sum_i p_i (1 - p_i) / n**2`` with ``p_i = errors[:, i].mean()``. If each run's errors are
        independent Bernoulli(``q_i``) draws, this is an unbiased estimate of ``sum_i q_i (1 - q_i) / n**2``,
        the variance of that model's accuracy.
    """
    e = _error_matrix(errors, "independent_errors_variance")
    r, n = e.shape
    p = e.mean(axis=0)
    return float((p * (1.0 - p)).sum() / n**2 * r / (r - 1))


def empirical_variance(accuracies: Any) -> float:
    """Across-run variance of accuracy with ddof 1.

    Parameters
    ----------
    accuracies : array-like of shape (R,)
        One accuracy per run, ``R >= 2``.
    """
    a = _as_numpy("accuracies", "empirical_variance", accuracies).astype(np.float64)
    if a.ndim != 1 or a.shape[0] < 2:
        raise ValueError(f"The 'accuracies' parameter of empirical_variance must be a 1-D array with at least 2 "
                         f"entries. Got shape {a.shape} instead.")
    return float(a.var(ddof=1))


def churn(pred_a: Any, pred_b: Any) -> float:
    """Fraction of examples whose predicted class differs between two runs.

    Parameters
    ----------
    pred_a, pred_b : array-like of shape (n,)
        Predicted class labels (integers) of two runs on the same ``n`` examples.
    """
    a = _as_numpy("pred_a", "churn", pred_a)
    b = _as_numpy("pred_b", "churn", pred_b)
    if a.ndim != 1 or a.shape[0] < 1:
        raise ValueError(f"The 'pred_a' parameter of churn must be a non-empty 1-D array. Got shape {a.shape}.")
    if b.shape != a.shape:
        raise ValueError(f"The 'pred_b' parameter of churn must have the shape of pred_a {a.shape}. "
                         f"Got {b.shape} instead.")
    return float((a != b).mean())


def mean_pairwise_churn(preds: Any) -> float:
    """Mean :func:`churn` over all ``R(R-1)/2`` pairs of runs.

    Parameters
    ----------
    preds : array-like of shape (R, n)
        Predicted class labels, one row per run, ``R >= 2``.

    Notes
    -----
    Computed from per-example class counts in O(R n): the number of disagreeing pairs on example ``i`` is
    ``(R**2 - sum_c m_ic**2) / 2`` where ``m_ic`` is how many runs predict class ``c``.
    """
    p = _as_numpy("preds", "mean_pairwise_churn", preds)
    if p.ndim != 2 or p.shape[0] < 2 or p.shape[1] < 1:
        raise ValueError(f"The 'preds' parameter of mean_pairwise_churn must be a 2-D (runs, examples) array with "
                         f"at least 2 runs. Got shape {p.shape} instead.")
    r, n = p.shape
    _, inverse = np.unique(p, return_inverse=True)
    codes = inverse.reshape(p.shape)
    counts = np.zeros((int(codes.max()) + 1, n), dtype=np.float64)
    np.add.at(counts, (codes, np.broadcast_to(np.arange(n), p.shape)), 1.0)
    disagree = (r * r - (counts**2).sum(axis=0)) / 2.0  # (n,) disagreeing pairs per example
    return float(disagree.sum() / (n * r * (r - 1) / 2.0))


@dataclass(frozen=True)
class SplitHalf:
    """Run accuracies on two disjoint halves of the test set and their Pearson correlation."""

    r: float
    acc_a: np.ndarray
    acc_b: np.ndarray


def split_half_correlation(correct: Any, *, generator: np.random.Generator | int | None = None) -> SplitHalf:
    """Pearson correlation between run accuracies on two random halves A and B of the test set.

    Parameters
    ----------
    correct : array-like of shape (R, n)
        0/1 matrix, 1 when run ``r`` classifies example ``i`` correctly (errors work too: the correlation is the
        same); ``R >= 2``, ``n >= 2``.
    generator : numpy Generator or int, optional
        Draws the random split; ``None`` splits into the first and second half of the columns.

    Returns
    -------
    SplitHalf
        ``r`` is NaN when the accuracies on a half do not vary across runs.
    """
    c = _error_matrix(correct, "split_half_correlation", "correct")
    n = c.shape[1]
    if n < 2:
        raise ValueError(f"The 'correct' parameter of split_half_correlation needs at least 2 examples. Got {n}.")
    if generator is None:
        perm = np.arange(n)
    elif isinstance(generator, (int, np.integer, np.random.Generator)) and not isinstance(generator, bool):
        perm = np.random.default_rng(generator).permutation(n)
    else:
        raise TypeError(f"The 'generator' parameter of split_half_correlation must be a numpy Generator, an int or "
                        f"None. Got {type(generator).__name__} instead.")
    half = n // 2
    acc_a = c[:, perm[:half]].mean(axis=1)
    acc_b = c[:, perm[half : 2 * half]].mean(axis=1)
    if acc_a.std() == 0 or acc_b.std() == 0:
        r = float("nan")
    else:
        r = float(np.corrcoef(acc_a, acc_b)[0, 1])
    return SplitHalf(r=r, acc_a=acc_a, acc_b=acc_b)


@dataclass(frozen=True)
class VarianceRatio:
    """``Var_emp / Var_pred`` with a percentile bootstrap confidence interval over runs."""

    ratio: float
    var_emp: float
    var_pred: float
    ci_low: float
    ci_high: float
    level: float
    n_boot: int


def bootstrap_variance_ratio(
    errors: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.9,
    generator: np.random.Generator | int | None = None,
) -> VarianceRatio:
    """Ratio of empirical to independent-errors-predicted variance, with a bootstrap CI over runs.

    Each bootstrap replicate resamples the ``R`` runs (rows of ``errors``) with replacement and recomputes both
    variances on the resample (``p_i`` included).

    Parameters
    ----------
    errors : array-like of shape (R, n)
        0/1 error matrix (runs x examples), ``R >= 2``.
    n_boot : int
        Number of bootstrap replicates, in [1, inf).
    level : float
        Confidence level of the percentile interval, in (0, 1).
    generator : numpy Generator or int, optional
        Draws the resamples (an int seeds a fresh Generator).
    """
    fn = "bootstrap_variance_ratio"
    e = _error_matrix(errors, fn)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"The 'n_boot' parameter of {fn} must be an int in [1, inf). Got {n_boot!r} instead.")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"The 'level' parameter of {fn} must be a float in (0, 1). Got {level!r} instead.")
    if generator is not None and not isinstance(generator, (int, np.integer, np.random.Generator)):
        raise TypeError(f"The 'generator' parameter of {fn} must be a numpy Generator, an int or None. "
                        f"Got {type(generator).__name__} instead.")
    rng = np.random.default_rng(generator)
    r, n = e.shape
    acc = 1.0 - e.mean(axis=1)
    var_emp = float(acc.var(ddof=1))
    var_pred = independent_errors_variance(e)
    # Multiplicities w (n_boot, R): replicate b holds run j w[b, j] times. Everything is then a matrix product.
    draws = rng.integers(0, r, size=(int(n_boot), r))
    w = np.zeros((int(n_boot), r))
    np.add.at(w, (np.arange(int(n_boot))[:, None], draws), 1.0)
    p = (w @ e) / r  # (n_boot, n) per-example error rates on each resample
    vp = (p * (1.0 - p)).sum(axis=1) / n**2 * r / (r - 1)
    mean = w @ acc / r
    ve = (w @ acc**2 - r * mean**2) / (r - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(vp > 0, ve / vp, np.nan)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(ratios, [alpha, 1.0 - alpha]) if np.any(np.isfinite(ratios)) else (np.nan, np.nan)
    ratio = var_emp / var_pred if var_pred > 0 else float("nan")
    return VarianceRatio(ratio=float(ratio), var_emp=var_emp, var_pred=var_pred, ci_low=float(lo),
                         ci_high=float(hi), level=float(level), n_boot=int(n_boot))
