"""P65 (extremal perturbations): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nnsens.studies import p65_extremal_perturbations as p65
from nnsens.study import FAIL, PASS, Verdict


@pytest.fixture(scope="module")
def smoke():
    return p65.run(p65.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(smoke):
    cfg = p65.PRESETS["smoke"]
    for claim in p65.CLAIMS:
        assert isinstance(claim.check(smoke), Verdict)
    assert smoke.achieved.shape == (cfg.n_images, len(cfg.areas))
    assert smoke.mp_areas.shape == (3, cfg.n_mp)
    assert set(smoke.pointing) == set(p65.METHODS)
    assert all(isinstance(v, float) for v in smoke.metrics.values())


def test_presets_follow_the_catalog():
    cpu, smoke = p65.PRESETS["cpu"], p65.PRESETS["smoke"]
    assert cpu.areas == (0.025, 0.05, 0.1, 0.2) and cpu.n_iter == 300 and cpu.step == 1 and cpu.sigma == 3.0
    assert smoke.areas == (0.05, 0.2) and smoke.n_iter == 100
    assert p65.PRESETS["paper"].n_iter == 800


def test_pointing_hits_box_and_ties():
    sal = torch.zeros(2, 8, 8)
    sal[0, 2, 3] = 1.0
    sal[1, 6, 6] = 1.0
    boxes = torch.tensor([[1, 1, 4, 5], [0, 0, 3, 3]])
    assert p65.pointing_hits(sal, boxes).tolist() == [True, False]
    flat = torch.ones(1, 8, 8)  # all tied: the random pick lands in a 4x8 box about half the time
    hits = [p65.pointing_hits(flat, torch.tensor([[0, 0, 4, 8]]), generator=g).item() for g in range(40)]
    assert 10 < sum(hits) < 30


def test_claim_quantities(smoke):
    r = dataclasses.replace(smoke, areas=np.array([0.1, 0.2]), achieved=np.array([[0.11, 0.21], [0.1, 0.25]]),
                            phi=np.array([[1.0, 2.0], [3.0, 2.0]]), phi_full=np.array([2.0, 2.5]),
                            stroke_pixels=np.array([10.0, 20.0]))
    assert p65.area_within_tol(r) == pytest.approx(0.75)
    assert p65.phi_spearman(r) == pytest.approx(0.0)
    assert p65.smallest_area_rank(r).tolist() == [1, 0]
    assert p65.check_area_control(r).verdict == FAIL
    ok = dataclasses.replace(r, achieved=np.array([[0.1, 0.2], [0.1, 0.2]]), mp_areas=np.array([[0.1, 0.3]] * 3))
    assert p65.check_area_control(ok).verdict == PASS and p65.check_lambda_iqr(ok).verdict == PASS


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"channels": (8, 16)}, "'channels' parameter of P65"),
        ({"n_mp": 10}, "'n_mp' parameter of P65"),
        ({"mp_lambdas": (1.0, 2.0)}, "'mp_lambdas' parameter of P65"),
        ({"areas": (0.2, 0.1)}, "'areas' parameter of P65"),
        ({"perturbation": "noise"}, "'perturbation' parameter of P65"),
        ({"sigma": 0.0}, "'sigma' parameter of P65"),
    ],
)
def test_config_rejects_bad_values(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        p65.Config(**kwargs)
