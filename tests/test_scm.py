"""The confounded Standard Fairness Model (P01) and the effect bounds built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnsens.data.scm import EFFECTS, FairSCM
from nnsens.methods.fair_sensitivity import Nuisances, effect_bounds, fit_nuisances, worst_case_unfairness


def _population_nuisances(scm: FairSCM) -> Nuisances:
    """The exact observational P(Z), P(A=1|Z), P(M=1|A,Z), P(Z|A) of the SCM (U marginalised)."""
    pi = scm.propensity()
    p_m = np.zeros((2, 2))
    for a in (0, 1):
        for z in (0, 1):
            pa_u = np.array([scm.p_a(z, u) if a else 1 - scm.p_a(z, u) for u in (0, 1)])
            p_m[a, z] = (pa_u * np.array([scm.p_m(a, z, u) for u in (0, 1)])).sum() / pa_u.sum()
    p_az = np.stack([0.5 * (1 - pi), 0.5 * pi])  # (a, z) joint
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return Nuisances(t(np.full(2, 0.5)), t(pi), t(p_m), t(p_az / p_az.sum(1, keepdims=True)))


def test_oracle_gamma_matches_the_catalog():
    assert FairSCM("sim9", 0.0).oracle_gamma() == pytest.approx(1.0)
    assert FairSCM("sim9", 1.0).oracle_gamma() == pytest.approx(1.70, abs=0.005)
    assert FairSCM("sim10", 2.0).oracle_gamma() == pytest.approx(3.31, abs=0.005)


@pytest.mark.parametrize("kind", ["sim9", "sim10"])
def test_exact_effects_equal_monte_carlo_interventions(kind):
    g = np.random.default_rng(0).random((2, 2, 2))
    scm = FairSCM(kind, 2.0)
    exact, mc = scm.effects(g), scm.mc_effects(g, 200_000, np.random.default_rng(1))
    for e in EFFECTS + ("TV",):
        assert mc[e] == pytest.approx(exact[e], abs=0.01)
    assert exact["TV"] == pytest.approx(exact["DE"] + exact["IE"] + exact["SE"])


def test_sampling_is_seeded_and_marginals_match():
    scm = FairSCM("sim9", 1.0)
    a, b = scm.sample(5000, np.random.default_rng(3)), scm.sample(5000, np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    d = scm.sample(100_000, np.random.default_rng(4))
    assert d["A"][d["Z"] == 1].mean() == pytest.approx(scm.propensity()[1], abs=0.01)


@pytest.mark.parametrize("kind", ["sim9", "sim10"])
@pytest.mark.parametrize("strength", [1.0, 2.0])
def test_bounds_contain_the_oracle_at_gamma_star_with_true_nuisances(kind, strength):
    scm = FairSCM(kind, strength)
    nu = _population_nuisances(scm)
    g_star = scm.oracle_gamma()
    for seed in range(5):
        g = torch.tensor(np.random.default_rng(seed).random((2, 2, 2)))
        truth = scm.effects(g.numpy())
        for gamma in (g_star, 2 * g_star):
            b = effect_bounds(g, nu, gamma=gamma)
            for e in EFFECTS:
                assert b[e][0].item() - 1e-9 <= truth[e] <= b[e][1].item() + 1e-9


def test_point_identified_cases_at_gamma_one():
    g = torch.tensor(np.random.default_rng(7).random((2, 2, 2)))
    # no confounding of the mediator (sim10, or s = 0): the Γ = 1 estimate is the oracle
    for scm in (FairSCM("sim10", 2.0), FairSCM("sim9", 0.0)):
        b = effect_bounds(g, _population_nuisances(scm), gamma=1.0)
        truth = scm.effects(g.numpy())
        for e in EFFECTS:
            assert b[e][0].item() == pytest.approx(truth[e]) and b[e][1].item() == pytest.approx(truth[e])
    # U confounds A and M at s = 2: the naive IE is biased
    scm = FairSCM("sim9", 2.0)
    g = torch.zeros(2, 2, 2, dtype=torch.float64)
    g[:, :, 1] = 1.0  # Ŷ = M
    b = effect_bounds(g, _population_nuisances(scm), gamma=1.0)
    assert abs(b["IE"][0].item() - scm.effects(g.numpy())["IE"]) > 0.02


def test_bounds_widen_with_gamma_and_penalty_is_differentiable():
    scm = FairSCM("sim9", 1.0)
    nu = _population_nuisances(scm)
    g = torch.tensor(np.random.default_rng(8).random((2, 2, 2)), requires_grad=True)
    prev = None
    for gamma in (1.0, 1.5, 3.0, 10.0):
        b = effect_bounds(g, nu, gamma=gamma)
        widths = np.array([(hi - lo).item() for lo, hi in b.values()])
        assert (widths >= -1e-12).all()
        if prev is not None:
            assert (widths >= prev - 1e-12).all()
        prev = widths
    pen = worst_case_unfairness(g, nu, gamma=2.0)
    (grad,) = torch.autograd.grad(pen, g)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # a score that ignores A has no effects at any Γ... except what the bounds allow: DE is exactly zero
    flat = torch.rand(1, 2, 2, dtype=torch.float64).expand(2, 2, 2)
    b = effect_bounds(flat, nu, gamma=1.0)
    assert b["DE"][0].item() == pytest.approx(0.0, abs=1e-12)


def test_fit_nuisances_and_validation():
    d = FairSCM("sim9", 1.0).sample(50_000, np.random.default_rng(5))
    nu = fit_nuisances(d["Z"], d["A"], d["M"])
    ref = _population_nuisances(FairSCM("sim9", 1.0))
    assert (nu.pi.double() - ref.pi).abs().max() < 0.01
    assert (nu.p_m.double() - ref.p_m).abs().max() < 0.02
    with pytest.raises(ValueError, match="every \\(A, Z\\) cell"):
        fit_nuisances(np.zeros(4), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="The 'kind' parameter of FairSCM"):
        FairSCM("sim3", 1.0)
    with pytest.raises(ValueError, match="The 'strength' parameter of FairSCM"):
        FairSCM("sim9", -1.0)
    with pytest.raises(ValueError, match="The 'g' parameter of effect_bounds"):
        effect_bounds(torch.zeros(8), nu, gamma=2.0)
