"""NeuralCSA (methods/neural_csa): sensitivity values against closed forms, stage 1 and stage 2 contracts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnsens.data.csa_scms import BinarySCM
from nnsens.methods.neural_csa import Stage1, fit_stage1, sensitivity_value, stage2_bounds


@pytest.fixture(scope="module")
def stage1() -> Stage1:
    d = BinarySCM(2.0).sample(600, seed=0)
    x, a, y = (torch.tensor(v, dtype=torch.float32) for v in (d.x, d.a, d.y))
    return fit_stage1(x, a, y, epochs=2, hidden=8, propensity_epochs=2, seed=0)


def test_sensitivity_value_closed_forms():
    # Q = N(m, 1) against N(0, 1): log ρ(z) = m z − m²/2; KL(Q‖N) = m²/2 and E_N[ρ⁻¹ log ρ⁻¹] = 1.5 m² e^{m²}
    m, gen = 0.3, torch.Generator().manual_seed(0)
    zq = torch.randn(400_000, 1, generator=gen, dtype=torch.float64) + m
    zb = torch.randn(400_000, 1, generator=gen, dtype=torch.float64)
    lr_q, lr_b = m * zq - m**2 / 2, m * zb - m**2 / 2
    first = lr_q.mean(0)
    second = (-torch.exp(-lr_b) * lr_b).mean(0)
    assert float(first) == pytest.approx(m**2 / 2, abs=3e-3)
    assert float(second) == pytest.approx(1.5 * m**2 * math.exp(m**2), rel=0.03)
    assert float(sensitivity_value("kl", lr_q, lr_b)) == pytest.approx(max(float(first), float(second)))
    # MSM: the largest |log ρ| seen; no shift -> 0 for both models
    assert float(sensitivity_value("msm", lr_q, lr_b)) == pytest.approx(float(torch.cat([lr_q, lr_b]).abs().max()))
    zero = torch.zeros(10, 3)
    assert torch.equal(sensitivity_value("msm", zero, zero), torch.zeros(3))
    assert torch.equal(sensitivity_value("kl", zero, zero), torch.zeros(3))
    with pytest.raises(ValueError, match="The 'kind' parameter of sensitivity_value must be one of"):
        sensitivity_value("tv", zero, zero)


def test_stage1_shapes_and_propensity(stage1):
    x = torch.linspace(-0.9, 0.9, 5)
    for arm in (0.0, 1.0):
        p = stage1.propensity(x, torch.full_like(x, arm))
        assert p.shape == (5,) and bool(((p > 0) & (p < 1)).all())
    p1, p0 = stage1.propensity(x, torch.ones(5)), stage1.propensity(x, torch.zeros(5))
    assert torch.allclose(p1 + p0, torch.ones(5))
    s = stage1.sample(x, torch.ones(5), 7, torch.Generator().manual_seed(0))
    assert s.shape == (5, 7) and torch.equal(s, stage1.sample(x, torch.ones(5), 7, torch.Generator().manual_seed(0)))
    assert not any(p.requires_grad for p in stage1.flow.parameters())


def test_fit_stage1_rejects_bad_input():
    x = torch.zeros(10)
    with pytest.raises(ValueError, match="must be 1-D tensors of one length"):
        fit_stage1(x, torch.zeros(9), torch.zeros(10))
    with pytest.raises(ValueError, match="The 'epochs' parameter of fit_stage1 must be an int in"):
        fit_stage1(x, x, x, epochs=0)


def test_stage2_is_seeded_ordered_and_feasible(stage1):
    x = torch.linspace(-0.5, 0.5, 3)
    kw = dict(steps=40, n_mc=16, n_eval=512, seed=3)
    r = stage2_bounds(stage1, x, "msm", 4.0, **kw)
    again = stage2_bounds(stage1, x, "msm", 4.0, **kw)
    assert r.lower.shape == r.upper.shape == (3, 2) and r.history.shape == (40,)
    assert np.array_equal(r.lower, again.lower) and np.array_equal(r.upper, again.upper)
    assert np.all(r.lower < r.upper)
    # the point estimate π·E[Y|x,a] + (1−π)·E[Y|x,a] = E[Y|x,a] of stage 1 lies inside the bounds
    for j, arm in enumerate((0.0, 1.0)):
        mean = stage1.sample(x, torch.full_like(x, arm), 4000, torch.Generator().manual_seed(1)).mean(1).numpy()
        assert np.all(r.lower[:, j] < mean + 0.05) and np.all(mean - 0.05 < r.upper[:, j])
    kl = stage2_bounds(stage1, x, "kl", 0.5, **kw)
    assert np.all(kl.lower < kl.upper) and kl.value_upper.shape == (3, 2)


@pytest.mark.parametrize("kind, param, msg", [
    ("tv", 1.0, "The 'kind' parameter of stage2_bounds must be one of"),
    ("msm", 0.5, "The 'param' parameter of stage2_bounds must be a float in [1, inf) for the MSM"),
    ("kl", 0.0, "The 'param' parameter of stage2_bounds must be a float in (0, inf) for KL"),
])
def test_stage2_rejects_bad_models(stage1, kind, param, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        stage2_bounds(stage1, torch.zeros(2), kind, param)
