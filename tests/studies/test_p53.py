"""P53 (GFWSVD): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import numpy as np
import pytest

from nnsens.studies import p53_fisher_weighted_svd as p53
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p53.run(p53.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p53.PRESETS["smoke"]
    shape = (len(p53.METHODS), len(cfg.ratios))
    assert len(result.runs) == cfg.n_seeds
    for r in result.runs:
        assert r.acc.shape == r.loss.shape == r.aux.predicted.shape == r.aux.actual.shape == shape
        assert set(r.ranks) == {"0"} and r.ranks["0"] == (31, 17)  # 256×40: ⌊(1 − ratio)·10240/296⌋
        assert np.all(r.aux.predicted >= 0) and -1 <= r.aux.rho <= 1
        assert r.aux.nkp_vs_exact < 1e-3 and r.aux.err_nkp < r.aux.err_kfac  # the estimator itself works
    for claim in p53.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())


def test_low_rank_ratio_and_untestable_paths(result):
    ratio = p53.low_rank_ratio(result)
    assert np.isnan(ratio) or ratio in result.ratios
    no_ten = p53.Result(result.runs, (0.2, 0.5), result.methods, result.metrics)
    assert p53._c3_ten(no_ten).verdict == "NOT TESTABLE"


def test_presets_follow_the_catalog():
    cpu = p53.PRESETS["cpu"]
    assert cpu.ratios == (0.1, 0.2, 0.3, 0.5, 0.7) and cpu.n_seeds == 3 and cpu.n_layers == 2
    assert cpu.n_calib == 512 and cpu.hidden == 256
    smoke = p53.PRESETS["smoke"]
    assert smoke == p53.Config() and len(smoke.ratios) == 2 and smoke.n_layers == 1 and smoke.n_seeds == 1


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_seeds": 0}, "The 'n_seeds' parameter of P53 must be an int in [1, 20]. Got 0 instead."),
        ({"ratios": (0.1, 1.0)}, "The 'ratios' parameter of P53"),
        ({"ratios": (0.1, 0.1)}, "The 'ratios' parameter of P53 must not repeat values"),
        ({"n_layers": 3}, "The 'n_layers' parameter of P53"),
        ({"n_calib": 2000}, "The 'n_calib' parameter of P53 must be at most n_train=1000"),
        ({"damping": -1.0}, "The 'damping' parameter of P53"),
        ({"device": "tpu"}, "The 'device' parameter of P53"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p53.Config(**bad)
    assert msg in str(err.value)
