"""P39 (HAWQ-V2): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import numpy as np
import pytest

from nnsens.studies import p39_hawq_v2 as p39
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p39.run(p39.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p39.PRESETS["smoke"]
    assert len(result.runs) == 2 * cfg.n_seeds
    n_cfg = len(cfg.bits) ** 4
    for r in result.runs:
        assert r.configs.shape == (n_cfg, 4) and r.loss_increase.shape == r.test_acc.shape == (n_cfg,)
        assert np.all(r.trace_se > 0) and np.all(np.isfinite(r.trace)) and np.all(np.isfinite(r.eig))
        assert -1 <= r.rho_trace <= 1 and set(r.picks) == {"trace", "eig", "uniform", "reversed"}
    cnn = result.of("cnn")[0]
    assert set(cnn.exact) == {"conv1.weight", "fc2.weight"}  # the two layers with <= 1k weights
    assert result.of("mlp")[0].exact == {}
    for claim in p39.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())


def test_ranking_reports_ties(result):
    order, ties = p39.ranking(result.of("cnn")[0])
    assert sorted(order) == sorted(result.of("cnn")[0].layers)
    assert all(a in order and b in order for a, b in ties)


def test_presets_follow_the_catalog():
    cpu = p39.PRESETS["cpu"]
    assert cpu.bits == (2, 3, 4, 8) and len(cpu.bits) ** 4 == 256
    assert cpu.n_probes == 200 and cpu.n_seeds == 3 and cpu.budgets == (3.0, 4.0, 5.0)
    assert len(p39.PRESETS["smoke"].bits) ** 4 == 16 and p39.PRESETS["smoke"].n_probes == 32
    assert p39.PRESETS["smoke"] == p39.Config()


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_seeds": 0}, "The 'n_seeds' parameter of P39 must be an int in [1, 20]. Got 0 instead."),
        ({"bits": (1, 4)}, "The 'bits' parameter of P39"),
        ({"bits": (4, 4)}, "The 'bits' parameter of P39 must not repeat values"),
        ({"n_probes": 1}, "The 'n_probes' parameter of P39"),
        ({"exact_seeds": 2}, "The 'exact_seeds' parameter of P39 must be in [0, n_seeds=1]"),
        ({"power_tol": 0.0}, "The 'power_tol' parameter of P39"),
        ({"device": "tpu"}, "The 'device' parameter of P39"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p39.Config(**bad)
    assert msg in str(err.value)
