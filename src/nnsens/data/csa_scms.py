"""The two 1-D structural causal models of NeuralCSA (Frauen et al. 2024, arXiv 2311.16026), with oracle helpers.

Both have one covariate X ~ U(−1, 1), a binary unobserved confounder U, a treatment A and an outcome Y, written here
in numpy from the equations published in the authors' repository (``data/scms.py``):

- :class:`BinarySCM` (the paper's Dataset 1, after Kallus et al. 2019): observed propensity
  ``π(x) = P(A=1 | x) = 0.25 + 0.5·σ(3x)``; ``P(U=1 | x) = ((Γ−1)π(x) + 1)/(Γ+1)``; ``P(A=1 | x, u)`` multiplies
  π(x) by ``s+ = 1/((1−1/Γ)π + 1/Γ)`` when u = 1 and by ``s− = 1/((1−Γ)π + Γ)`` when u = 0, so that the odds ratio
  between ``P(A=1 | x, u)`` and ``π(x)`` is Γ or 1/Γ at every x: the SCM is the MSM's worst case at Γ* = Γ.
  ``Y = (2A−1)X + (2A−1) − 2 sin(2(2A−1)X) − 2(2U−1)(1 + X/2) + ε``, ε ~ N(0, 1).
- :class:`ContinuousSCM` (Dataset 2, after Jesson et al. 2022): U ~ Bern(1/2), A | x, u ~ Beta(α, α) with
  ``α = clip(x + 2 + c(u − 1/2), 0.1, 10)`` (c = ``coef_u``), ``Y = A + X e^{−XA} − (U − 1/2)X/2 + (X/2 + 1) + ε``.

The repository standardises Y by the mean and standard deviation of each generated sample; here the constants come
from the observational sample :meth:`sample` returns and every oracle quantity is expressed in the same units.
All randomness comes from a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta as beta_dist

__all__ = ["BinarySCM", "CSAData", "ContinuousSCM", "f_kl", "kl_oracle_grid"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def f_kl(t: np.ndarray) -> np.ndarray:
    """The KL generator ``f(t) = t log t``."""
    return t * np.log(t)


@dataclass(frozen=True)
class CSAData:
    """An observational sample: covariate, treatment, standardised outcome, and the standardisation constants."""

    x: np.ndarray  # (n,)
    a: np.ndarray  # (n,) 0/1 for the binary SCM, in (0, 1) for the continuous one
    y: np.ndarray  # (n,) standardised outcome
    u: np.ndarray  # (n,) the hidden confounder (for tests only; never given to an estimator)
    y_mean: float
    y_std: float


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_gamma(gamma: float, cls: str) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not np.isfinite(gamma) or gamma < 1:
        raise ValueError(f"The 'gamma' parameter of {cls} must be a finite float in [1, inf). Got {gamma!r} instead.")
    return float(gamma)


class BinarySCM:
    """Dataset 1: binary treatment, the MSM's worst case at Γ* = ``gamma`` (see the module docstring)."""

    def __init__(self, gamma: float = 2.0) -> None:
        self.gamma = _check_gamma(gamma, "BinarySCM")

    # -------------------------------------------------------------- the mechanisms
    def propensity(self, x: np.ndarray) -> np.ndarray:
        """π(x) = P(A=1 | x), the observed (nominal) propensity."""
        return 0.25 + 0.5 * _sigmoid(3.0 * np.asarray(x, dtype=float))

    def s_plus(self, x: np.ndarray) -> np.ndarray:
        """P(A=1 | x, u=1) / π(x)."""
        return 1.0 / ((1.0 - 1.0 / self.gamma) * self.propensity(x) + 1.0 / self.gamma)

    def s_minus(self, x: np.ndarray) -> np.ndarray:
        """P(A=1 | x, u=0) / π(x)."""
        return 1.0 / ((1.0 - self.gamma) * self.propensity(x) + self.gamma)

    def p_u1(self, x: np.ndarray) -> np.ndarray:
        """P(U=1 | x)."""
        return ((self.gamma - 1.0) * self.propensity(x) + 1.0) / (self.gamma + 1.0)

    def propensity_full(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """P(A=1 | x, u)."""
        u = np.asarray(u, dtype=float)
        return self.propensity(x) * (u * self.s_plus(x) + (1.0 - u) * self.s_minus(x))

    def p_u1_given_a(self, x: np.ndarray, a: int) -> np.ndarray:
        """P(U=1 | x, A=a) by Bayes' rule."""
        pi, pu = self.propensity(x), self.p_u1(x)
        if a == 1:
            return self.propensity_full(x, 1.0) * pu / pi
        return (1.0 - self.propensity_full(x, 1.0)) * pu / (1.0 - pi)

    @staticmethod
    def outcome_mean(x: np.ndarray, a: np.ndarray, u: np.ndarray) -> np.ndarray:
        """E[Y | x, a, u] before standardisation."""
        s = 2.0 * np.asarray(a, dtype=float) - 1.0
        return s * x + s - 2.0 * np.sin(2.0 * s * x) - 2.0 * (2.0 * np.asarray(u, dtype=float) - 1.0) * (1.0 + 0.5 * x)

    # -------------------------------------------------------------- sampling
    def sample(self, n: int, seed: int | np.random.Generator = 0) -> CSAData:
        """Draw ``n`` observational units; Y is standardised by the sample's own mean and standard deviation."""
        rng = _rng(seed)
        x = rng.uniform(-1.0, 1.0, n)
        u = (rng.random(n) < self.p_u1(x)).astype(float)
        a = (rng.random(n) < self.propensity_full(x, u)).astype(float)
        y = self.outcome_mean(x, a, u) + rng.standard_normal(n)
        m, s = float(y.mean()), float(y.std())
        return CSAData(x, a, (y - m) / s, u, m, s)

    def sample_conditional(self, x: np.ndarray, a: int, n_samples: int, data: CSAData,
                           seed: int | np.random.Generator = 0) -> np.ndarray:
        """(len(x), n_samples) draws from the observational P(Y | x, A=a), standardised like ``data``."""
        rng = _rng(seed)
        x = np.asarray(x, dtype=float)[:, None]
        u = (rng.random((x.shape[0], n_samples)) < self.p_u1_given_a(x, a)).astype(float)
        y = self.outcome_mean(x, a, u) + rng.standard_normal(u.shape)
        return (y - data.y_mean) / data.y_std

    # -------------------------------------------------------------- oracle quantities
    def interventional_mean(self, x: np.ndarray, a: int, data: CSAData) -> np.ndarray:
        """E[Y(a) | x] in the standardised units of ``data`` (exact: U enters linearly)."""
        x = np.asarray(x, dtype=float)
        pu = self.p_u1(x)
        raw = pu * self.outcome_mean(x, a, 1.0) + (1.0 - pu) * self.outcome_mean(x, a, 0.0)
        return (raw - data.y_mean) / data.y_std

    def cate(self, x: np.ndarray, data: CSAData) -> np.ndarray:
        """The true CATE E[Y(1) − Y(0) | x] in the standardised units of ``data``."""
        return self.interventional_mean(x, 1, data) - self.interventional_mean(x, 0, data)

    def msm_oracle(self, x: np.ndarray) -> np.ndarray:
        """The smallest MSM Γ compatible with the SCM at each x: the worst odds ratio of P(A=1|x,u) to π(x)."""
        pi = self.propensity(x)
        odds = pi / (1.0 - pi)
        r = [odds * (1.0 - p) / p for p in (self.propensity_full(x, 0.0), self.propensity_full(x, 1.0))]
        return np.maximum(np.maximum(r[0], r[1]), 1.0 / np.minimum(r[0], r[1]))

    def f_oracle(self, x: np.ndarray, f: Callable[[np.ndarray], np.ndarray] = f_kl, arm: int = 1) -> np.ndarray:
        """The f-sensitivity value at each x: ``max(E_{P(U|x,a)}[f(ρ)], E_{P(U|x,a)}[f(1/ρ)])`` for the ratio
        ``ρ(u) = P(u | x, A≠a) / P(u | x, A=a)``.

        With ``arm=1`` this is the formula of the authors' ``get_f_sensitivity_value`` (which always uses the
        treated arm); ``arm=0`` gives the value the control arm's shift needs.
        """
        p1 = self.p_u1_given_a(x, arm)
        q1 = self.p_u1_given_a(x, 1 - arm)
        rho1, rho0 = q1 / p1, (1.0 - q1) / (1.0 - p1)
        v1 = p1 * f(rho1) + (1.0 - p1) * f(rho0)
        v2 = p1 * f(1.0 / rho1) + (1.0 - p1) * f(1.0 / rho0)
        return np.maximum(v1, v2)


def kl_oracle_grid(scm: BinarySCM, x_grid: np.ndarray, arm: int = 1) -> float:
    """The catalog's KL oracle: the maximum over ``x_grid`` of :meth:`BinarySCM.f_oracle` with f = t log t."""
    return float(np.max(scm.f_oracle(np.asarray(x_grid, dtype=float), f_kl, arm)))


class ContinuousSCM:
    """Dataset 2: continuous treatment in (0, 1) with a Beta propensity shifted by U (see the module docstring)."""

    def __init__(self, coef_u: float = 3.0) -> None:
        if isinstance(coef_u, bool) or not isinstance(coef_u, (int, float)) or not np.isfinite(coef_u):
            raise ValueError(f"The 'coef_u' parameter of ContinuousSCM must be a finite float. Got {coef_u!r} instead.")
        self.coef_u = float(coef_u)

    def beta_param(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Both parameters of the Beta(α, α) law of A given (x, u)."""
        return np.clip(np.asarray(x, dtype=float) + 2.0 + self.coef_u * (np.asarray(u, dtype=float) - 0.5), 0.1, 10.0)

    def density_full(self, a: np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """p(a | x, u)."""
        p = self.beta_param(x, u)
        return beta_dist.pdf(a, p, p)

    def density_obs(self, a: np.ndarray, x: np.ndarray) -> np.ndarray:
        """p(a | x) = (p(a | x, 0) + p(a | x, 1)) / 2."""
        return 0.5 * (self.density_full(a, x, 0.0) + self.density_full(a, x, 1.0))

    @staticmethod
    def outcome_mean(x: np.ndarray, a: np.ndarray, u: np.ndarray) -> np.ndarray:
        """E[Y | x, a, u] before standardisation."""
        return a + x * np.exp(-x * a) - 0.5 * (np.asarray(u, dtype=float) - 0.5) * x + (0.5 * x + 1.0)

    def sample(self, n: int, seed: int | np.random.Generator = 0) -> CSAData:
        """Draw ``n`` observational units; Y is standardised by the sample's own mean and standard deviation."""
        rng = _rng(seed)
        x = rng.uniform(-1.0, 1.0, n)
        u = (rng.random(n) < 0.5).astype(float)
        p = self.beta_param(x, u)
        a = rng.beta(p, p)
        y = self.outcome_mean(x, a, u) + rng.standard_normal(n)
        m, s = float(y.mean()), float(y.std())
        return CSAData(x, a, (y - m) / s, u, m, s)

    def interventional_mean(self, x: np.ndarray, a: float, data: CSAData) -> np.ndarray:
        """μ(x, a) = E[Y(a) | x] in the standardised units of ``data`` (U ~ Bern(1/2) independent of X)."""
        x = np.asarray(x, dtype=float)
        raw = 0.5 * (self.outcome_mean(x, a, 0.0) + self.outcome_mean(x, a, 1.0))
        return (raw - data.y_mean) / data.y_std

    def cmsm_oracle(self, x: np.ndarray, a: float) -> np.ndarray:
        """The smallest continuous-MSM Γ at (x, a): the worst ratio p(a | x, u) / p(a | x) or its inverse."""
        r0 = self.density_full(a, x, 0.0) / self.density_obs(a, x)
        r1 = self.density_full(a, x, 1.0) / self.density_obs(a, x)
        return np.maximum(np.maximum(r0, r1), 1.0 / np.minimum(r0, r1))

    def f_oracle(self, x: np.ndarray, a: float, f: Callable[[np.ndarray], np.ndarray] = f_kl) -> np.ndarray:
        """The f-sensitivity value at (x, a), as the authors' ``get_f_sensitivity_value`` defines it."""
        r0 = self.density_full(a, x, 0.0) / self.density_obs(a, x)
        r1 = self.density_full(a, x, 1.0) / self.density_obs(a, x)
        v1 = 0.5 * r0 * f(r0) + 0.5 * r1 * f(r1)
        v2 = 0.5 * r0 * f(1.0 / r0) + 0.5 * r1 * f(1.0 / r1)
        return np.maximum(v1, v2)
