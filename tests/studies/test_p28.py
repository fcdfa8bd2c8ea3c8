"""P28 (FullGrad): the smoke preset runs, every claim returns a Verdict, presets follow the catalog, Config checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnsens.studies import p28_fullgrad as p28
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p28.run(p28.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p28.PRESETS["smoke"]
    assert set(result.perturbation) == set(p28.METHODS)
    for m, v in result.perturbation.items():
        assert v.shape == (result.n_images, len(cfg.fractions)) and np.all(v >= 0), m
    assert result.roar == {}  # no ROAR at smoke scale
    assert result.completeness["rel64_trained_test"] < 1e-10  # the decomposition is exact
    assert result.completeness_no_bn > 1e-2  # and it needs the BatchNorm shifts
    verdicts = {c.name: c.check(result) for c in p28.CLAIMS}
    for v in verdicts.values():
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert verdicts["c1b_completeness_float64"].verdict == "PASS"
    for name in ("c2_lowest_k3", "c2_beats_k10", "c3_roar_vs_saliency", "c3_roar_vs_random"):
        assert verdicts[name].verdict == "NOT TESTABLE"  # k = 3, 10 % and ROAR are not in the smoke grid
    assert all(isinstance(v, float) for v in result.metrics.values())
    assert all("." not in k for k in result.metrics)


def test_claims_on_a_synthetic_result(result):
    """The checks read the right quantities: a FullGrad that is best everywhere passes, one that is worst fails."""
    n = 40
    rng = np.random.default_rng(0)
    base = {m: 0.2 + 0.01 * rng.standard_normal((n, 2)) for m in p28.METHODS}
    good = dict(base, fullgrad=0.05 + 0.01 * rng.standard_normal((n, 2)))
    roar = {50.0: {"fullgrad": np.array([20.0, 21, 22]), "saliency": np.array([5.0, 6, 7]),
                   "random": np.array([1.0, 1, 1])}}
    r = dataclasses.replace(result, fractions=(3.0, 10.0), perturbation=good, roar=roar, n_boot=500)
    assert all(p28.check_lowest(r, k).verdict == "PASS" and p28.check_beats(r, k).verdict == "PASS"
               for k in (3.0, 10.0))
    assert p28.check_roar(r, "saliency", 3.0).value == pytest.approx(15.0)
    assert p28.check_roar(r, "random", 5.0).verdict == "PASS"
    bad = dataclasses.replace(r, perturbation=dict(base, fullgrad=base["fullgrad"] + 0.3))
    assert p28.check_lowest(bad, 3.0).verdict == "FAIL" and p28.check_beats(bad, 10.0).verdict == "FAIL"


def test_paired_bootstrap_is_seeded_and_centred():
    a = np.arange(50, dtype=float)
    mean, lo, hi = p28.paired_bootstrap(a + 1.0, a, 1000, np.random.default_rng(1))
    assert (mean, lo, hi) == (1.0, 1.0, 1.0)  # a constant gap has a degenerate CI
    b = np.random.default_rng(2).standard_normal(50)
    first = p28.paired_bootstrap(b, 0 * b, 1000, np.random.default_rng(3))
    assert first == p28.paired_bootstrap(b, 0 * b, 1000, np.random.default_rng(3)) and first[1] < first[0] < first[2]


def test_presets_follow_the_catalog():
    smoke, cpu, paper = (p28.PRESETS[k] for k in ("smoke", "cpu", "paper"))
    assert smoke == p28.Config() and smoke.n_test == 50 and smoke.fractions == (1.0, 5.0) and smoke.roar_seeds == 0
    assert cpu.n_test == 360 and cpu.fractions == (0.1, 1.0, 3.0, 5.0, 10.0) and cpu.n_random == 100
    assert cpu.roar_ratios == (50.0,) and cpu.roar_methods == ("fullgrad", "saliency", "random")
    assert cpu.roar_seeds == 3 and cpu.roar_epochs == 4 and len(cpu.channels) == 4
    assert paper.roar_ratios == (30.0, 50.0, 70.0, 90.0) and paper.roar_methods == p28.METHODS
    assert paper.image_size == 64 and len(paper.channels) > 4


@pytest.mark.parametrize(
    ("bad", "msg"),
    [({"n_test": 1}, "The 'n_test' parameter of P28 must be an int in [2, 450]. Got 1 instead."),
     ({"fractions": (1.0, 101.0)}, "The 'fractions' parameter of P28"),
     ({"fractions": (1.0, 1.0)}, "The 'fractions' parameter of P28 must not repeat values"),
     ({"roar_methods": ("fullgrad", "lime")}, "The 'roar_methods' parameter of P28 must be one of"),
     ({"channels": (8,)}, "The 'channels' parameter of P28 must hold at least two conv widths"),
     ({"image_size": 8, "channels": (4, 4, 4, 4, 4)},
      "The 'image_size' parameter of P28 must be at least 2**(len(channels) - 1) = 16. Got 8 instead."),
     ({"roar_seeds": -1}, "The 'roar_seeds' parameter of P28"),
     ({"device": "tpu"}, "The 'device' parameter of P28")],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p28.Config(**bad)
    assert msg in str(err.value)
