"""MSM bounds: a linear programme over per-draw weights, Γ = 1, monotonicity, and coverage of the truth at Γ ≥ Γ*."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from nnsens.measures.causal import msm_bounds, msm_weight_range


def _lp_bounds(y: np.ndarray, pi: float, gamma: float) -> tuple[float, float]:
    """Brute force: optimise mean(w * y) over weights w_j in [w-, w+] with mean(w) = 1 (scipy's HiGHS)."""
    n = len(y)
    w_lo, w_hi = pi + (1 - pi) / gamma, pi + gamma * (1 - pi)
    out = []
    for sign in (1.0, -1.0):  # minimise, then maximise
        res = linprog(sign * y / n, A_eq=np.ones((1, n)) / n, b_eq=[1.0], bounds=[(w_lo, w_hi)] * n, method="highs")
        assert res.status == 0
        out.append(sign * res.fun)
    return out[0], out[1]


@pytest.mark.parametrize("gamma", [1.0, 1.3, 2.0, 3.7, 10.0])
def test_matches_linear_programme(gamma):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 13))  # 13 draws: the τ-quantile falls inside a draw, exercising the fractional weight
    y[4, :6] = 0.5  # ties
    pi = np.array([0.1, 0.35, 0.5, 0.8, 0.97])
    lo, hi = msm_bounds(torch.tensor(y), torch.tensor(pi), gamma=gamma)
    for i in range(5):
        ref_lo, ref_hi = _lp_bounds(y[i], pi[i], gamma)
        assert lo[i].item() == pytest.approx(ref_lo, abs=1e-9)
        assert hi[i].item() == pytest.approx(ref_hi, abs=1e-9)


def test_gamma_one_is_mean_and_dtype_device_follow():
    y = torch.randn(4, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lo, hi = msm_bounds(y, torch.full((4,), 0.3), gamma=1)
    torch.testing.assert_close(lo, y.mean(1))
    torch.testing.assert_close(hi, y.mean(1))
    assert lo.dtype == torch.float64 and lo.device == y.device


def test_monotone_in_gamma_and_contains_mean():
    y = torch.randn(6, 200, generator=torch.Generator().manual_seed(2))
    pi = torch.linspace(0.05, 0.95, 6)
    prev_lo, prev_hi = y.mean(1), y.mean(1)
    for g in [1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 20.0]:
        lo, hi = msm_bounds(y, pi, gamma=g)
        assert (lo <= prev_lo + 1e-6).all() and (hi >= prev_hi - 1e-6).all()
        assert (lo >= y.min(1).values - 1e-6).all() and (hi <= y.max(1).values + 1e-6).all()
        prev_lo, prev_hi = lo, hi


def test_batched_equals_unbatched_and_constant_outcome():
    y = torch.randn(5, 31, generator=torch.Generator().manual_seed(3))
    pi = torch.rand(5, generator=torch.Generator().manual_seed(4)) * 0.9 + 0.05
    lo, hi = msm_bounds(y, pi, gamma=2.5)
    for i in range(5):
        li, hi_i = msm_bounds(y[i:i + 1], pi[i:i + 1], gamma=2.5)
        torch.testing.assert_close(li[0], lo[i])
        torch.testing.assert_close(hi_i[0], hi[i])
    c = torch.full((3, 10), 4.2)
    lo, hi = msm_bounds(c, torch.full((3,), 0.4), gamma=7.0)
    torch.testing.assert_close(lo, torch.full((3,), 4.2))
    torch.testing.assert_close(hi, torch.full((3,), 4.2))


def _confounded_problem(pi_u: np.ndarray, p_u: np.ndarray, ey_u: np.ndarray, n: int = 20000):
    """A binary U-confounded unit: exact observational draws of Y | A=1 (Y in {0, 1}), truth E[Y(1)], oracle Γ*."""
    pi = float(p_u @ pi_u)
    post = p_u * pi_u / pi  # P(u | A=1)
    p1 = float(post @ ey_u)  # P(Y=1 | A=1)
    k = round(p1 * n)
    y = np.r_[np.zeros(n - k), np.ones(k)]
    truth = float(p_u @ ey_u)
    odds = (pi_u / (1 - pi_u)) / (pi / (1 - pi))
    gamma_star = float(max(odds.max(), 1 / odds.min()))
    return y, pi, truth, gamma_star


def test_contains_truth_at_oracle_gamma_and_misses_at_one():
    y, pi, truth, g_star = _confounded_problem(np.array([0.3, 0.7]), np.array([0.5, 0.5]), np.array([0.2, 0.9]))
    assert g_star == pytest.approx(7 / 3)
    yt, pt = torch.tensor(y)[None], torch.tensor([pi])
    lo, hi = msm_bounds(yt, pt, gamma=1.0)
    assert lo.item() - truth > 0.1  # confounding biases the naive estimate upward
    for g in [g_star, 1.5 * g_star, 10.0]:
        lo, hi = msm_bounds(yt, pt, gamma=g)
        assert lo.item() <= truth + 1e-4 <= hi.item() + 2e-4


@pytest.mark.parametrize("seed", range(5))
def test_contains_truth_random_discrete_confounders(seed):
    rng = np.random.default_rng(seed)
    k = 4
    p_u = rng.dirichlet(np.ones(k))
    pi_u = rng.uniform(0.1, 0.9, size=k)
    ey_u = rng.uniform(0, 1, size=k)
    y, pi, truth, g_star = _confounded_problem(pi_u, p_u, ey_u)
    lo, hi = msm_bounds(torch.tensor(y)[None], torch.tensor([pi]), gamma=g_star)
    assert lo.item() - 1e-4 <= truth <= hi.item() + 1e-4


def test_weight_range():
    lo, hi = msm_weight_range(torch.tensor([0.25, 1.0]), gamma=3.0)
    torch.testing.assert_close(lo, torch.tensor([0.25 + 0.75 / 3, 1.0]))
    torch.testing.assert_close(hi, torch.tensor([0.25 + 0.75 * 3, 1.0]))


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(gamma=0.5), ValueError, "The 'gamma' parameter of msm_bounds must be a finite float in \\[1, inf\\)"),
    (dict(gamma=float("inf")), ValueError, "'gamma'"),
    (dict(gamma=True), ValueError, "'gamma'"),
    (dict(outcomes=np.zeros((2, 3))), TypeError, "The 'outcomes' parameter of msm_bounds must be a torch.Tensor"),
    (dict(outcomes=torch.zeros(3)), ValueError, "shape \\(n_units, n_samples\\)"),
    (dict(propensity=torch.full((3,), 0.5)), ValueError, "The 'propensity' parameter of msm_bounds must be a tensor "
                                                         "of shape \\(2,\\)"),
    (dict(propensity=torch.tensor([0.0, 0.5])), ValueError, "probabilities in \\(0, 1\\]"),
])
def test_validation(kwargs, err, match):
    args = dict(outcomes=torch.zeros(2, 3), propensity=torch.full((2,), 0.5), gamma=2.0) | kwargs
    with pytest.raises(err, match=match):
        msm_bounds(args.pop("outcomes"), args.pop("propensity"), **args)


