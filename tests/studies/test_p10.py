"""P10 (clipless DP-SGD): the smoke preset runs, every claim returns a Verdict, presets and Config validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnsens.studies import p10_clipless_dpsgd as p10
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p10.run(p10.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p10.PRESETS["smoke"]
    assert {r.method for r in result.runs} == {"clipless", "opacus"}
    clip = result.select(method="clipless")
    assert len(clip) == len(cfg.datasets) * cfg.n_seeds * len(result.epsilons)
    for r in clip:
        assert r.check.ratio_by_epoch.shape == (cfg.epochs, cfg.n_hidden + 1)
        assert r.check.violations == 0 and 0 < r.check.max_ratio <= 1 + p10.REL_TOL  # the bound holds
        assert r.epsilon_spent <= r.epsilon + 1e-9  # the accountant's σ keeps the run within its budget
    assert set(result.layers) == {"0.weight", "2.weight", "4.weight"}
    assert result.bounds["0.weight"] == pytest.approx(np.sqrt(2) / cfg.tau * cfg.input_bound)
    for claim in p10.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())
    assert result.epoch_seconds == {} and p10.CLAIMS[3].check(result).verdict == "NOT TESTABLE"  # smoke: no timing


def test_timing_interleaves_both_routes():
    cfg = p10.Config(epochs=1, timing_epochs=2)
    raw = tuple(t[:512] for t in p10.load("digits", 0, torch.device("cpu")))  # q = 128/512 for both: one σ search
    data = (p10.project_inputs(raw[0], cfg.input_bound), *raw[1:])
    wall, cpu = p10._timing(cfg, data, raw, torch.device("cpu"))
    for t in (wall, cpu):
        assert set(t) == {"clipless", "opacus"} and all(len(v) == 2 and min(v) >= 0 for v in t.values())


def test_baseline_epsilon_is_added_to_the_grid():
    cfg = p10.Config(epsilons=(1.0,), baseline_epsilon=4.0)
    assert tuple(sorted(set(cfg.epsilons) | {cfg.baseline_epsilon})) == (1.0, 4.0)


def test_load_standardises_on_the_training_split():
    xtr, ytr, xte, yte = p10.load("breast_cancer", 0, torch.device("cpu"))
    assert xtr.shape[1] == 30 and xtr.shape[0] + xte.shape[0] == 569 and set(ytr.tolist()) == {0, 1}
    assert torch.allclose(xtr.mean(0), torch.zeros(30), atol=1e-5)
    assert p10.load("digits", 0, torch.device("cpu"))[0].shape[1] == 64


def test_presets_follow_the_catalog():
    cpu = p10.PRESETS["cpu"]
    assert cpu.datasets == ("digits", "breast_cancer") and cpu.epsilons == (0.5, 1.0, 2.0, 4.0, 8.0)
    assert cpu.n_seeds == 3 and cpu.epochs == 30 and cpu.baseline_epsilon == 4.0 and cpu.timing_epochs == 5
    smoke = p10.PRESETS["smoke"]
    assert smoke == p10.Config() and smoke.datasets == ("digits",) and smoke.epochs == 5 and smoke.epsilons == (4.0,)
    assert smoke.timing_epochs == 0


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"hidden": 63}, "The 'hidden' parameter of P10 must be even"),
        ({"datasets": ("mnist",)}, "The 'datasets' parameter of P10 must be one of 'digits', 'breast_cancer'"),
        ({"datasets": ("digits", "digits")}, "The 'datasets' parameter of P10 must not repeat values"),
        ({"epsilons": (0.0,)}, "The 'epsilons' parameter of P10"),
        ({"tau": 0.0}, "The 'tau' parameter of P10 must be a float in [0.001, 100.0]. Got 0.0 instead."),
        ({"input_bound": -1.0}, "The 'input_bound' parameter of P10"),
        ({"projection": "qr"}, "The 'projection' parameter of P10"),
        ({"batch_size": 1000}, "The 'batch_size' parameter of P10"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p10.Config(**bad)
    assert msg in str(err.value)
