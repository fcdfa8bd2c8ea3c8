"""P04 (NeuralCSA): the smoke preset runs, every claim returns a Verdict, presets follow the catalog."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnsens.studies import p04_neural_csa as p04
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p04.run(p04.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p04.PRESETS["smoke"]
    assert result.settings == (("msm", 2.0), ("msm", 2.5))  # the Γ grid, then 1.25 × Γ*
    for s in result.settings:
        assert result.lower[s].shape == result.upper[s].shape == (cfg.n_runs, cfg.n_grid, 2)
        assert np.all(result.lower[s] < result.upper[s])
    assert result.gamma_star == pytest.approx(2.0) and result.eta_star == pytest.approx(0.81, abs=0.005)
    for claim in p04.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    by_name = {c.name: c.check(result) for c in p04.CLAIMS}
    assert by_name["c2_coverage_kl"].verdict == "NOT TESTABLE" and by_name["c3_msm_shorter"].verdict == "NOT TESTABLE"
    assert all(isinstance(v, float) for v in result.metrics.values())
    assert {"gap_msm_G2", "coverage_msm_x125", "signed_dist_mean_msm"} <= set(result.metrics)


def test_closed_form_reference_widens_with_gamma(result):
    lo2, hi2 = result.ref_lower[2.0], result.ref_upper[2.0]
    lo25, hi25 = result.ref_lower[2.5], result.ref_upper[2.5]
    assert np.all(lo25 <= lo2 + 1e-9) and np.all(hi2 <= hi25 + 1e-9)


def test_derived_numbers_on_a_hand_made_result(result):
    s = ("msm", 2.0)
    cate = np.array([[0.0, 1.0, 2.0]])
    lower = np.stack([np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])])  # (runs, grid, arms)
    upper = np.stack([np.array([[0.5, 0.5], [0.5, 1.5], [0.5, 1.0]])])
    fake = dataclasses.replace(result, x_grid=np.arange(3.0), cate=cate, lower={s: lower}, upper={s: upper})
    lo, hi = fake.cate_bounds(s)  # [l1 − u0, u1 − l0] = [−0.5, 0.5], [−0.5, 1.5], [−0.5, 1.0]
    assert np.allclose(lo, -0.5) and np.allclose(hi, [[0.5, 1.5, 1.0]])
    assert p04.coverage(fake, s) == pytest.approx(2 / 3)
    assert np.allclose(p04.signed_distance(fake, s), [[0.5, 0.5, -1.0]])
    assert p04.mean_length(fake, s) == pytest.approx(np.mean([1.0, 2.0, 1.5]))


def test_settings_and_presets_follow_the_catalog():
    cpu, smoke = p04.PRESETS["cpu"], p04.PRESETS["smoke"]
    assert cpu.n == 10_000 and cpu.gammas == (2.0, 4.0, 10.0) and cpu.models == ("msm", "kl")
    assert cpu.n_grid == 20 and cpu.n_runs == 1 and cpu.scm_gamma == 2.0
    assert smoke == p04.Config() and smoke.n == 2000 and smoke.n_grid == 10
    assert smoke.models == ("msm",) and smoke.gammas == (2.0,)
    assert smoke.stage2_steps == 300 and p04.PRESETS["paper"].n_runs == 5
    got = p04.settings_of(cpu, 2.0, 0.8)
    assert got == (("msm", 2.0), ("msm", 4.0), ("msm", 10.0), ("msm", 2.5), ("kl", 0.8), ("kl", 1.0))


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"gammas": (0.5,)}, "The 'gammas' parameter of P04 must be a non-empty comma-separated list of floats in"),
        ({"gammas": (2.0, 2.0)}, "The 'gammas' parameter of P04 must not repeat values"),
        ({"models": ("tv",)}, "The 'models' parameter of P04 must be one of 'msm', 'kl'"),
        ({"models": ("kl",)}, "The 'models' parameter of P04 must include 'msm'"),
        ({"n": 10}, "The 'n' parameter of P04 must be an int in [500, 1000000]. Got 10 instead."),
        ({"stage2_lr": 0.0}, "The 'stage2_lr' parameter of P04"),
        ({"device": "tpu"}, "The 'device' parameter of P04"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p04.Config(**bad)
    assert msg in str(err.value)
