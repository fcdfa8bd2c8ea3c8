"""P07 (OSA-DAS): the smoke preset runs, every claim returns a Verdict, presets follow the catalog, Config rejects
bad values, and the checks' logic (bootstrap, the K = 1 precondition) on hand-made results."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnsens.studies import p07_osa_das as p07
from nnsens.study import FAIL, PASS, UNTESTABLE, Verdict

TINY = p07.Config(n_images=3, n_augment=2, rank=1, rise_masks=8, n_bootstrap=100, epochs_cnn=1, epochs_vit=1,
                  channels=(4, 4), vit_dim=8)


@pytest.fixture(scope="module")
def smoke():
    return p07.run(p07.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(smoke):
    cfg = p07.PRESETS["smoke"]
    for claim in p07.CLAIMS:
        assert isinstance(claim.check(smoke), Verdict)
    assert all(isinstance(v, float) and np.isfinite(v) for v in smoke.metrics.values())
    assert set(smoke.deletion) == {"cnn", "vit"}
    assert set(smoke.deletion["cnn"]) == set(p07.METHODS) and "gradcam" not in smoke.deletion["vit"]
    assert smoke.gain.shape == (2 * cfg.n_images,) and smoke.gain_ci[0] <= smoke.gain.mean() <= smoke.gain_ci[1]
    assert smoke.forwards["osa_das"] == 65 * cfg.n_augment and smoke.forwards["occlusion"] == 65
    assert smoke.examples["cnn"]["osa_das"].shape == (3, 32, 32) and smoke.examples["vit"]["mask"].dtype == bool
    table = p07.summary(smoke)
    assert list(table.index) == list(p07.METHODS) and "pointing vit" in table


def test_run_is_deterministic():
    a, b = p07.run(TINY), p07.run(TINY)
    assert a.metrics == b.metrics


def test_presets_follow_the_catalog():
    smoke, cpu, paper = (p07.PRESETS[k] for k in ("smoke", "cpu", "paper"))
    assert (smoke.n_images, smoke.n_augment, smoke.rank) == (20, 4, 2)
    assert (cpu.n_augment, cpu.rank, cpu.window, cpu.rise_masks, cpu.n_bootstrap) == (8, 3, 4, 500, 2000)
    assert cpu.image_size // cpu.window == 8  # 64 non-overlapping windows per image
    assert (paper.n_augment, paper.rise_masks, paper.image_size) == (16, 2000, 64)
    assert paper.image_size // paper.window == 8


def test_paired_bootstrap_interval():
    g = np.random.default_rng(0).normal(0.05, 0.01, size=200)
    lo, hi = p07.paired_bootstrap(g, 2000, seed=1)
    assert lo < g.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * g.std() / np.sqrt(200), rel=0.15)
    assert p07.paired_bootstrap(g, 2000, seed=1) == (lo, hi)


def _with(r, gain, gain_k1, osa_pt, occ_pt):
    n = len(gain)
    pts = {"cnn": {"osa_das": np.arange(n) < osa_pt * n, "occlusion": np.arange(n) < occ_pt * n}}
    return dataclasses.replace(r, gain=np.asarray(gain), gain_k1=np.asarray(gain_k1), pointing=pts,
                               gain_ci=p07.paired_bootstrap(np.asarray(gain), 500, 0),
                               gain_k1_ci=p07.paired_bootstrap(np.asarray(gain_k1), 500, 0),
                               accuracy={"cnn": 0.97}, n_augment=8, rank=3, window=4)


def test_claim_logic(smoke):
    rng = np.random.default_rng(2)
    gain = 0.02 + 0.005 * rng.standard_normal(100)
    ok = _with(smoke, gain, 0.3 * gain, 0.9, 0.9)
    assert [c.check(ok).verdict for c in p07.CLAIMS] == [PASS, PASS, PASS]
    assert p07.CLAIMS[2].check(ok).value == pytest.approx(0.3)
    assert p07.CLAIMS[2].check(_with(smoke, gain, 0.8 * gain, 0.9, 0.9)).verdict == FAIL
    worse_pointing = _with(smoke, gain, 0.3 * gain, 0.85, 0.9)
    assert p07.CLAIMS[1].check(worse_pointing).verdict == FAIL
    assert p07.CLAIMS[2].check(worse_pointing).verdict == UNTESTABLE
    no_gain = _with(smoke, gain - 0.02, 0.3 * gain, 0.9, 0.9)
    assert p07.CLAIMS[0].check(no_gain).verdict == FAIL
    v = p07.CLAIMS[2].check(no_gain)
    assert v.verdict == UNTESTABLE and "not applicable" in v.note


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_images": 1}, "n_images"),
        ({"n_augment": 0}, "n_augment"),
        ({"rank": 0}, "rank"),
        ({"window": 5}, "window"),
        ({"osa_masks": "circles"}, "osa_masks"),
        ({"models": ("cnn", "resnet")}, "models"),
        ({"models": ("cnn", "cnn")}, "models"),
        ({"image_size": 48}, "image_size"),
        ({"channels": (8,)}, "channels"),
        ({"vit_dim": 30}, "vit_dim"),
        ({"n_bootstrap": 10}, "n_bootstrap"),
    ],
)
def test_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=f"The '{name}' parameter of P07"):
        p07.Config(**kwargs)
