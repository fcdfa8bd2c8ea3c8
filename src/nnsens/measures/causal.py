"""Causal sensitivity under unobserved confounding: the marginal sensitivity model (MSM) for a binary treatment.

The MSM (Tan 2006) with parameter Γ ≥ 1 allows an unobserved U to move the treatment odds by at most a factor Γ:
``1/Γ ≤ [π(x,u)/(1−π(x,u))] / [π(x)/(1−π(x))] ≤ Γ`` with ``π(x) = P(A=a | x)``. Writing E[Y(a) | x] as an expectation
over P(Y | x, A=a) with weight ``w = π(x)/π(x,u)``, the weights are confined to

    w− = π + (1 − π)/Γ,    w+ = π + Γ(1 − π),    E[w] = 1,

and the sharp bounds (Dorn & Guo 2022, arXiv 2112.11449; Frauen et al. 2023, arXiv 2305.16988) put ``w+`` on the
upper tail of Y above its τ-quantile and ``w−`` below it, τ = Γ/(1+Γ) (``1 − τ`` for the lower bound). Here that
optimum is computed exactly on the empirical distribution of the given draws (the quantile sample gets a fractional
weight), so it equals the linear programme over per-draw weights.

The fairness bounds (Schröder et al. 2023, arXiv 2311.18460) are in :mod:`nnsens.methods.fair_sensitivity`.
"""

from __future__ import annotations

import math

import torch

__all__ = ["msm_bounds", "msm_bounds_discrete", "msm_weight_range", "quantile_reweighted_mean"]


def _check_gamma(gamma: object, fn: str) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 1:
        raise ValueError(f"The 'gamma' parameter of {fn} must be a finite float in [1, inf). Got {gamma!r} instead.")
    return float(gamma)


def _check_outcomes(outcomes: object, fn: str) -> torch.Tensor:
    if not isinstance(outcomes, torch.Tensor):
        raise TypeError(f"The 'outcomes' parameter of {fn} must be a torch.Tensor. "
                        f"Got {type(outcomes).__name__} instead.")
    if outcomes.ndim != 2 or outcomes.shape[1] < 1:
        raise ValueError(f"The 'outcomes' parameter of {fn} must be a tensor of shape (n_units, n_samples) with "
                         f"n_samples >= 1. Got shape {tuple(outcomes.shape)} instead.")
    if not outcomes.is_floating_point():
        outcomes = outcomes.to(torch.get_default_dtype())
    if not torch.isfinite(outcomes).all():
        raise ValueError(f"The 'outcomes' parameter of {fn} must hold finite values.")
    return outcomes


def _check_propensity(propensity: object, n_units: int, like: torch.Tensor, fn: str) -> torch.Tensor:
    if not isinstance(propensity, torch.Tensor):
        raise TypeError(f"The 'propensity' parameter of {fn} must be a torch.Tensor. "
                        f"Got {type(propensity).__name__} instead.")
    if propensity.shape != (n_units,):
        raise ValueError(f"The 'propensity' parameter of {fn} must be a tensor of shape ({n_units},). "
                         f"Got shape {tuple(propensity.shape)} instead.")
    p = propensity.to(device=like.device, dtype=like.dtype)
    if not ((p > 0) & (p <= 1)).all():
        raise ValueError(f"The 'propensity' parameter of {fn} must hold probabilities in (0, 1]. "
                         f"Got values in [{p.min().item():.4g}, {p.max().item():.4g}] instead.")
    return p


