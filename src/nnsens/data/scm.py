"""The Standard Fairness Model with one unobserved binary confounder (P01, after the sim9/sim10 simulators of
Schröder et al. 2023, arXiv 2311.18460, github.com/m-schroder/FairSensitivityAnalysis).

Z ~ Bern(0.5) observed confounder, A sensitive attribute, M mediator, Y label, all binary; U ~ Bern(0.5) unobserved,
independent of Z, entering with strength s:

    A ~ Bern(clip σ(5Z − sU))
    M ~ Bern(clip σ(5A + Z − sU·[kind = "sim9"]))        U_IE: confounds A and M
    Y ~ Bern(clip σ(0.5A + 0.5Z + 5M − sU·[kind = "sim10"]))   U_DE: confounds A and Y

with probabilities clipped to [0.02, 0.98] as in the official simulators. (The official configs draw U from
N(0, 1e-7²), a constant, so they hold no confounding; a Gaussian U would make the MSM parameter unbounded.)

The causal quantities of a predictor ``g[a, z, m]`` (a soft score on the 8 cells) are exact expectations over the
interventional model — the limit of Monte-Carlo interventions (:meth:`FairSCM.mc_effects` is that simulation):

    Q(a_i, a_j) = E[g(a_i, Z, M(a_j))],   TV = E[g | A=1] − E[g | A=0],
    DE = Q(1, 0) − Q(0, 0),   IE = Q(1, 1) − Q(1, 0),   SE = TV − (Q(1, 1) − Q(0, 0)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLIP = (0.02, 0.98)
EFFECTS = ("DE", "IE", "SE")


def _p(logit: np.ndarray | float) -> np.ndarray:
    return np.clip(1.0 / (1.0 + np.exp(-np.asarray(logit, dtype=float))), *CLIP)


@dataclass(frozen=True)
class FairSCM:
    """The confounded Standard Fairness Model; ``kind`` "sim9" (U on A and M) or "sim10" (U on A and Y)."""

    kind: str = "sim9"
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("sim9", "sim10"):
            raise ValueError(f"The 'kind' parameter of FairSCM must be one of 'sim9', 'sim10'. Got {self.kind!r}.")
        if not (np.isfinite(self.strength) and self.strength >= 0):
            raise ValueError(f"The 'strength' parameter of FairSCM must be a float in [0, inf). "
                             f"Got {self.strength!r} instead.")

    # conditional probabilities, broadcasting over arrays of 0/1 values
    def p_a(self, z, u) -> np.ndarray:
        """P(A=1 | Z=z, U=u)."""
        return _p(5 * np.asarray(z) - self.strength * np.asarray(u))

    def p_m(self, a, z, u) -> np.ndarray:
        """P(M=1 | A=a, Z=z, U=u)."""
        s = self.strength if self.kind == "sim9" else 0.0
        return _p(5 * np.asarray(a) + np.asarray(z) - s * np.asarray(u))

    def p_y(self, a, z, m, u) -> np.ndarray:
        """P(Y=1 | A=a, Z=z, M=m, U=u)."""
        s = self.strength if self.kind == "sim10" else 0.0
        return _p(0.5 * np.asarray(a) + 0.5 * np.asarray(z) + 5 * np.asarray(m) - s * np.asarray(u))

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` observational draws: a dict of int arrays Z, A, M, Y (and the hidden U, for diagnostics)."""
        z = rng.integers(0, 2, n)
        u = rng.integers(0, 2, n)
        a = (rng.random(n) < self.p_a(z, u)).astype(int)
        m = (rng.random(n) < self.p_m(a, z, u)).astype(int)
        y = (rng.random(n) < self.p_y(a, z, m, u)).astype(int)
        return {"Z": z, "A": a, "M": m, "Y": y, "U": u}

    def propensity(self) -> np.ndarray:
        """P(A=1 | Z=z) for z = 0, 1 (U marginalised)."""
        return 0.5 * (self.p_a([0, 1], 0) + self.p_a([0, 1], 1))

    def oracle_gamma(self) -> float:
        """Γ*: the largest odds ratio between P(A | Z, U) and P(A | Z) over (z, u), either direction."""
        pz = self.propensity()[:, None]  # (z, 1)
        pzu = self.p_a(np.array([0, 1])[:, None], np.array([0, 1])[None, :])  # (z, u)
        ratio = (pzu / (1 - pzu)) / (pz / (1 - pz))
        return float(max(ratio.max(), (1 / ratio).max()))

    def effects(self, g: np.ndarray) -> dict[str, float]:
        """Exact DE, IE, SE (and TV, TE) of the soft score ``g[a, z, m]`` (shape (2, 2, 2)) under interventions."""
        g = np.asarray(g, dtype=float).reshape(2, 2, 2)
        zs, us = np.meshgrid([0, 1], [0, 1], indexing="ij")  # each (z, u) has mass 1/4
        q = np.zeros((2, 2))
        for ai in (0, 1):
            for aj in (0, 1):
                pm = self.p_m(aj, zs, us)
                q[ai, aj] = np.mean((1 - pm) * g[ai, zs, 0] + pm * g[ai, zs, 1])
        cond = np.zeros(2)
        for a in (0, 1):
            pa = self.p_a(zs, us) if a == 1 else 1 - self.p_a(zs, us)
            pm = self.p_m(a, zs, us)
            cond[a] = np.sum(pa * ((1 - pm) * g[a, zs, 0] + pm * g[a, zs, 1])) / np.sum(pa)
        tv, te = cond[1] - cond[0], q[1, 1] - q[0, 0]
        return {"DE": q[1, 0] - q[0, 0], "IE": q[1, 1] - q[1, 0], "SE": tv - te, "TV": tv, "TE": te}

    def mc_effects(self, g: np.ndarray, n: int, rng: np.random.Generator) -> dict[str, float]:
        """:meth:`effects` by Monte-Carlo interventions: draw (Z, U), set A, draw M(0), M(1) and read g."""
        g = np.asarray(g, dtype=float).reshape(2, 2, 2)
        z, u = rng.integers(0, 2, n), rng.integers(0, 2, n)
        r = rng.random(n)  # common random numbers for M(0), M(1)
        m = {a: (r < self.p_m(a, z, u)).astype(int) for a in (0, 1)}
        q = {(ai, aj): g[ai, z, m[aj]].mean() for ai in (0, 1) for aj in (0, 1)}
        obs = self.sample(n, rng)
        score = g[obs["A"], obs["Z"], obs["M"]]
        tv = score[obs["A"] == 1].mean() - score[obs["A"] == 0].mean()
        te = q[1, 1] - q[0, 0]
        return {"DE": q[1, 0] - q[0, 0], "IE": q[1, 1] - q[1, 0], "SE": tv - te, "TV": tv, "TE": te}
