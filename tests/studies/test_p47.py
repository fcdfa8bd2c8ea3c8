"""P47 (Smooth Grad-CAM++): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nnsens.studies import p47_smooth_gradcam_pp as p47
from nnsens.study import FAIL, PASS, UNTESTABLE, Verdict

TINY = p47.Config(n_test=6, n_train=64, epochs=1, channels=(2, 2, 2, 2), hidden=4, grid_stdevs=(0.3,),
                  grid_samples=(2,), n_samples=2, n_alpha_entries=3, n_bootstrap=100)


@pytest.fixture(scope="module")
def smoke():
    return p47.run(p47.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(smoke):
    cfg = p47.PRESETS["smoke"]
    for claim in p47.CLAIMS:
        assert isinstance(claim.check(smoke), Verdict)
    assert all(isinstance(v, float) for v in smoke.metrics.values())
    assert set(smoke.per_image) == set(p47.METHODS)
    assert all(len(v) == smoke.n_eligible for d in smoke.per_image.values() for v in d.values())
    assert len(smoke.grid) == len(cfg.grid_stdevs) * len(cfg.grid_samples)
    assert len(smoke.alpha_fixed["rel_error"]) == cfg.n_alpha_entries
    assert smoke.examples["smooth_gradcam_pp"].shape[1:] == (32, 32)
    assert list(p47.summary_table(smoke).index) == list(p47.METHODS)


def test_run_is_deterministic():
    a, b = p47.run(TINY), p47.run(TINY)
    assert a.metrics.keys() == b.metrics.keys()
    np.testing.assert_equal(a.metrics, b.metrics)


def test_instance_hits_rule():
    maps = torch.zeros(2, 8, 8)
    maps[0, 1, 1], maps[0, 6, 6] = 1.0, 0.6  # second box at 0.6 x max: hit
    maps[1, 1, 1], maps[1, 6, 6] = 1.0, 0.4  # 0.4 x max: missed
    boxes = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    boxes[:, 0, 0:3, 0:3] = True
    boxes[:, 1, 5:8, 5:8] = True
    hits = p47.instance_hits(maps, boxes)
    assert hits.tolist() == [[True, True, True], [True, False, True]]  # the empty third slot counts as hit
    assert not p47.instance_hits(torch.zeros(2, 8, 8), boxes)[:, :2].any()  # an all-zero map hits nothing
    stats = p47.map_stats(maps, boxes)
    assert stats["all_hit"].tolist() == [1.0, 0.0] and stats["hit_frac"].tolist() == [1.0, 0.5]
    np.testing.assert_allclose(stats["energy"], [1.0, 1.0])
    uniform = p47.map_stats(torch.ones(1, 8, 8), boxes[:1])
    np.testing.assert_allclose([uniform["entropy"][0], uniform["gini"][0]], [1.0, 0.0], atol=1e-12)


def test_paired_bootstrap_ci():
    a, b = np.r_[np.ones(40), np.zeros(60)], np.zeros(100)
    lo, hi = p47.paired_bootstrap(a, b, 2000, 0)
    assert lo < 0.4 < hi and lo > 0.25
    assert p47.paired_bootstrap(b, b, 200, 0) == (0.0, 0.0)


def test_claim_thresholds(smoke):
    summ = {m: dict(v) for m, v in smoke.summary.items()}
    summ["gradcam"]["all_hit"], summ["gradcam_pp"]["all_hit"], summ["smooth_gradcam_pp"]["all_hit"] = 0.5, 0.6, 0.65
    summ["gradcam_pp"]["energy"], summ["smooth_gradcam_pp"]["energy"] = 0.5, 0.49
    r = dataclasses.replace(smoke, summary=summ, recall_diff_ci=(0.01, 0.09), n_eligible=200, n_samples=16)
    assert p47.check_recall_vs_gradcam(r).verdict == PASS
    assert p47.check_recall_vs_gradcam_pp(r).verdict == PASS
    assert p47.check_energy(r).verdict == PASS
    r2 = dataclasses.replace(r, recall_diff_ci=(-0.01, 0.09))
    assert p47.check_recall_vs_gradcam_pp(r2).verdict == FAIL
    r3 = dataclasses.replace(r, n_eligible=0)
    assert p47.check_recall_vs_gradcam(r3).verdict == UNTESTABLE


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"stdev": -0.1}, "stdev"),
        ({"n_samples": 0}, "n_samples"),
        ({"grid_samples": (4, 0)}, "grid_samples"),
        ({"layer": "conv1"}, "layer"),
        ({"channels": (8, 16)}, "channels"),
        ({"epochs": 0}, "epochs"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}' parameter of P47"):
        p47.Config(**kwargs)


def test_presets_match_the_catalog():
    smoke, cpu = p47.PRESETS["smoke"], p47.PRESETS["cpu"]
    assert (smoke.n_test, smoke.n_samples) == (20, 4)
    assert (cpu.stdev, cpu.n_samples, cpu.n_test, cpu.n_alpha_entries) == (0.15, 16, 300, 100)
    assert len(cpu.grid_stdevs) == 4 and len(cpu.grid_samples) == 3 and 0.15 in cpu.grid_stdevs
    assert min(cpu.grid_stdevs) == 0.05 and max(cpu.grid_stdevs) == 0.5
    assert p47.PRESETS["paper"].n_test == 2000
