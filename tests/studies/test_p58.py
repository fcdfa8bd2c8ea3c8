"""P58 (GCAV): the smoke preset runs, every claim returns a Verdict, Config rejects bad values; GCAV-lite helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnsens.methods import gcav
from nnsens.studies import p58_gcav as p58
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p58.run(p58.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p58.PRESETS["smoke"]
    shape = (len(cfg.layers), 5, len(cfg.concepts), cfg.n_repeats)
    assert result.tcav.shape == result.tgcav.shape == shape
    assert result.tcav_null.shape == result.tgcav_null.shape == (len(cfg.layers), 5, cfg.n_repeats)
    for s in (result.tcav, result.tgcav, result.tcav_null, result.tgcav_null):
        assert np.all((s >= 0) & (s <= 1))
    assert len(result.history["var"]) == cfg.fusion_steps
    for claim in p58.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())
    assert len(result.pair_table()) == 5 * len(cfg.concepts)


def test_presets_follow_the_catalog():
    smoke, cpu = p58.PRESETS["smoke"], p58.PRESETS["cpu"]
    assert smoke == p58.Config()
    assert len(smoke.concepts) == 2 and smoke.n_repeats == 3 and len(smoke.layers) == 2 and smoke.fusion_steps == 200
    assert len(cpu.concepts) == 5 and cpu.n_repeats == 10 and cpu.layers == (1, 2, 3, 4)
    assert cpu.fusion_steps == 2000 and cpu.n_concept == 100 and cpu.var_loss == 3.0 and cpu.sim_loss == 1.0
    assert cpu.eps == pytest.approx(8 / 255) and cpu.attack_steps == 20 and cpu.attack_layer == 3
    assert p58.PRESETS["paper"].image_size == 64 and p58.PRESETS["paper"].n_repeats == 50


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_repeats": 1}, "The 'n_repeats' parameter of P58 must be an int in [2, 100]. Got 1 instead."),
        ({"concepts": ("striped", "plaid")}, "The 'concepts' parameter of P58 must be one of"),
        ({"concepts": ("striped", "striped")}, "The 'concepts' parameter of P58 must not repeat values"),
        ({"layers": (3,)}, "The 'layers' parameter of P58 must list at least 2 blocks"),
        ({"layers": (2, 5)}, "The 'layers' parameter of P58"),
        ({"attack_layer": 1}, "The 'attack_layer' parameter of P58 must be one of layers=(3, 4)"),
        ({"var_loss": -1.0}, "The 'var_loss' parameter of P58"),
        ({"image_size": 48}, "The 'image_size' parameter of P58"),
        ({"device": "tpu"}, "The 'device' parameter of P58"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p58.Config(**bad)
    assert msg in str(err.value)


def test_claims_untestable_paths(result):
    m = dict(result.metrics, attack_cav_tcav_increase=0.1)
    r = p58.Result(**{**result.__dict__, "metrics": m})
    v = p58._c3(r)
    assert v.verdict == "NOT TESTABLE" and "inconclusive" in v.note
    m = dict(result.metrics, attack_cav_tcav_increase=0.4, attack_cav_tgcav_increase=0.1)
    assert p58._c3(p58.Result(**{**result.__dict__, "metrics": m})).verdict == "PASS"
    assert p58._c2_irrelevant(result).verdict == "NOT TESTABLE"  # smoke has no 'hexagonal'
    assert p58._c2_top(result).verdict == "NOT TESTABLE"


def test_layer_stats():
    s = p58._layer_stats(np.array([0.5, 1.0, 0.75]), "x")
    assert s["x_mean"] == pytest.approx(0.75) and s["x_cv"] == pytest.approx(np.std([0.5, 1, 0.75]) / 0.75)
    assert s["x_rr"] == pytest.approx(0.5 / 0.75)
    assert p58._layer_stats(np.zeros(3), "x")["x_cv"] == 0.0


def test_soft_tcav_tends_to_the_hard_score():
    dd = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.0, -0.5]])
    groups = torch.tensor([0, 0, 1])
    soft = gcav.soft_tcav(dd, groups, 2, tau=1e-3)
    hard = torch.stack([(dd[groups == k] > 0).float().mean(0) for k in range(2)])
    assert torch.allclose(soft, hard, atol=1e-4)


def test_fit_gcav_lowers_the_variance_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    dims = (12, 8)
    cavs = [torch.nn.functional.normalize(torch.randn(6, d, generator=g), dim=1) for d in dims]
    grads = [torch.randn(20, d, generator=g) for d in dims]
    groups = torch.arange(20) % 2
    kw = dict(embed_dim=8, ae_steps=30, fusion_steps=60, generator=1)
    model, hist = gcav.fit_gcav(cavs, grads, groups, **kw)
    assert hist["var"][-1] < hist["var"][0]
    dirs = model.transform(cavs)
    assert [d.shape for d in dirs] == [(6, 12), (6, 8)]
    assert torch.allclose(dirs[0].norm(dim=1), torch.ones(6))
    model2, _ = gcav.fit_gcav(cavs, grads, groups, **kw)
    assert torch.allclose(model2.transform(cavs)[1], dirs[1])


def test_concept_attack_stays_in_the_ball_and_raises_the_derivative():
    from nnsens.measures.concepts import layer_gradients

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.rand(8, 5)
    v = torch.nn.functional.normalize(torch.randn(16), dim=0)
    adv = gcav.concept_attack(net, x, target=0, layer=net[1], direction=v, eps=0.1, steps=10)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with gcav.smooth_relu(net):
        before = layer_gradients(net, x, target=0, layers=[net[1]])[0] @ v
        after = layer_gradients(net, adv, target=0, layers=[net[1]])[0] @ v
    assert after.mean() > before.mean()
    assert all(type(m.forward).__name__ == "method" for m in net if isinstance(m, nn.ReLU))  # restored
