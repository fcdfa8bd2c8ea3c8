"""P11 (neural conditional transport maps): smoke run, verdicts, presets, Config validation, helpers."""

from __future__ import annotations

import numpy as np
import pytest

from nnsens.studies import p11_ot_sensitivity as p11
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p11.run(p11.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p11.PRESETS["smoke"]
    assert result.gauss_neural.shape == result.gauss_binning.shape == (cfg.n_seeds, p11.N_INPUTS)
    assert result.nl_ref is None and result.nl_hyper is None
    for claim in p11.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert p11._c2_hyper_vs_concat(result).verdict == "NOT TESTABLE"
    assert all(isinstance(v, float) for v in result.metrics.values())
    assert np.all(result.gauss_neural > 0) and np.all(result.gauss_binning > 0)


def test_gaussian_design_meets_the_catalog_precondition():
    iota = p11.gaussian_ot_index(p11.A_GAUSS, p11.gaussian_cov(0.5), p11.NOISE_VAR)
    assert np.diff(np.sort(iota)).min() >= p11.MIN_GAP


def test_ishigami_outputs_and_untestable_paths(result):
    x = np.zeros((1, 4))
    x[0, 0] = np.pi / 2
    assert np.allclose(p11.ishigami2(x), [[1.0, 0.0]])
    swapped = p11.Result(result.iota_true, result.gauss_neural[:, ::-1], result.gauss_binning, None, None, None,
                         {}, result.metrics)
    assert not p11.ranking_exact(swapped)
    flat = dict(result.metrics, min_gap=0.01)
    tied = p11.Result(result.iota_true, result.gauss_neural, result.gauss_binning, None, None, None, {}, flat)
    assert p11._c1_gaussian(tied).verdict == "NOT TESTABLE"


def test_presets_follow_the_catalog():
    cpu, smoke, paper = p11.PRESETS["cpu"], p11.PRESETS["smoke"], p11.PRESETS["paper"]
    assert smoke == p11.Config() and smoke.n == 2000 and smoke.cases == "gaussian" and smoke.steps == 300
    assert cpu.cases == "both" and cpu.n_seeds == 3
    assert paper.n == 200_000 and paper.n_seeds >= 3


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n": 10}, "The 'n' parameter of P11 must be an int in [200, 1000000]. Got 10 instead."),
        ({"bins": 1}, "The 'bins' parameter of P11"),
        ({"bins": 150, "n": 1000}, "The 'bins' parameter of P11 must be at most n // 10 = 100"),
        ({"cases": "ode"}, "The 'cases' parameter of P11 must be one of 'gaussian', 'both'"),
        ({"rho": 1.0}, "The 'rho' parameter of P11"),
        ({"lam": -1.0}, "The 'lam' parameter of P11"),
        ({"device": "tpu"}, "The 'device' parameter of P11"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p11.Config(**bad)
    assert msg in str(err.value)
