"""OT sensitivity indices: Bures closed forms, the linear Gaussian index, the binning + EMD estimator."""

from __future__ import annotations

import numpy as np
import pytest

from nnsens.measures.global_sa import bures_wasserstein, gaussian_ot_index, ot_indices_binning, quantile_bins


def test_bures_one_dimensional_closed_form():
    # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    assert bures_wasserstein([1.0], [[4.0]], [-0.5], [[0.25]]) == pytest.approx(1.5**2 + 1.5**2)


def test_bures_commuting_covariances_and_symmetry():
    c1, c2 = np.diag([1.0, 9.0]), np.diag([4.0, 1.0])
    m1, m2 = np.array([0.0, 1.0]), np.array([2.0, 0.0])
    expected = 5.0 + (1 - 2) ** 2 + (3 - 1) ** 2
    assert bures_wasserstein(m1, c1, m2, c2) == pytest.approx(expected)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    s1, s2 = a @ a.T, b @ b.T
    assert bures_wasserstein(np.zeros(3), s1, np.zeros(3), s2) == pytest.approx(
        bures_wasserstein(np.zeros(3), s2, np.zeros(3), s1), rel=1e-8)
    assert bures_wasserstein(np.zeros(3), s1, np.zeros(3), s1) == pytest.approx(0.0, abs=1e-8)


def test_gaussian_index_limits():
    # Y = X1: fixing X1 makes Y a point mass at x, W2^2 = x^2 + 1, E = 2 = 2 Var(Y): index 1; X2 plays no part: 0
    assert np.allclose(gaussian_ot_index(np.array([[1.0, 0.0]]), np.eye(2)), [1.0, 0.0])
    # independent inputs, scalar output Y = a1 X1 + a2 X2: E W2^2 = a_i^2 + (sd_Y - sqrt(sd_Y^2 - a_i^2))^2
    a = np.array([[2.0, 1.0]])
    sd = np.sqrt(5.0)
    expected = [(a_i**2 + (sd - np.sqrt(5.0 - a_i**2)) ** 2) / 10 for a_i in (2.0, 1.0)]
    assert np.allclose(gaussian_ot_index(a, np.eye(2)), expected)


def test_binning_matches_the_gaussian_closed_form():
    a = np.array([[1.0, 0.0, 0.7], [0.0, 0.4, 0.5]])
    cov = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(3)
    x = rng.multivariate_normal(np.zeros(3), cov, size=4000)
    y = x @ a.T + 0.5 * rng.standard_normal((4000, 2))
    est = ot_indices_binning(x, y, bins=10, n_ref=400, generator=0)
    assert np.abs(est - gaussian_ot_index(a, cov, 0.25)).max() < 0.03


def test_binning_degenerate_seeded_and_scale_free():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2))
    assert np.allclose(ot_indices_binning(x, np.ones(400), bins=4), 0.0)  # constant model
    y = np.stack([x[:, 0] + 0.1 * rng.normal(size=400), x[:, 1] ** 2], axis=1)
    a = ot_indices_binning(x, y, bins=4, n_ref=100, generator=7)
    assert np.array_equal(a, ot_indices_binning(x, y, bins=4, n_ref=100, generator=7))
    assert np.allclose(ot_indices_binning(x, 3.0 * y, bins=4), ot_indices_binning(x, y, bins=4))
    assert np.all((a >= 0) & (a <= 1))


def test_quantile_bins_equal_counts():
    labels = quantile_bins(np.random.default_rng(0).normal(size=100), 4)
    assert np.array_equal(np.bincount(labels), [25, 25, 25, 25])


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"bins": 1}, "The 'bins' parameter of ot_indices_binning must be an int in [2, 50]. Got 1 instead."),
        ({"n_ref": 0}, "The 'n_ref' parameter of ot_indices_binning"),
        ({"generator": "a"}, "The 'generator' parameter of ot_indices_binning"),
    ],
)
def test_binning_rejects_bad_values(kwargs, msg):
    x = np.zeros((100, 2))
    with pytest.raises(ValueError) as err:
        ot_indices_binning(x, x[:, 0], **kwargs)
    assert msg in str(err.value)


def test_shape_errors():
    with pytest.raises(ValueError, match="must be 2-D"):
        ot_indices_binning(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="must have 10 rows"):
        ot_indices_binning(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="must have shape"):
        gaussian_ot_index(np.ones((1, 2)), np.eye(3))
