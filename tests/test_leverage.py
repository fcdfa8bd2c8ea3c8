"""Online sensitivity (ridge-leverage) sampling: against direct numpy inverses and scipy.linalg.eigh."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from nnsens.measures.leverage import (
    OnlineSensitivitySampler,
    online_sensitivity_sampling,
    ridge_leverage,
    sherman_morrison,
    spectral_bounds,
)


def _unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_sherman_morrison_matches_direct_inverse():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((6, 6))
    a = m @ m.T + np.eye(6)
    v = rng.standard_normal(6)
    got = sherman_morrison(np.linalg.inv(a), v, weight=2.5)
    np.testing.assert_allclose(got, np.linalg.inv(a + 2.5 * np.outer(v, v)), rtol=1e-10, atol=1e-12)


def test_ridge_leverage_is_the_clipped_quadratic_form():
    phi = _unit_rows(20, 5) * 3.0  # norms 3: some scores clip at 1
    g = np.linalg.inv(np.diag(np.arange(1.0, 6.0)) * 4)
    direct = np.minimum(1.0, np.einsum("ni,ij,nj->n", phi, g, phi))
    np.testing.assert_allclose(ridge_leverage(phi, g), direct)
    assert np.all(ridge_leverage(phi, g) <= 1.0) and np.any(ridge_leverage(phi, g) == 1.0)
    np.testing.assert_allclose([ridge_leverage(p, g) for p in phi], direct)  # batched = one by one


def test_sampler_state_matches_direct_inverse_and_logdet():
    phi = _unit_rows(400, 8, seed=2)
    s = OnlineSensitivitySampler(8, ridge=0.5, oversampling=3.0, generator=0)
    for row in phi:
        s.offer(row)
    full = s.gram + 0.5 * np.eye(8)
    np.testing.assert_allclose(s.inv, np.linalg.inv(full), rtol=1e-8, atol=1e-10)
    assert s.logdet == pytest.approx(np.linalg.slogdet(full)[1], rel=1e-9)
    np.testing.assert_allclose(s.bonus(phi[:5]), np.sqrt(np.einsum("ni,ij,nj->n", phi[:5], s.inv, phi[:5])))
    assert 0 < s.n_kept < s.n_seen == 400


def test_huge_oversampling_keeps_everything_with_unit_weights():
    phi = _unit_rows(50, 4, seed=3)
    core = online_sensitivity_sampling(phi, ridge=1.0, oversampling=1e9, generator=0)
    assert core.fraction == 1.0 and np.all(core.weights == 1.0)
    np.testing.assert_allclose(core.gram, phi.T @ phi, atol=1e-12)
    assert spectral_bounds(core.gram, phi.T @ phi) == pytest.approx((1.0, 1.0))


def test_reweighted_core_is_a_spectral_approximation():
    phi = _unit_rows(5000, 8, seed=4)
    core = online_sensitivity_sampling(phi, ridge=1.0, oversampling=12.0, generator=5)
    approx = (phi[core.indices] * core.weights[:, None]).T @ phi[core.indices]
    np.testing.assert_allclose(core.gram, approx, atol=1e-9)
    lo, hi = spectral_bounds(core.gram, phi.T @ phi)
    assert 0.5 <= lo <= 1.0 <= hi <= 1.5 and core.fraction < 0.5


def test_seeding_and_degenerate_inputs():
    phi = _unit_rows(300, 6, seed=6)
    a = online_sensitivity_sampling(phi, generator=7)
    b = online_sensitivity_sampling(phi, generator=np.random.default_rng(7))
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.weights, b.weights)
    zero = online_sensitivity_sampling(np.zeros((10, 3)), generator=0)  # zero features: no sensitivity
    assert len(zero.indices) == 0 and np.all(zero.scores == 0)


def test_spectral_bounds_against_scipy_and_closed_form():
    rng = np.random.default_rng(8)
    m = rng.standard_normal((5, 5))
    r = m @ m.T + np.eye(5)
    a = r @ np.diag([0.5, 1, 1, 1, 2.0]) @ r / 3 + np.eye(5)
    ref = scipy.linalg.eigh(a, r, eigvals_only=True)
    assert spectral_bounds(a, r) == pytest.approx((ref[0], ref[-1]))
    assert spectral_bounds(3 * r, r) == pytest.approx((3.0, 3.0))
    assert spectral_bounds(np.diag([1.0, 4.0]), np.diag([2.0, 2.0]), ridge=2.0) == pytest.approx((0.75, 1.5))


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: OnlineSensitivitySampler(0), "The 'dim' parameter of OnlineSensitivitySampler must be an int"),
        (lambda: OnlineSensitivitySampler(3, ridge=0.0), "The 'ridge' parameter of OnlineSensitivitySampler"),
        (lambda: OnlineSensitivitySampler(3, oversampling=-1), "The 'oversampling' parameter"),
        (lambda: sherman_morrison(np.eye(2), np.ones(2), weight=0), "The 'weight' parameter of sherman_morrison"),
        (lambda: ridge_leverage(np.ones(3), np.eye(2)), "The 'features' parameter of ridge_leverage"),
        (lambda: spectral_bounds(np.eye(2), np.eye(3)), "must be square of the same shape"),
        (lambda: spectral_bounds(np.eye(2), np.zeros((2, 2))), "must be positive definite"),
        (lambda: online_sensitivity_sampling(np.ones(3)), "The 'features' parameter of online_sensitivity"),
    ],
)
def test_validation_messages(call, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
        call()


def test_generator_type_is_checked():
    with pytest.raises(TypeError, match="The 'generator' parameter of OnlineSensitivitySampler"):
        OnlineSensitivitySampler(3, generator="seed")
