"""P12 (node-level DP-GNN): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nnsens.data.graphs import csbm, degree_bounded_edges
from nnsens.methods.dp_gnn import deletion_change, gcn_sensitivity
from nnsens.models import MLP
from nnsens.studies import p12_dp_gnn as p12
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p12.run(p12.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p12.PRESETS["smoke"]
    per_seed_h = 1 + len(cfg.epsilon) + len(cfg.max_degree) * (1 + len(cfg.epsilon))
    assert len(result.acc) == cfg.n_seeds * len(cfg.homophily) * per_seed_h
    assert all(0.0 <= r[5] <= 1.0 for r in result.acc)
    assert len(result.deletions) == cfg.n_deletions * len(cfg.max_degree)
    for claim in p12.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())
    assert p12.CLAIMS[0].check(result).verdict == "PASS" and p12.CLAIMS[2].check(result).verdict == "PASS"


def test_untestable_when_the_check_setting_is_missing(result):
    no_check = dataclasses.replace(result, acc=tuple(r for r in result.acc if r[1] != p12.HOMOPHILOUS))
    assert p12._c2_homophilous(no_check).verdict == "NOT TESTABLE"
    low = tuple((*r[:5], 0.3) if r[2] == "mlp" else r for r in result.acc)
    assert p12._c2_heterophilous(dataclasses.replace(result, acc=low)).verdict == "NOT TESTABLE"


def test_deletion_changes_at_most_k_plus_one_terms():
    g = csbm(200, seed=0, avg_degree=8.0)
    nodes = np.arange(0, 200, 2)
    torch.manual_seed(0)
    net = MLP((16, 8, 4))
    x, y = torch.as_tensor(g.x), torch.as_tensor(g.y)
    for k in (1, 3):
        msg = degree_bounded_edges(g.edges, nodes, k, seed=1)
        hub = int(np.bincount(msg[0]).argmax())  # a node that feeds K others
        changed, norm = deletion_change(net, x, y, msg, nodes, hub, 0.5)
        assert changed == k + 1 and norm <= gcn_sensitivity(k, 0.5)


def test_presets_follow_the_catalog():
    cpu = p12.PRESETS["cpu"]
    assert cpu.n_nodes == 3000 and cpu.max_degree == (3, 7) and cpu.epsilon == (1.0, 4.0, 12.0)
    assert cpu.n_seeds == 3 and cpu.homophily == (0.8, 0.25) and cpu.n_deletions == 100
    smoke = p12.PRESETS["smoke"]
    assert smoke == p12.Config() and smoke.n_nodes == 500 and smoke.max_degree == (3,) and len(smoke.epsilon) == 1
    assert p12.PRESETS["paper"].n_nodes == 50_000 and max(p12.PRESETS["paper"].max_degree) == 15


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_seeds": 0}, "The 'n_seeds' parameter of P12 must be an int in [1, 20]. Got 0 instead."),
        ({"homophily": (0.8, 1.5)}, "The 'homophily' parameter of P12"),
        ({"epsilon": (4.0, 4.0)}, "The 'epsilon' parameter of P12 must not repeat values"),
        ({"max_degree": (0,)}, "The 'max_degree' parameter of P12"),
        ({"batch_size": 400}, "The 'batch_size' parameter of P12 must be at most n_train=250"),
        ({"device": "tpu"}, "The 'device' parameter of P12"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p12.Config(**bad)
    assert msg in str(err.value)
