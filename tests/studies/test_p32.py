"""P32 (pruning survey): the smoke preset runs, every claim returns a Verdict, the comparisons are at matched
sparsity / weight count, presets follow the catalog, Config rejects bad values. (OBS and neuron merging are tested
in tests/test_obs.py and tests/test_neuron_merging.py.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnsens.studies import p32_pruning_survey as p32
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p32.run(p32.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p32.PRESETS["smoke"]
    assert len(result.runs) == cfg.n_seeds and result.n_weights == 64 * 300 + 300 * 100 + 100 * 10
    r = result.runs[0]
    assert r.grad_norm < 1e-4 < r.grad_trained  # the refit reached the minimum OBS assumes
    assert r.predicted.shape == r.actual.shape == (cfg.n_obs_weights,) and np.all(r.predicted > 0)
    for (m, s), k in r.kept.items():
        assert m in cfg.methods and s in cfg.sparsities
        budget = round((1 - s) * result.n_weights)
        if m == "merge":  # the merged network has at most the budget, and close to it
            assert 0.97 * budget <= k <= budget
        else:  # unstructured masks: exactly the budget (a surviving weight may be exactly 0 only by accident)
            assert k <= budget and k >= budget - 5
    assert set(r.kmeans) == set(cfg.kmeans_bits) and set(r.last_obs) == set(cfg.sparsities)
    for claim in p32.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())


def test_claims_need_their_grid(result):
    by_name = {c.name: c for c in p32.CLAIMS}
    assert by_name["c3_methods_comparable"].check(result).verdict == "NOT TESTABLE"  # smoke runs 3 methods
    assert by_name["c2b_obd_vs_magnitude"].check(result).verdict in ("PASS", "FAIL")
    other = dataclasses.replace(result, sparsities=(0.5,))
    assert by_name["c2a_obs_vs_magnitude"].check(other).verdict == "NOT TESTABLE"


def test_presets_follow_the_catalog():
    smoke, cpu, paper = p32.PRESETS["smoke"], p32.PRESETS["cpu"], p32.PRESETS["paper"]
    assert smoke == p32.Config() and len(smoke.methods) == 3 and len(smoke.sparsities) == 2
    assert cpu.methods == p32.METHODS and len(cpu.methods) == 6 and cpu.n_seeds == 3
    assert cpu.sparsities == (0.5, 0.7, 0.8, 0.9, 0.95, 0.98) and cpu.finetune_epochs == 3
    assert cpu.n_obs_weights == 200 and cpu.weight_decay == smoke.weight_decay == paper.weight_decay
    assert paper.n_seeds == 5


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_seeds": 0}, "The 'n_seeds' parameter of P32 must be an int in [1, 20]. Got 0 instead."),
        ({"sparsities": (0.5, 0.5)}, "The 'sparsities' parameter of P32 must not repeat values"),
        ({"sparsities": (1.0,)}, "The 'sparsities' parameter of P32"),
        ({"methods": ("obs",)}, "The 'methods' parameter of P32 must be one of"),
        ({"kmeans_bits": (0,)}, "The 'kmeans_bits' parameter of P32"),
        ({"weight_decay": 0.0}, "The 'weight_decay' parameter of P32"),
        ({"device": "tpu"}, "The 'device' parameter of P32"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p32.Config(**bad)
    assert msg in str(err.value)
