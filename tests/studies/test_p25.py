"""P25 (Mask of truth): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnsens.data.chest import IMAGE_TYPES
from nnsens.studies import p25_mask_of_truth as p25
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p25.run(p25.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p25.PRESETS["smoke"]
    assert set(result.auc) == {(0.6, t) for t in cfg.train_types} | {(0.0, "full"), (0.0, "no_roi")}
    for m in result.auc.values():
        assert m.shape == (cfg.n_seeds, len(IMAGE_TYPES)) and np.all((m >= 0) & (m <= 1))
    for lst in result.shap.values():
        s = lst[0]
        assert 0 <= s.marker <= s.out_roi <= 1 and abs(s.roi + s.out_roi - 1) < 1e-5 and s.n_images == cfg.n_shap
    for claim in p25.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL")
    assert all(isinstance(v, float) for v in result.metrics.values())


def test_claims_untestable_off_the_catalog_rho(result):
    other = dataclasses.replace(result, rho=0.4, control_rho=0.2)
    assert all(c.check(other).verdict == "NOT TESTABLE" for c in p25.CLAIMS)


def test_region_shares_closed_form():
    attr = np.zeros((1, 10, 10))
    roi = np.zeros((1, 10, 10), bool)
    roi[0, :5] = True
    marker = np.zeros((1, 10, 10), bool)
    marker[0, 8, 8] = True
    attr[0, 0, 0], attr[0, 9, 9], attr[0, 5, 0] = 2.0, 1.0, 1.0  # in ROI, within 2 px of the marker, elsewhere
    np.testing.assert_allclose(p25.region_shares(attr, roi, marker), [[0.5, 0.5, 0.25]])
    np.testing.assert_allclose(p25.region_shares(attr, roi, marker, pad=0), [[0.5, 0.5, 0.0]])
    assert np.all(p25.region_shares(np.zeros((1, 10, 10)), roi, marker) == 0)


def test_presets_follow_the_catalog():
    cpu, smoke, paper = p25.PRESETS["cpu"], p25.PRESETS["smoke"], p25.PRESETS["paper"]
    assert cpu.train_types == IMAGE_TYPES and cpu.n_train == 3000 and cpu.epochs == 5 and cpu.n_seeds == 1
    assert cpu.rho == 0.6 and cpu.control_rho == 0.0 and cpu.spread == 0
    assert smoke == p25.Config() and len(smoke.train_types) == 3 and smoke.n_train == 1000 and smoke.epochs == 2
    assert paper.image_size == 64 and paper.n_train == 20_000 and paper.n_seeds == 5
    assert p25.LESION_AMPLITUDE > 0 and p25.N_BASELINES == p25.N_SHAP_SAMPLES == 16


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"rho": 1.2}, "The 'rho' parameter of P25 must be a float in [0.0, 1.0]. Got 1.2 instead."),
        ({"spread": 4}, "The 'spread' parameter of P25 must be an int in [-3, 3]. Got 4 instead."),
        ({"train_types": ("full", "lungs")}, "The 'train_types' parameter of P25 must be one of"),
        ({"train_types": ("full", "only_roi")}, "The 'train_types' parameter of P25 must contain 'full' and 'no_roi'"),
        ({"train_types": ("full", "no_roi", "full")}, "The 'train_types' parameter of P25 must not repeat values"),
        ({"n_seeds": 0}, "The 'n_seeds' parameter of P25"),
        ({"device": "tpu"}, "The 'device' parameter of P25"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p25.Config(**bad)
    assert msg in str(err.value)
