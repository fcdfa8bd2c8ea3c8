"""P46 (Sobol attribution): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnsens.studies import p46_sobol_attribution as p46
from nnsens.study import FAIL, PASS, UNTESTABLE, Verdict

TINY = p46.Config(n_designs=4, sweep_designs=(2,), n_or=2, n_single=2, n_digits=2, n_sweep=1, n_train=100,
                  epochs=1, channels=(4, 4), n_distractors=2)


@pytest.fixture(scope="module")
def smoke():
    return p46.run(p46.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(smoke):
    cfg = p46.PRESETS["smoke"]
    for claim in p46.CLAIMS:
        assert isinstance(claim.check(smoke), Verdict)
    assert all(np.isfinite(v) for v in smoke.metrics.values())
    assert smoke.manipulation.shape == (cfg.n_or, 3)
    assert set(smoke.deletion) == {"single", "digits"} and set(smoke.deletion["single"]) == set(p46.METHODS)
    assert set(smoke.or_hits) == set(p46.METHODS) - {"rise"}
    assert [r["n_designs"] for r in smoke.sweep] == sorted({*cfg.sweep_designs, cfg.n_designs})
    assert smoke.forwards["sobol"] == cfg.n_designs * 66 and smoke.forwards["rise"] == 2 * cfg.n_designs * 66
    assert smoke.examples["or"]["sobol"].shape == (3, 32, 32)
    table = p46.summary(smoke)
    assert list(table.index) == list(p46.METHODS) and "deletion digits" in table


def test_run_is_deterministic():
    a, b = p46.run(TINY), p46.run(TINY)
    assert a.metrics == b.metrics


def test_ishigami_analytic_values_match_the_catalog():
    first, total = p46.ishigami_indices()
    np.testing.assert_allclose(total, [0.558, 0.442, 0.244], atol=5e-4)
    np.testing.assert_allclose(first, [0.314, 0.442, 0.0], atol=5e-4)


def test_or_checks_need_the_manipulation_check(smoke):
    drops_ok = np.tile([0.01, 0.02, 0.9], (10, 1))
    ok = dataclasses.replace(smoke, manipulation=drops_ok, or_hits={**smoke.or_hits, "sobol": 0.95,
                                                                     "occlusion": 0.3}, n_designs=32)
    assert p46.check_or_sobol(ok).verdict == PASS and p46.check_or_occlusion(ok).verdict == PASS
    drops_bad = drops_ok.copy()
    drops_bad[:3, 0] = 0.2  # 70 % pass: the model does not treat the copies as redundant
    bad = dataclasses.replace(ok, manipulation=drops_bad)
    assert p46.manipulation_pass(bad) == pytest.approx(0.7)
    for check in (p46.check_or_sobol, p46.check_or_occlusion):
        v = check(bad)
        assert v.verdict == UNTESTABLE and "manipulation check" in v.note
    worse = dataclasses.replace(ok, or_hits={**ok.or_hits, "sobol": 0.85, "occlusion": 0.5})
    assert p46.check_or_sobol(worse).verdict == FAIL and p46.check_or_occlusion(worse).verdict == FAIL


def test_deletion_check_threshold(smoke):
    r = dataclasses.replace(smoke, deletion={"single": {"sobol": 0.105, "rise": 0.1},
                                             "digits": {"sobol": 0.2, "rise": 0.1}}, n_designs=32)
    assert p46.CLAIMS[3].check(r).verdict == PASS and p46.CLAIMS[4].check(r).verdict == FAIL
    assert p46.CLAIMS[3].check(r).value == pytest.approx(0.005)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_designs": 6}, "n_designs"),
        ({"n_designs": 1}, "n_designs"),
        ({"sweep_designs": (8, 12)}, "sweep_designs"),
        ({"grid_size": 1}, "grid_size"),
        ({"rise_budget": 0.0}, "rise_budget"),
        ({"channels": (8,)}, "channels"),
        ({"n_sweep": 10}, "n_sweep"),
        ({"epochs": 0}, "epochs"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}' parameter of P46"):
        p46.Config(**kwargs)


def test_presets_match_the_catalog():
    smoke, cpu = p46.PRESETS["smoke"], p46.PRESETS["cpu"]
    assert smoke.n_designs == 8
    assert (cpu.n_designs, cpu.grid_size, cpu.rise_budget, cpu.sweep_designs) == (32, 8, 2.0, (8, 16))
    assert round(cpu.rise_budget * cpu.n_designs * (cpu.grid_size**2 + 2)) == 4224
    assert max(p46.PRESETS["paper"].sweep_designs) == 128
