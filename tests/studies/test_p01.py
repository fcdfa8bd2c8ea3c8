"""P01 (causal fairness under unobserved confounding): smoke run, claims, presets, Config validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnsens.studies import p01_causal_fairness as p01
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p01.run(p01.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p01.PRESETS["smoke"]
    assert result.bounds.shape == (len(cfg.scms), len(cfg.strengths), cfg.n_seeds, len(cfg.gammas), 3, 2)
    assert np.all(result.bounds[..., 0] <= result.bounds[..., 1] + 1e-7)
    # Γ = 1 is the first grid value: a point, equal to the stored estimate
    np.testing.assert_allclose(result.bounds[:, :, :, 0, :, 0], result.point, atol=1e-6)
    np.testing.assert_allclose(result.bounds[:, :, :, 0, :, 1], result.point, atol=1e-6)
    assert result.fair_accuracy.shape == (3, cfg.n_seeds) and np.all(result.fair_accuracy > 0.5)
    for claim in p01.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())


def test_claim_helpers_on_a_synthetic_result(result):
    # two seeds, oracle inside every interval, IE estimate far from the oracle
    bounds = np.repeat(result.bounds, 2, axis=2)
    bounds[..., 0], bounds[..., 1] = -1.0, 1.0
    oracle = np.zeros(bounds.shape[:3] + (3,))
    point = oracle + np.array([0.0, 0.5, 0.0])
    point[:, :, 1] += 0.01  # a small seed spread
    res = dataclasses.replace(result, strengths=(2.0,), gammas=(5.0,), gamma_star=(3.31,), bounds=bounds[:, :, :, :1],
                              oracle=oracle, point=point)
    assert p01.coverage_cases(res).all() and p01._c1_coverage(res).verdict == "PASS"
    assert p01.miss_ratio(res, "sim9", "IE") > 2 and p01.CLAIMS[1].check(res).verdict == "PASS"
    assert p01.miss_ratio(res, "sim9", "IE", paired=True) == pytest.approx(0.505 / 0.01 * 2 ** 0.5)
    assert p01.miss_ratio(res, "sim10", "DE") == pytest.approx(0.5 ** 0.5)  # mean 0.005, SD 0.01/√2
    low = dataclasses.replace(res, gammas=(2.0,))
    assert p01._c1_coverage(low).verdict == "NOT TESTABLE"
    other = dataclasses.replace(result, lam=0.5)
    assert p01._c2_reduction(other).verdict == "NOT TESTABLE"
    absent = dataclasses.replace(result, fair_unfairness=np.full((3, 1), np.nan), fair_accuracy=np.full((3, 1), np.nan))
    assert p01._c2_reduction(absent).verdict == p01._c2_accuracy(absent).verdict == "NOT TESTABLE"


def test_presets_follow_the_catalog():
    cpu = p01.PRESETS["cpu"]
    assert cpu.n == 20_000 and cpu.gammas == (1.0, 1.5, 2.0, 3.0, 5.0) and cpu.n_seeds == 5
    assert cpu.strengths == (0.0, 1.0, 2.0) and cpu.lam == 1.0 and cpu.robust_gamma == 5.0
    smoke = p01.PRESETS["smoke"]
    assert smoke == p01.Config() and smoke.n == 2000 and smoke.gammas == (1.0, 2.0) and smoke.n_seeds == 1
    assert p01.PRESETS["paper"].n == 100_000 and p01.PRESETS["paper"].n_seeds == 10


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n": 10}, "The 'n' parameter of P01 must be an int in [200, 1000000]. Got 10 instead."),
        ({"gammas": (0.5, 2.0)}, "The 'gammas' parameter of P01"),
        ({"gammas": (2.0, 2.0)}, "The 'gammas' parameter of P01 must not repeat values"),
        ({"scms": ("sim3",)}, "The 'scms' parameter of P01"),
        ({"fair_strength": -1.0}, "The 'fair_strength' parameter of P01"),
        ({"fair_scm": "sim1"}, "The 'fair_scm' parameter of P01"),
        ({"lam": -1.0}, "The 'lam' parameter of P01"),
        ({"device": "tpu"}, "The 'device' parameter of P01"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p01.Config(**bad)
    assert msg in str(err.value)


def test_a_sweep_point_without_the_fair_dataset_runs():
    cfg = p01.Config(n=500, scms=("sim10",), strengths=(1.0,), gammas=(1.0, 2.0), epochs=1)
    res = p01.run(cfg)
    assert np.isnan(res.fair_unfairness).all() and res.bounds.shape == (1, 1, 1, 2, 3, 2)
    assert p01.CLAIMS[0].check(res).verdict in ("PASS", "FAIL")  # s = 1: Γ = 2 ≥ Γ* = 1.70 is testable
    assert p01._c2_reduction(res).verdict == "NOT TESTABLE"
