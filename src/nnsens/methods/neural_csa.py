"""NeuralCSA: two-stage neural causal sensitivity analysis (Frauen et al. 2024, arXiv 2311.16026).

Binary treatment, expectation query E[Y(a) | x]. Stage 1 learns the observational P(Y | x, a) as a conditional
normalizing flow ``Y = T1(Z; x, a)``, Z ~ N(0, 1), and the nominal propensity π_a(x) = P(A=a | x) as a small
classifier. Under unobserved confounding the interventional law is the mixture

    P(Y(a) | x) = π_a(x) · P(Y | x, A=a) + (1 − π_a(x)) · P(Y | x, A≠a, shifted),

where the unobserved part is ``T1`` applied to a *shifted* latent law Q(Z | x, a) instead of N(0, 1). A sensitivity
model restricts the ratio ρ = dQ/dN(0, 1):

- MSM with parameter Γ: ``1/Γ ≤ ρ(z) ≤ Γ`` for every z (the density-ratio form of the odds-ratio bound);
- KL f-sensitivity with parameter η: ``max(E_N[ρ log ρ], E_N[ρ⁻¹ log ρ⁻¹]) ≤ η`` (the authors' binary form).

Stage 2 learns Q as a second conditional flow (context: x, a and the bound's direction) that maximises (upper) or
minimises (lower) the query subject to the constraint, by an augmented Lagrangian with one multiplier per context.
The flows are ``zuko`` neural spline flows; stage 1 is trained by :func:`nnsens.training.fit`, stage 2's constrained
loop is the short one below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import zuko
from torch import nn

from nnsens.models import MLP
from nnsens.training import fit, predict

__all__ = ["SENSITIVITY_MODELS", "Stage1", "Stage2Result", "fit_stage1", "sensitivity_value", "stage2_bounds"]

SENSITIVITY_MODELS = ("msm", "kl")


@dataclass(frozen=True)
class Stage1:
    """The fitted nuisance models: the outcome flow (context (x, a)) and the propensity classifier (input x)."""

    flow: zuko.flows.NSF
    propensity_net: nn.Module

    def propensity(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Estimated P(A=a | x) for 1-D ``x`` and 0/1 ``a`` of the same length."""
        p1 = torch.softmax(predict(self.propensity_net, x[:, None]), dim=1)[:, 1]
        return torch.where(a > 0.5, p1, 1.0 - p1)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, a: torch.Tensor, n_samples: int, generator: torch.Generator) -> torch.Tensor:
        """(len(x), n_samples) draws from the learned P(Y | x, A=a)."""
        z = torch.randn(n_samples, x.shape[0], 1, generator=generator, dtype=x.dtype).to(x.device)
        y = self.flow(torch.stack([x, a], 1)).transform.inv(z)  # (n_samples, n_units, 1)
        return y[..., 0].T


def _check_int(value: object, name: str, fn: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"The '{name}' parameter of {fn} must be an int in [{low}, inf). Got {value!r} instead.")
    return value