def test_discrete_equals_draws_and_linear_programme():
    from nnsens.measures.causal import msm_bounds_discrete

    # atoms 0, 1, 3 with masses 3/10, 5/10, 2/10 == ten draws
    draws = torch.tensor([[0.0] * 3 + [1.0] * 5 + [3.0] * 2], dtype=torch.float64)
    values = torch.tensor([[3.0, 0.0, 1.0]], dtype=torch.float64)  # unsorted on purpose
    probs = torch.tensor([[0.2, 0.3, 0.5]], dtype=torch.float64)
    pi = torch.tensor([0.4], dtype=torch.float64)
    for g in [1.0, 1.7, 4.0]:
        a = msm_bounds(draws, pi, gamma=g)
        b = msm_bounds_discrete(values, probs, pi, gamma=g)
        torch.testing.assert_close(a, b)
        ref = _lp_bounds(draws[0].numpy(), 0.4, g)
        assert b[0].item() == pytest.approx(ref[0], abs=1e-9) and b[1].item() == pytest.approx(ref[1], abs=1e-9)
    values.requires_grad_(True)
    lo, hi = msm_bounds_discrete(values, probs, pi, gamma=2.0)
    (g_hi,) = torch.autograd.grad(hi.sum(), values)
    assert g_hi.sum().item() == pytest.approx(1.0)  # the weighted masses sum to 1
    with pytest.raises(ValueError, match="rows summing to 1"):
        msm_bounds_discrete(values.detach(), probs * 2, pi, gamma=2.0)


@pytest.mark.parametrize("gamma, pi", [(2.0, 0.3), (4.0, 0.7)])
def test_gaussian_closed_form(gamma, pi):
    """Y | x, a ~ N(μ, σ²): the upper bound is μ + σ (w+ − w−) φ(Φ⁻¹(τ)), the lower μ − σ (w+ − w−) φ(Φ⁻¹(τ))."""
    from scipy.stats import norm

    n, mu, sigma = 20_000, 0.5, 2.0
    y = mu + sigma * norm.ppf((np.arange(n) + 0.5) / n)  # a quantile grid: the empirical law converges to N(μ, σ²)
    lo, hi = msm_bounds(torch.tensor(y)[None], torch.tensor([pi], dtype=torch.float64), gamma=gamma)
    w_lo, w_hi = pi + (1 - pi) / gamma, pi + gamma * (1 - pi)
    half = sigma * (w_hi - w_lo) * norm.pdf(norm.ppf(gamma / (1 + gamma)))
    assert hi.item() == pytest.approx(mu + half, abs=2e-3)
    assert lo.item() == pytest.approx(mu - half, abs=2e-3)
