"""arXiv 2311.18460 — bounds on causal-fairness effects under unobserved confounding (Schröder, Frauen, Feuerriegel).

For a predictor's soft score ``g[a, z, m]`` on a binary Standard Fairness Model (Z, A, M binary), every effect is a
combination of the terms Q(a_i, a_j) = Σ_z P(z) Σ_m g(a_i, z, m) P(m | z, do(A=a_j)) and the observed disparity TV:

    DE = Q(1, 0) − Q(0, 0),   IE = Q(1, 1) − Q(1, 0),   SE = TV − (Q(1, 1) − Q(0, 0)).

An unobserved U that confounds A and M within the MSM of parameter Γ (odds of P(A | Z, U) within a factor Γ of
P(A | Z)) leaves P(m | z, do(a)) a reweighting of P(m | z, a) with density ratio in [w−, w+] (propensity
P(A=a | z)), so each term is bounded by the quantile-thresholded reweighting of
:func:`nnsens.measures.causal.msm_bounds_discrete` (thresholds Γ/(1+Γ) and 1/(1+Γ)). As in the official code
(``Bounds_binary``), the bounds of an effect combine per-term bounds: valid, not claimed sharp (the terms are
bounded independently). The bounds are differentiable in ``g``, so they serve as a training penalty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnsens.measures.causal import msm_bounds_discrete

EFFECTS = ("DE", "IE", "SE")


@dataclass(frozen=True)
class Nuisances:
    """Observational nuisances of the binary SFM, fitted by maximum likelihood (saturated logistic = frequencies).

    ``p_z`` (2,) P(Z=z); ``pi`` (2,) P(A=1 | Z=z); ``p_m`` (2, 2) P(M=1 | A=a, Z=z); ``p_z_a`` (2, 2) P(Z=z | A=a).
    """

    p_z: torch.Tensor
    pi: torch.Tensor
    p_m: torch.Tensor
    p_z_a: torch.Tensor


def fit_nuisances(z: np.ndarray, a: np.ndarray, m: np.ndarray, *, dtype: torch.dtype = torch.float32) -> Nuisances:
    """Fit the propensity P(A | Z), the mediator model P(M | A, Z) and P(Z), P(Z | A) on observational data.

    With binary covariates the saturated logistic models' maximum-likelihood fits are the cell frequencies; each
    cell needs at least one observation.
    """
    z, a, m = (np.asarray(v).astype(int) for v in (z, a, m))
    if not (len(z) == len(a) == len(m)) or len(z) == 0:
        raise ValueError(f"fit_nuisances needs z, a, m of one non-zero length. Got {len(z)}, {len(a)}, {len(m)}.")
    counts = np.zeros((2, 2, 2))  # (a, z, m)
    np.add.at(counts, (a, z, m), 1.0)
    n_az = counts.sum(2)  # (a, z)
    if (n_az == 0).any():
        raise ValueError("fit_nuisances needs at least one observation in every (A, Z) cell.")
    n_z = n_az.sum(0)
    t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
    return Nuisances(p_z=t(n_z / n_z.sum()), pi=t(n_az[1] / n_z), p_m=t(counts[:, :, 1] / n_az),
                     p_z_a=t(n_az / n_az.sum(1, keepdims=True)))


TERMS = ((0, 0), (1, 0), (1, 1), (0, 1))


def term_bounds(g: torch.Tensor, nu: Nuisances, *, gamma: float) -> dict[tuple[int, int], tuple[torch.Tensor, ...]]:
    """Bounds on every Q(a_i, a_j) = E[g(a_i, Z, M(a_j))] under the MSM with parameter Γ (per-z quantile bounds).

    Returns ``{(a_i, a_j): (lower, upper)}``; the 4 terms × 2 values of z go through one call of
    :func:`msm_bounds_discrete` (8 units, 2 atoms each).
    """
    dt = g.dtype
    values = torch.cat([g[ai] for ai, _ in TERMS])  # (8, 2): rows (term, z), columns m
    pm1 = torch.cat([nu.p_m[aj] for _, aj in TERMS]).to(dt)  # (8,) P(M=1 | a_j, z)
    probs = torch.stack([1 - pm1, pm1], dim=1)
    prop = torch.cat([nu.pi if aj == 1 else 1 - nu.pi for _, aj in TERMS]).to(dt)  # P(A=a_j | z)
    lo, hi = msm_bounds_discrete(values, probs, prop, gamma=gamma)
    pz = nu.p_z.to(dt)
    lo, hi = (lo.view(len(TERMS), 2) * pz).sum(1), (hi.view(len(TERMS), 2) * pz).sum(1)
    return {t: (lo[k], hi[k]) for k, t in enumerate(TERMS)}


def observed_disparity(g: torch.Tensor, nu: Nuisances) -> torch.Tensor:
    """TV = E[g | A=1] − E[g | A=0] under the fitted observational distribution."""
    cond = []
    for a in (0, 1):
        pm1 = nu.p_m[a].to(g.dtype)
        cond.append((nu.p_z_a[a].to(g.dtype) * ((1 - pm1) * g[a, :, 0] + pm1 * g[a, :, 1])).sum())
    return cond[1] - cond[0]


def effect_bounds(g: torch.Tensor, nu: Nuisances, *, gamma: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Lower and upper bounds on DE, IE and SE of the soft score ``g`` (shape (2, 2, 2), indexed [a, z, m]).

    At Γ = 1 each interval collapses to the point estimate under no unobserved confounding.
    """
    if not isinstance(g, torch.Tensor) or g.shape != (2, 2, 2):
        got = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        raise ValueError(f"The 'g' parameter of effect_bounds must be a tensor of shape (2, 2, 2). Got {got}.")
    q = term_bounds(g, nu, gamma=gamma)
    tv = observed_disparity(g, nu)
    return {
        "DE": (q[1, 0][0] - q[0, 0][1], q[1, 0][1] - q[0, 0][0]),
        "IE": (q[1, 1][0] - q[1, 0][1], q[1, 1][1] - q[1, 0][0]),
        "SE": (tv - q[1, 1][1] + q[0, 0][0], tv - q[1, 1][0] + q[0, 0][1]),
    }


def worst_case_unfairness(g: torch.Tensor, nu: Nuisances, *, gamma: float) -> torch.Tensor:
    """Σ over DE, IE, SE of max(|lower|, |upper|): the penalty of the robust-fair predictor (|point| at Γ = 1)."""
    b = effect_bounds(g, nu, gamma=gamma)
    return sum(torch.maximum(lo.abs(), hi.abs()) for lo, hi in b.values())


def cell_inputs(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 8 input cells (A, Z, M) in [a, z, m] order, shape (8, 3): a predictor on them reshapes to (2, 2, 2)."""
    grid = torch.cartesian_prod(*(torch.tensor([0.0, 1.0]),) * 3)
    return grid.to(device=device, dtype=dtype)
