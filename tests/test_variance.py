"""Tests of nnsens.measures.variance (P21): closed forms, simulation under the independent-errors model, churn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nnsens.measures import (
    bootstrap_variance_ratio,
    churn,
    empirical_variance,
    independent_errors_variance,
    mean_pairwise_churn,
    split_half_correlation,
)


def test_independent_errors_variance_hand_computed():
    # R = 2 runs, n = 2 examples: p = (0.5, 0); sum p(1-p) = 0.25; / n^2 = 0.0625; * R/(R-1) = 2 -> 0.125
    errors = np.array([[1, 0], [0, 0]])
    assert independent_errors_variance(errors) == pytest.approx(0.125)
    # R = 4, n = 3: p = (0.25, 0.5, 1); sum p(1-p) = 0.1875 + 0.25 + 0 = 0.4375; / 9 * 4/3
    errors = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 1]], dtype=bool)
    assert independent_errors_variance(errors) == pytest.approx(0.4375 / 9 * 4 / 3)


def test_independent_errors_variance_accepts_torch_and_bool():
    e = np.random.default_rng(0).random((5, 7)) < 0.3
    assert independent_errors_variance(torch.from_numpy(e)) == pytest.approx(independent_errors_variance(e))
    assert independent_errors_variance(e.astype(np.float32)) == pytest.approx(independent_errors_variance(e))


def test_degenerate_identical_runs_have_zero_variance():
    e = np.tile(np.array([1, 0, 1, 0, 0]), (6, 1))
    assert independent_errors_variance(e) == 0.0
    assert empirical_variance(1 - e.mean(axis=1)) == 0.0
    assert mean_pairwise_churn(np.tile(np.arange(5), (6, 1))) == 0.0


def test_prediction_unbiased_under_independent_bernoulli_errors():
    """With errors ~ Bernoulli(q_i) independently, E[Var_pred] = sum q(1-q)/n^2 = Var(accuracy) exactly."""
    rng = np.random.default_rng(1)
    n, r, reps = 200, 8, 400
    q = rng.uniform(0.0, 0.6, size=n)
    truth = (q * (1 - q)).sum() / n**2
    preds, emps = [], []
    for _ in range(reps):
        e = rng.random((r, n)) < q
        preds.append(independent_errors_variance(e))
        emps.append(empirical_variance(1 - e.mean(axis=1)))
    # Var_pred averages to the truth within 2 % (its Monte Carlo error is well under 1 %)
    assert np.mean(preds) == pytest.approx(truth, rel=0.02)
    # the empirical variance (ddof 1) is unbiased too, but noisier: 10 % is > 3 Monte Carlo standard errors
    assert np.mean(emps) == pytest.approx(truth, rel=0.10)
    # without the R/(R-1) factor the plug-in estimate would be biased low by (R-1)/R = 12.5 %
    assert np.mean(preds) * (r - 1) / r < truth * 0.9


def test_empirical_variance_ddof1():
    assert empirical_variance([0.5, 0.7]) == pytest.approx(0.02)
    assert empirical_variance(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(np.var([1, 2, 3, 4], ddof=1))


def test_churn_symmetric_and_zero_for_identical():
    a = np.array([0, 1, 2, 3, 4, 5])
    b = np.array([0, 1, 9, 3, 9, 9])
    assert churn(a, b) == churn(b, a) == pytest.approx(0.5)
    assert churn(a, a) == 0.0
    assert churn(torch.tensor(a), torch.tensor(b)) == pytest.approx(0.5)


def test_mean_pairwise_churn_equals_loop_over_pairs():
    preds = np.random.default_rng(2).integers(0, 4, size=(7, 50))
    loop = np.mean([churn(preds[i], preds[j]) for i, j in itertools.combinations(range(7), 2)])
    assert mean_pairwise_churn(preds) == pytest.approx(loop)


def test_split_half_correlation_closed_cases():
    # without a generator, A = the first half of the columns and B = the second half
    correct = np.array([[1] * 10, [0] * 10, [1] * 10, [0] * 10] + [[1] * 5 + [0] * 5])
    s = split_half_correlation(correct)  # first half = columns 0..4, second = 5..9
    assert s.acc_a.tolist() == [1, 0, 1, 0, 1] and s.acc_b.tolist() == [1, 0, 1, 0, 0]
    assert s.r == pytest.approx(np.corrcoef(s.acc_a, s.acc_b)[0, 1])
    # independent errors: r near 0
    rng = np.random.default_rng(3)
    s = split_half_correlation(rng.random((400, 2000)) < 0.3, generator=rng)
    assert abs(s.r) < 0.15
    # a constant half gives NaN, not a crash
    assert np.isnan(split_half_correlation(np.ones((4, 6))).r)


def test_split_half_seeding():
    e = np.random.default_rng(4).random((6, 40)) < 0.4
    assert split_half_correlation(e, generator=5).r == split_half_correlation(e, generator=5).r


def test_bootstrap_ratio_values_and_seeding():
    rng = np.random.default_rng(5)
    e = rng.random((30, 500)) < 0.3
    v = bootstrap_variance_ratio(e, n_boot=300, generator=6)
    assert v.ratio == pytest.approx(empirical_variance(1 - e.mean(axis=1)) / independent_errors_variance(e))
    assert v.ci_low <= v.ratio <= v.ci_high and v.level == 0.9 and v.n_boot == 300
    assert bootstrap_variance_ratio(e, n_boot=300, generator=6) == v
    assert bootstrap_variance_ratio(e, n_boot=300, generator=np.random.default_rng(6)) == v


def test_bootstrap_ratio_matches_explicit_resampling():
    """The matrix-product bootstrap equals recomputing both variances on explicitly resampled rows."""
    rng = np.random.default_rng(7)
    e = rng.random((9, 60)) < 0.4
    v = bootstrap_variance_ratio(e, n_boot=50, level=0.5, generator=8)
    draws = np.random.default_rng(8).integers(0, 9, size=(50, 9))
    ratios = [empirical_variance(1 - e[d].mean(axis=1)) / independent_errors_variance(e[d]) for d in draws]
    lo, hi = np.nanquantile(ratios, [0.25, 0.75])
    assert (v.ci_low, v.ci_high) == pytest.approx((lo, hi))


def test_bootstrap_ratio_near_one_under_independent_errors():
    rng = np.random.default_rng(9)
    q = rng.uniform(0, 0.5, size=3000)
    v = bootstrap_variance_ratio(rng.random((200, 3000)) < q, n_boot=200, generator=rng)
    assert 0.75 < v.ratio < 1.33 and v.ci_low < 1.0 < v.ci_high


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: independent_errors_variance(np.zeros(5)), "'errors' parameter of independent_errors_variance"),
        (lambda: independent_errors_variance(np.zeros((1, 5))), "at least 2 runs"),
        (lambda: independent_errors_variance(np.full((2, 3), 0.5)), "only 0/1"),
        (lambda: empirical_variance([0.5]), "'accuracies' parameter of empirical_variance"),
        (lambda: churn([1, 2], [1, 2, 3]), "'pred_b' parameter of churn"),
        (lambda: mean_pairwise_churn(np.zeros((1, 3))), "'preds' parameter of mean_pairwise_churn"),
        (lambda: bootstrap_variance_ratio(np.zeros((3, 3)), n_boot=0), "'n_boot' parameter of bootstrap"),
        (lambda: bootstrap_variance_ratio(np.zeros((3, 3)), level=1.0), "'level' parameter of bootstrap"),
    ],
)
def test_bad_arguments_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_arguments_type_error():
    with pytest.raises(TypeError, match="'generator' parameter of bootstrap_variance_ratio"):
        bootstrap_variance_ratio(np.zeros((3, 3)), generator="seed")
    with pytest.raises(TypeError, match="'generator' parameter of split_half_correlation"):
        split_half_correlation(np.zeros((3, 4)), generator=1.5)
    with pytest.raises(TypeError, match="'errors' parameter"):
        independent_errors_variance(np.array([[object(), 1]], dtype=object))