def fit_stage1(x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, *, epochs: int = 30, batch_size: int = 256,
               lr: float = 3e-3, transforms: int = 2, hidden: int = 64, bins: int = 8,
               propensity_epochs: int = 10, seed: int = 0) -> Stage1:
    """Fit the outcome flow P(Y | x, a) by maximum likelihood and the propensity classifier by cross-entropy.

    Parameters
    ----------
    x, a, y : torch.Tensor
        (n,) covariate, binary treatment (0/1 floats) and outcome.
    epochs, batch_size, lr : training of the flow (Adam, linear decay), through :func:`nnsens.training.fit`.
    transforms, hidden, bins : the zuko NSF: spline transforms, hidden width (two layers), spline bins.
    propensity_epochs : epochs of the 1–32–32–2 propensity MLP.
    seed : int
        Seeds the initialisations and the data orders.
    """
    fn = "fit_stage1"
    for name, v in (("epochs", epochs), ("transforms", transforms), ("hidden", hidden), ("bins", bins),
                    ("propensity_epochs", propensity_epochs)):
        _check_int(v, name, fn)
    if not (x.ndim == a.ndim == y.ndim == 1 and x.shape == a.shape == y.shape):
        raise ValueError(f"The 'x', 'a' and 'y' parameters of {fn} must be 1-D tensors of one length. "
                         f"Got shapes {tuple(x.shape)}, {tuple(a.shape)}, {tuple(y.shape)} instead.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = zuko.flows.NSF(features=1, context=2, transforms=transforms, hidden_features=(hidden, hidden),
                              bins=bins).to(device=x.device, dtype=x.dtype)
        prop = MLP((1, 32, 32, 2)).to(device=x.device, dtype=x.dtype)
    ctx = torch.stack([x, a], 1)

    def nll(model: nn.Module, cb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return -model(cb).log_prob(yb[:, None]).mean()

    fit(flow, ctx, y, epochs=epochs, batch_size=batch_size, lr=lr, schedule="linear", objective=nll, generator=seed)
    fit(prop, x[:, None], a.long(), epochs=propensity_epochs, batch_size=batch_size, lr=3e-3, generator=seed + 1)
    for p in flow.parameters():
        p.requires_grad_(False)
    return Stage1(flow, prop)


def sensitivity_value(kind: str, log_ratio_q: torch.Tensor, log_ratio_base: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo sensitivity value per context of a latent shift with ratio ρ = dQ/dN(0, 1).

    ``log_ratio_q`` holds log ρ at draws from Q, ``log_ratio_base`` at draws from N(0, 1), both (n_draws, n_ctx).
    MSM: the largest |log ρ| seen (so the value is log Γ̂). KL: ``max(E_Q[log ρ], E_N[ρ⁻¹ log ρ⁻¹])``, the first term
    being E_N[ρ log ρ] written as an expectation under Q.
    """
    if kind == "msm":
        return torch.maximum(log_ratio_q.abs().amax(0), log_ratio_base.abs().amax(0))
    if kind == "kl":
        return torch.maximum(log_ratio_q.mean(0), (-torch.exp(-log_ratio_base) * log_ratio_base).mean(0))
    raise ValueError(f"The 'kind' parameter of sensitivity_value must be one of {SENSITIVITY_MODELS}. "
                     f"Got {kind!r} instead.")


def _violation(kind: str, param: float, lr_q: torch.Tensor, lr_b: torch.Tensor) -> torch.Tensor:
    """The constraint g ≤ 0 per context. MSM: mean excess of |log ρ| over log Γ at every draw (0 iff feasible)."""
    if kind == "msm":
        lg = math.log(param)
        return (lr_q.abs() - lg).clamp(min=0).mean(0) + (lr_b.abs() - lg).clamp(min=0).mean(0)
    return sensitivity_value("kl", lr_q, lr_b) - param


@dataclass(frozen=True)
class Stage2Result:
    """Bounds on E[Y(a) | x] over a grid of x (rows) and arms (columns), with the achieved sensitivity values."""

    lower: np.ndarray  # (n_x, n_arms)
    upper: np.ndarray  # (n_x, n_arms)
    value_lower: np.ndarray  # (n_x, n_arms) sensitivity value of the lower bound's shift (MSM: Γ̂; KL: η̂)
    value_upper: np.ndarray
    history: np.ndarray  # (steps,) the objective Σ(−s·query), for convergence plots


def stage2_bounds(stage1: Stage1, x_grid: torch.Tensor, kind: str, param: float, *, arms: tuple[int, ...] = (0, 1),
                  steps: int = 400, n_mc: int = 64, n_eval: int = 4096, lr: float = 5e-3, hidden: int = 32,
                  bins: int = 16, mu0: float = 1.0, mu_growth: float = 1.5, mu_max: float = 10.0,
                  update_every: int = 20, seed: int = 0) -> Stage2Result:
    """NeuralCSA bounds on E[Y(a) | x] for every x in ``x_grid`` and a in ``arms`` under one sensitivity model.

    Parameters
    ----------
    stage1 : Stage1
        From :func:`fit_stage1`.
    x_grid : torch.Tensor
        (n_x,) covariate values.
    kind : {"msm", "kl"}
        The sensitivity model; ``param`` is Γ ≥ 1 (MSM) or η > 0 (KL).
    steps, n_mc, lr : stage-2 Adam steps, latent draws per context and step, learning rate.
    n_eval : latent draws per context for the final bound estimates.
    hidden, bins : the stage-2 NSF (one spline transform, two hidden layers).
    mu0, mu_growth, mu_max, update_every : the augmented Lagrangian: penalty weight μ, its growth factor and cap, and
        how many steps between multiplier updates ``λ ← max(0, λ + μ g)``.
    seed : int
        Seeds the flow's initialisation and every latent draw.
    """
    fn = "stage2_bounds"
    if kind not in SENSITIVITY_MODELS:
        raise ValueError(f"The 'kind' parameter of {fn} must be one of {SENSITIVITY_MODELS}. Got {kind!r} instead.")
    if kind == "msm" and not param >= 1:
        raise ValueError(f"The 'param' parameter of {fn} must be a float in [1, inf) for the MSM. Got {param!r} "
                         "instead.")
    if kind == "kl" and not param > 0:
        raise ValueError(f"The 'param' parameter of {fn} must be a float in (0, inf) for KL. Got {param!r} instead.")
    for name, v in (("steps", steps), ("n_mc", n_mc), ("n_eval", n_eval), ("update_every", update_every)):
        _check_int(v, name, fn)
    dev, dt = x_grid.device, x_grid.dtype
    n_x, n_a = x_grid.shape[0], len(arms)
    # contexts: every (x, arm, direction); direction +1 = upper bound, −1 = lower bound
    xx = x_grid.repeat_interleave(2 * n_a)  # (C,)
    aa = torch.tensor(arms, device=dev, dtype=dt).repeat_interleave(2).repeat(n_x)
    ss = torch.tensor([1.0, -1.0], device=dev, dtype=dt).repeat(n_x * n_a)
    c1, c2 = torch.stack([xx, aa], 1), torch.stack([xx, aa, ss], 1)
    pi = stage1.propensity(xx, aa)  # (C,) nominal P(A=a | x)
    gen = torch.Generator().manual_seed(seed)
    t1 = stage1.flow(c1).transform  # z -> y through .inv, frozen
    with torch.no_grad():  # the observed part of the mixture: E[T1(Z)] under Z ~ N(0, 1)
        z = torch.randn(n_eval, c1.shape[0], 1, generator=gen, dtype=dt).to(dev)
        base_mean = t1.inv(z)[..., 0].mean(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow2 = zuko.flows.NSF(features=1, context=3, transforms=1, hidden_features=(hidden, hidden),
                               bins=bins).to(device=dev, dtype=dt)
    opt = torch.optim.Adam(flow2.parameters(), lr=lr)
    lam = torch.zeros(c2.shape[0], device=dev, dtype=dt)
    mu = mu0
    normal = torch.distributions.Normal(torch.zeros((), device=dev, dtype=dt), torch.ones((), device=dev, dtype=dt))

    def draws(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shifted latents v ~ Q, log ρ at v, and log ρ at base draws (n, C)."""
        q = flow2(c2)
        zq = torch.randn(n, c2.shape[0], 1, generator=gen, dtype=dt).to(dev)
        v, ladj = q.transform.inv.call_and_ladj(zq)  # v = T2⁻¹(zq); ladj = log|dv/dzq|
        lr_q = normal.log_prob(zq[..., 0]) - ladj - normal.log_prob(v[..., 0])
        zb = torch.randn(n, c2.shape[0], 1, generator=gen, dtype=dt).to(dev)
        lr_b = q.log_prob(zb) - normal.log_prob(zb[..., 0])
        return v, lr_q, lr_b

    history, g_acc = [], torch.zeros_like(lam)
    for step in range(steps):
        v, lr_q, lr_b = draws(n_mc)
        query = pi * base_mean + (1 - pi) * t1.inv(v)[..., 0].mean(0)  # (C,)
        g = _violation(kind, param, lr_q, lr_b)
        psi = torch.where(g >= -lam / mu, lam * g + 0.5 * mu * g**2, -(lam**2) / (2 * mu))
        loss = (-ss * query + psi).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float((-ss * query).sum().detach()))
        g_acc += g.detach()
        if (step + 1) % update_every == 0:  # multipliers move on the mean violation since the last update
            lam = (lam + mu * g_acc / update_every).clamp(min=0)
            g_acc.zero_()
            mu = min(mu * mu_growth, mu_max)
    with torch.no_grad():
        v, lr_q, lr_b = draws(n_eval)
        query = pi * base_mean + (1 - pi) * t1.inv(v)[..., 0].mean(0)
        value = sensitivity_value(kind, lr_q, lr_b)
        if kind == "msm":
            value = value.exp()
    shape = (n_x, n_a, 2)  # last axis: (upper, lower)
    q3, v3 = query.reshape(shape).cpu().numpy(), value.reshape(shape).cpu().numpy()
    return Stage2Result(q3[..., 1], q3[..., 0], v3[..., 1], v3[..., 0], np.asarray(history))
