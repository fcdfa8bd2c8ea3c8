"""The NeuralCSA SCMs: seeding, standardisation, the oracle helpers against closed forms and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from nnsens.data.csa_scms import BinarySCM, ContinuousSCM, f_kl, kl_oracle_grid

GRID = np.linspace(-0.9, 0.9, 20)


def test_binary_sample_is_seeded_and_standardised():
    scm = BinarySCM(2.0)
    a, b, c = scm.sample(4000, seed=3), scm.sample(4000, seed=3), scm.sample(4000, seed=4)
    assert np.array_equal(a.y, b.y) and not np.array_equal(a.y, c.y)
    assert abs(a.y.mean()) < 1e-12 and abs(a.y.std() - 1) < 1e-12
    assert set(np.unique(a.a)) == {0.0, 1.0} and set(np.unique(a.u)) == {0.0, 1.0}


def test_binary_scm_is_the_msm_worst_case_at_its_gamma():
    for gamma in (1.0, 2.0, 5.0):
        assert np.allclose(BinarySCM(gamma).msm_oracle(GRID), gamma)


def test_binary_propensity_marginalises_and_matches_data():
    scm = BinarySCM(3.0)
    # P(A=1 | x) = Σ_u P(A=1 | x, u) P(u | x) must equal the nominal propensity
    pu = scm.p_u1(GRID)
    marg = scm.propensity_full(GRID, 1.0) * pu + scm.propensity_full(GRID, 0.0) * (1 - pu)
    assert np.allclose(marg, scm.propensity(GRID))
    d = scm.sample(200_000, seed=0)
    inside = np.abs(d.x - 0.5) < 0.05
    assert abs(d.a[inside].mean() - scm.propensity(0.5)) < 0.02


def test_interventional_mean_matches_monte_carlo_intervention():
    scm = BinarySCM(2.0)
    data = scm.sample(5000, seed=1)
    rng = np.random.default_rng(0)
    x = np.full(400_000, 0.3)
    u = (rng.random(x.size) < scm.p_u1(x)).astype(float)
    for arm in (0, 1):
        y = (scm.outcome_mean(x, arm, u) + rng.standard_normal(x.size) - data.y_mean) / data.y_std
        assert abs(y.mean() - scm.interventional_mean(np.array([0.3]), arm, data)[0]) < 0.01


def test_conditional_sampler_matches_the_observational_law():
    scm = BinarySCM(2.0)
    d = scm.sample(400_000, seed=2)
    for arm in (0, 1):
        sel = (np.abs(d.x - 0.2) < 0.02) & (d.a == arm)
        draws = scm.sample_conditional(np.array([0.2]), arm, 100_000, d, seed=5)
        assert abs(d.y[sel].mean() - draws.mean()) < 0.03


def test_kl_oracle_matches_the_authors_closed_form():
    scm = BinarySCM(2.0)
    g, sp, sm, pu = scm.gamma, scm.s_plus(GRID), scm.s_minus(GRID), scm.p_u1(GRID)
    f1 = f_kl(g) * sp * pu + f_kl(1 / g) * sm * (1 - pu)
    f2 = f_kl(1 / g) * sp * pu + f_kl(g) * sm * (1 - pu)
    assert np.allclose(scm.f_oracle(GRID), np.maximum(f1, f2))
    assert kl_oracle_grid(scm, GRID) == pytest.approx(0.81, abs=0.005)  # the paper's Γ* for KL on Dataset 1
    assert np.allclose(BinarySCM(1.0).f_oracle(GRID), 0.0)


@pytest.mark.parametrize("bad", [0.5, float("nan"), True, "2"])
def test_bad_gamma_is_rejected(bad):
    with pytest.raises(ValueError, match="The 'gamma' parameter of BinarySCM must be a finite float in"):
        BinarySCM(bad)


def test_continuous_scm_densities_and_oracles():
    scm = ContinuousSCM(3.0)
    for x in (-0.5, 0.7):
        total, _ = quad(lambda a, x=x: scm.density_obs(a, np.array([x]))[0], 0, 1)
        assert total == pytest.approx(1.0, abs=1e-6)
    assert np.all(scm.cmsm_oracle(GRID, 0.5) >= 1.0)
    assert np.allclose(ContinuousSCM(0.0).cmsm_oracle(GRID, 0.5), 1.0)
    assert np.allclose(ContinuousSCM(0.0).f_oracle(GRID, 0.5), 0.0)
    d = scm.sample(3000, seed=0)
    assert np.array_equal(d.y, scm.sample(3000, seed=0).y) and np.all((d.a >= 0) & (d.a <= 1))
    rng = np.random.default_rng(1)
    u = (rng.random(200_000) < 0.5).astype(float)
    y = (scm.outcome_mean(0.4, 0.5, u) + rng.standard_normal(u.size) - d.y_mean) / d.y_std
    assert abs(y.mean() - scm.interventional_mean(np.array([0.4]), 0.5, d)[0]) < 0.01
