"""P22 (Hessian-aware pruning): HAP's channel scores and its baselines, the smoke preset runs, every claim returns a
Verdict, Config rejects bad values. (Selection with a per-layer cap and real channel removal of a ConvNet are the
shared pruning tools, tested in tests/test_pruning.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from nnsens.methods import hap
from nnsens.models import ConvNet
from nnsens.studies import p22_hessian_aware_pruning as p22
from nnsens.study import Verdict


# ------------------------------------------------------------------------------------------------ HAP scores
def test_importances():
    net = ConvNet(channels=(2, 3), pool_after=())
    w = net.convs[1].weight.detach().reshape(3, -1).double()
    tr = np.array([1.0, 2.0, -1.0])
    imp = hap.hap_importance(net, {"convs.1.weight": tr})["convs.1.weight"]
    np.testing.assert_allclose(imp, tr / w.shape[1] * w.pow(2).sum(1).numpy())
    l1 = hap.l1_importance(net, ["convs.1.weight"])["convs.1.weight"]
    np.testing.assert_allclose(l1, w.abs().mean(1).numpy())
    r1 = hap.random_importance(net, ["convs.1.weight"], np.random.default_rng(0))
    r2 = hap.random_importance(net, ["convs.1.weight"], np.random.default_rng(0))
    assert np.array_equal(r1["convs.1.weight"], r2["convs.1.weight"])


# ------------------------------------------------------------------------------------------------------ study
@pytest.fixture(scope="module")
def result():
    return p22.run(p22.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p22.PRESETS["smoke"]
    assert len(result.runs) == len(result.mlp) == cfg.n_seeds
    c = result.mlp[0]
    assert c.trace_se > 0 and c.channel_exact.shape == c.channel_est.shape == (cfg.mlp_hidden + 10,)
    # the channels of the MLP's weights add up to the whole weight Hessian's trace, exactly and estimated
    assert c.channel_exact.sum() == pytest.approx(c.exact, rel=1e-9)
    assert c.channel_est.sum() == pytest.approx(c.trace, rel=1e-6)
    r = result.runs[0]
    total = sum(cfg.channels)
    for (m, ratio), kept in r.kept.items():
        assert m in p22.METHODS and ratio in cfg.ratios
        assert total - sum(kept) == round(ratio * total)
        assert all(k >= c - int(np.floor(cfg.max_layer_ratio * c)) for k, c in zip(kept, cfg.channels))
        assert r.n_params[(m, ratio)] < r.dense_params
    for claim in p22.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())


def test_claims_need_their_ratios(result):
    by_name = {c.name: c for c in p22.CLAIMS}
    assert by_name["c2_drop_at_50"].check(result).verdict == "NOT TESTABLE"  # smoke runs 0.7 only
    assert by_name["c3_oneshot_vs_l1"].check(result).verdict in ("PASS", "FAIL")


def test_presets_follow_the_catalog():
    smoke, cpu = p22.PRESETS["smoke"], p22.PRESETS["cpu"]
    assert smoke == p22.Config() and smoke.n_seeds == 1 and smoke.n_probes == 20 and len(smoke.ratios) == 1
    assert cpu.n_seeds == 3 and cpu.n_probes == 100 and cpu.ratios == (0.3, 0.5, 0.7) and cpu.finetune_epochs == 3
    assert cpu.channels == (32, 64, 64) and cpu.max_layer_ratio == 0.9 and cpu.mlp_probes == 200


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_seeds": 0}, "The 'n_seeds' parameter of P22 must be an int in [1, 20]. Got 0 instead."),
        ({"ratios": (0.5, 0.5)}, "The 'ratios' parameter of P22 must not repeat values"),
        ({"ratios": (0.95,)}, "The 'ratios' parameter of P22"),
        ({"channels": (8, 8)}, "The 'channels' parameter of P22 must have 3 entries"),
        ({"n_probes": 1}, "The 'n_probes' parameter of P22"),
        ({"device": "tpu"}, "The 'device' parameter of P22"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p22.Config(**bad)
    assert msg in str(err.value)
