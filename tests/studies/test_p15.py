"""P15 (Quantune): the smoke preset runs, every claim returns a Verdict, presets follow the catalog, Config rejects
bad values, and the claim logic (flatness guard, ties, missing models) on hand-made results."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnsens.methods import quantune as qt
from nnsens.studies import p15_quantune as p15
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p15.run(p15.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p15.PRESETS["smoke"]
    assert [r.model for r in result.runs] == list(cfg.models)
    for r in result.runs:
        assert len(r.grid) == 24 and r.val_acc.shape == r.test_acc.shape == r.target.shape == (24,)
        assert r.layers[-1] == "head" and r.target.any()
        for s in p15.STRATEGIES:
            assert r.evals[s].shape == (cfg.n_search_seeds,) and np.all((1 <= r.evals[s]) & (r.evals[s] <= 24))
            assert np.all(r.val_acc[r.picks[s]] <= r.val_acc.max())
    for claim in p15.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert p15._c2(result).verdict == "NOT TESTABLE"  # one model only
    assert all(isinstance(v, float) for v in result.metrics.values())


def _fake_run(model, evals, target_fraction=0.02, drop=0.0):
    """A ModelRun with a 100-configuration grid, hand-set evaluations and a chosen fraction on target."""
    grid = qt.config_grid((16,), ("max", "kl", "mse", "p99.9", "p99.99"), precisions=("high", "low", "lowest",
                                                                                         "high_fp_ends", "mixed"),
                          n_layers=1)
    n = len(grid)
    target = np.arange(n) < max(1, round(target_fraction * n))
    test = np.full(n, 0.9)
    test[grid.select(calibration="max", granularity="tensor", precision="high")] = 0.9 - drop / 100
    return p15.ModelRun(model=model, grid=grid, layers=("a", "head"), fp_val=0.9, fp_test=0.9, val_acc=test.copy(),
                        test_acc=test, target=target, evals={k: np.asarray(v) for k, v in evals.items()},
                        picks={k: np.zeros(len(v), dtype=int) for k, v in evals.items()})


def test_claim_logic_on_hand_made_results():
    good = {"random": [40] * 20, "genetic": [30] * 20, "xgboost": [10] * 19 + [90]}
    res = p15.Result((_fake_run("plain", good), _fake_run("depthwise", good, drop=3.0)), 0.2, {})
    assert len(res.runs[0].grid) == 100
    assert p15._c1(res, "within").verdict == "PASS" and p15._c1(res, "within").value == 19
    assert p15._c1(res, "fewer").verdict == "PASS"  # 30 − 14 = 16 evaluations
    assert p15._c2(res).verdict == "PASS" and p15._c2(res).value == pytest.approx(3.0)
    tie = {"random": [40] * 20, "genetic": [12] * 20, "xgboost": [12] * 20}
    assert p15._c1(p15.Result((_fake_run("plain", tie),), 0.2, {}), "fewer").verdict == "FAIL"  # a tie is not lower
    flat = p15.Result((_fake_run("plain", good, target_fraction=0.06),), 0.2, {})
    v = p15._c1(flat, "within")
    assert v.verdict == "NOT TESTABLE" and "6.0 % of 100" in v.note
    mixed = p15.Result((_fake_run("plain", good, target_fraction=0.06), _fake_run("residual", tie)), 0.2, {})
    assert "flat grids left out: plain" in p15._c1(mixed, "fewer").note


def test_presets_follow_the_catalog():
    cpu = p15.PRESETS["cpu"]
    assert cpu.models == ("plain", "depthwise", "residual") and cpu.n_val == 5000 and cpu.n_search_seeds == 20
    assert len(qt.config_grid(cpu.calib_sizes, cpu.calibrations, cpu.schemes, cpu.granularities, cpu.precisions,
                              n_layers=6)) == 180
    assert cpu.high_bits == 8 and cpu.low_bits == 6 and cpu.calib_sizes == (16, 64, 256)
    smoke = p15.PRESETS["smoke"]
    assert smoke == p15.Config() and len(smoke.models) == 1
    assert len(qt.config_grid(smoke.calib_sizes, smoke.calibrations, smoke.schemes, smoke.granularities,
                              smoke.precisions)) == 24
    paper = p15.PRESETS["paper"]
    assert "mixed" in paper.precisions and "lowest" in paper.precisions and paper.lowest_bits == 4
    assert dataclasses.replace(cpu, budget_frac=0.1).budget_frac == 0.1  # the sweepable search budget


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_search_seeds": 0}, "The 'n_search_seeds' parameter of P15 must be an int in [1, 1000]. Got 0 instead."),
        ({"models": ("plain", "vgg")}, "The 'models' parameter of P15 must be one of"),
        ({"models": ("plain", "plain")}, "The 'models' parameter of P15 must not repeat values"),
        ({"calibrations": ("max", "entropy")}, "The 'calibrations' parameter of P15"),
        ({"calib_sizes": (16, 2000)}, "The 'calib_sizes' parameter of P15 must be at most n_train=1000"),
        ({"low_bits": 9}, "The 'low_bits' parameter of P15 must satisfy high_bits >= low_bits >= lowest_bits"),
        ({"budget_frac": 0.0}, "The 'budget_frac' parameter of P15"),
        ({"channels": (8, 16)}, "The 'channels' parameter of P15 must hold 3 ints"),
        ({"device": "tpu"}, "The 'device' parameter of P15"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p15.Config(**bad)
    assert msg in str(err.value)