def msm_weight_range(propensity: torch.Tensor, *, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The MSM's range ``(w−, w+)`` of the weight ``π(x)/π(x,u)`` relative to P(Y | x, A=a).

    Parameters
    ----------
    propensity : torch.Tensor
        ``P(A=a | x)``, any shape, values in (0, 1].
    gamma : float
        The MSM parameter Γ ≥ 1.

    Returns
    -------
    (w_lo, w_hi) : tuple of torch.Tensor
        ``π + (1−π)/Γ`` and ``π + Γ(1−π)``, the shape of ``propensity``; both 1 at Γ = 1.
    """
    gamma = _check_gamma(gamma, "msm_weight_range")
    return propensity + (1 - propensity) / gamma, propensity + gamma * (1 - propensity)


def quantile_reweighted_mean(values: torch.Tensor, w_below: torch.Tensor, w_above: torch.Tensor, tau: float,
                             probs: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of each row's distribution under weight ``w_below`` on its lowest ``tau`` mass, ``w_above`` above.

    Row i is the distribution with atoms ``values[i]`` and masses ``probs[i]`` (default: 1/n each, the empirical
    distribution of draws). The atom straddling the τ-quantile is split, so the result is continuous in τ and equals
    the optimum of the LP over per-atom weights. ``w_below``/``w_above`` are (n_units,). Differentiable in
    ``values``, ``probs`` and the weights (sorting is piecewise linear).
    """
    v, order = torch.sort(values, dim=1)  # (n_units, K), ascending
    if probs is None:
        p = torch.full_like(v, 1.0 / v.shape[1])
    else:
        p = torch.gather(probs, 1, order)
    upto = torch.cumsum(p, dim=1) - p  # mass strictly below each atom
    below = torch.minimum((tau - upto).clamp(min=0.0), p)  # (n_units, K): part of each atom's mass below τ
    w = w_below[:, None] * below + w_above[:, None] * (p - below)
    return (w * v).sum(dim=1)


def msm_bounds_discrete(values: torch.Tensor, probs: torch.Tensor, propensity: torch.Tensor, *,
                        gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`msm_bounds` for a discrete P(Y | x, A=a) given by atoms and their masses.

    Parameters
    ----------
    values, probs : torch.Tensor
        (n_units, K): the atoms of each unit's outcome distribution and their probabilities (rows sum to 1).
    propensity : torch.Tensor
        (n_units,) the nominal P(A=a | x), values in (0, 1].
    gamma : float
        The MSM parameter Γ ≥ 1.

    Returns
    -------
    (lower, upper) : tuple of torch.Tensor
        Each (n_units,); at Γ = 1 both equal ``(values * probs).sum(1)``. Differentiable in ``values`` and ``probs``.
    """
    fn = "msm_bounds_discrete"
    gamma = _check_gamma(gamma, fn)
    v = _check_outcomes(values, fn)
    if not isinstance(probs, torch.Tensor) or probs.shape != v.shape:
        got = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
        raise ValueError(f"The 'probs' parameter of {fn} must be a tensor of the shape of 'values', "
                         f"{tuple(v.shape)}. Got {got} instead.")
    pr = probs.to(device=v.device, dtype=v.dtype)
    if (pr < 0).any() or not torch.allclose(pr.sum(1), torch.ones_like(pr[:, 0]), atol=1e-5):
        raise ValueError(f"The 'probs' parameter of {fn} must hold non-negative rows summing to 1.")
    p = _check_propensity(propensity, v.shape[0], v, fn)
    w_lo, w_hi = msm_weight_range(p, gamma=gamma)
    tau = gamma / (1 + gamma)
    upper = quantile_reweighted_mean(v, w_lo, w_hi, tau, pr)
    lower = quantile_reweighted_mean(v, w_hi, w_lo, 1 - tau, pr)
    return lower, upper


def msm_bounds(outcomes: torch.Tensor, propensity: torch.Tensor, *, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sharp bounds on E[Y(a) | x] under the marginal sensitivity model with parameter Γ (binary treatment).

    Parameters
    ----------
    outcomes : torch.Tensor
        (n_units, n_samples) draws from P(Y | x, A=a), one row per unit x.
    propensity : torch.Tensor
        (n_units,) the nominal propensity P(A=a | x), values in (0, 1].
    gamma : float
        The MSM parameter Γ ≥ 1 (Γ = 1: no unobserved confounding).

    Returns
    -------
    (lower, upper) : tuple of torch.Tensor
        Each (n_units,), device and dtype of ``outcomes``. At Γ = 1 both equal the row means; the interval widens
        monotonically with Γ. The bounds are sharp for the empirical distribution of the draws: they equal the
        optimum of the linear programme over per-draw weights in [w−, w+] with mean 1.

    Examples
    --------
    >>> y = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    >>> lo, hi = msm_bounds(y, torch.tensor([0.5]), gamma=1.0)
    >>> float(lo), float(hi)
    (1.5, 1.5)
    """
    fn = "msm_bounds"
    gamma = _check_gamma(gamma, fn)
    y = _check_outcomes(outcomes, fn)
    p = _check_propensity(propensity, y.shape[0], y, fn)
    w_lo, w_hi = msm_weight_range(p, gamma=gamma)
    tau = gamma / (1 + gamma)
    upper = quantile_reweighted_mean(y, w_lo, w_hi, tau)
    lower = quantile_reweighted_mean(y, w_hi, w_lo, 1 - tau)
    return lower, upper
