"""P03 (LOBSTER): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import pytest

from nnsens.studies import p03_lobster as p03
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p03.run(p03.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p03.PRESETS["smoke"]
    assert len(result.runs) == cfg.n_seeds
    for r in result.runs:
        assert set(r.matched) == set(p03.MATCHED)
        for run in r.matched.values():  # matched sparsity: every comparison ends at exactly the same sparsity
            assert run.sparsity[-1] == pytest.approx(r.matched["lobster"].sparsity[-1])
            assert run.sparsity[-1] >= cfg.target - 1e-4 and len(run.sparsity) == cfg.epochs
        assert len(r.free.sparsity) == cfg.epochs and 0 <= r.free.small_fraction <= 1
        assert set(r.zero_grad) == set(cfg.zero_fractions) == set(r.zero_random)
    for claim in p03.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())


def test_presets_follow_the_catalog():
    cpu, paper = p03.PRESETS["cpu"], p03.PRESETS["paper"]
    assert cpu.epochs == 300 and cpu.n_seeds == 3 and cpu.n_random == 20 and cpu.target == 0.99
    assert paper.epochs == 2000 and paper.n_seeds == 5
    assert cpu.lmbda == 1e-4 and cpu.twt == 0.05 and cpu.pwe == 20 and cpu.lr == 0.1 and cpu.zero_fractions[0] == 0.1
    assert p03.PRESETS["smoke"] == p03.Config()


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_seeds": 0}, "The 'n_seeds' parameter of P03 must be an int in [1, 20]. Got 0 instead."),
        ({"lmbda": -1.0}, "The 'lmbda' parameter of P03"),
        ({"pwe": 50, "epochs": 20}, "The 'pwe' parameter of P03 must be smaller than epochs=20"),
        ({"plateau_rule": "x"}, "The 'plateau_rule' parameter of P03"),
        ({"target": 1.0}, "The 'target' parameter of P03"),
        ({"device": "tpu"}, "The 'device' parameter of P03"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p03.Config(**bad)
    assert msg in str(err.value)
