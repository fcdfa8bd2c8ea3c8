"""P21 (Calibrated Chaos): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nnsens.studies import p21_calibrated_chaos as p21
from nnsens.study import PASS, Verdict

TINY = p21.Config(n_train=300, n_test=400, hidden=(16,), runs_all=5, runs_each=4, epochs=2, batch_size=64,
                  n_boot=100)


@pytest.fixture(scope="module")
def smoke():
    return p21.run(p21.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(smoke):
    cfg = p21.PRESETS["smoke"]
    assert smoke.acc["i"].shape == (cfg.runs_all,)
    assert all(smoke.acc[f].shape == (cfg.runs_each,) for f in ("ii", "iii", "iv"))
    assert smoke.p_error.shape == (cfg.n_test,)
    for claim in p21.CLAIMS:
        v = claim.check(smoke)
        assert isinstance(v, Verdict)
    assert all(np.isfinite(v) for v in smoke.metrics.values())
    assert {"churn_poke", "std_iv", "churn_ratio", "var_ratio", "split_half_r"} <= set(smoke.metrics)


def test_run_is_deterministic():
    a, b = p21.run(TINY), p21.run(TINY)
    for f in p21.FAMILIES:
        assert np.array_equal(a.acc[f], b.acc[f])
    assert a.metrics == b.metrics


def test_member_seeds_isolate_the_sources():
    cfg = p21.PRESETS["smoke"]
    fams, model, order = p21.member_seeds(cfg)
    fam = np.array(fams)
    model, order = np.array(model), np.array(order)
    ref = np.flatnonzero(fam == "ref")
    assert len(ref) == 1
    base_m, base_o = model[ref[0]], order[ref[0]]
    # (i): both vary, all distinct; (ii): model varies, order fixed; (iii) the reverse; (iv): both fixed
    assert len(set(model[fam == "i"])) == cfg.runs_all and len(set(order[fam == "i"])) == cfg.runs_all
    assert len(set(model[fam == "ii"])) == cfg.runs_each and set(order[fam == "ii"]) == {base_o}
    assert set(model[fam == "iii"]) == {base_m} and len(set(order[fam == "iii"])) == cfg.runs_each
    assert set(model[fam == "iv"]) == {base_m} and set(order[fam == "iv"]) == {base_o}
    assert base_m not in set(model[np.isin(fam, ["i", "ii"])])
    assert base_o not in set(order[np.isin(fam, ["i", "iii"])])


def test_poke_sites_seeded_by_run_index():
    rows, cols = p21.poke_sites(5, (128, 40))
    rows2, cols2 = p21.poke_sites(7, (128, 40))
    assert torch.equal(rows, rows2[:5]) and torch.equal(cols, cols2[:5])
    assert ((rows >= 0) & (rows < 128) & (cols >= 0) & (cols < 40)).all()


def test_poke_changes_runs_and_is_never_lost_to_rounding():
    """At exponent 7 the factor 1 + 1e-7 still exceeds half a float32 ulp, so every poke changes its weight."""
    for j in (1, 7):
        r = p21.run(dataclasses.replace(TINY, poke_exponent=j))
        assert r.poke_noop == 0 and r.metrics["poke_noop_fraction"] == 0.0
    assert p21.run(dataclasses.replace(TINY, poke_exponent=1)).poke_churn.max() > 0


def test_check_rules_by_scale(smoke):
    v1 = p21.check_independent_errors(smoke)
    assert v1.threshold == "in [0.75, 1.33]" and "point rule" in v1.note
    big = dataclasses.replace(smoke, runs_all=192)
    v2 = p21.check_independent_errors(big)
    assert v2.threshold == "90% CI in [0.7, 1.4]"
    ok = 0.7 <= smoke.ratio.ci_low and smoke.ratio.ci_high <= 1.4
    assert (v2.verdict == PASS) == ok


def test_chaos_checks_on_constructed_results(smoke):
    same = {f: smoke.acc["i"] for f in p21.FAMILIES}
    r = dataclasses.replace(smoke, acc=same, pairwise_churn={"i": 0.2, "ii": 0.2, "iii": 0.2, "iv": 0.2},
                            poke_churn=np.full(3, 0.1))
    assert p21.check_chaos_std(r).verdict == PASS and p21.check_chaos_std(r).value == pytest.approx(0.0)
    assert p21.check_chaos_churn(r).verdict == PASS and p21.check_chaos_churn(r).value == pytest.approx(0.5)
    r = dataclasses.replace(r, poke_churn=np.full(3, 0.09))
    assert p21.check_chaos_churn(r).verdict != PASS


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"poke_exponent": 0}, "poke_exponent"),
        ({"poke_exponent": 8}, "poke_exponent"),
        ({"runs_all": 2}, "runs_all"),
        ({"runs_each": 1}, "runs_each"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -0.1}, "lr"),
        ({"hidden": ()}, "hidden"),
        ({"poke_step": 10**6}, "poke_step"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}' parameter of P21"):
        p21.Config(**kwargs)


def test_presets_match_the_catalog():
    cpu, smoke = p21.PRESETS["cpu"], p21.PRESETS["smoke"]
    assert (cpu.n_train, cpu.n_test, cpu.sizes, cpu.runs_all, cpu.runs_each, cpu.epochs) == (
        4000, 20000, (40, 128, 128, 10), 64, 48, 15)
    assert (smoke.runs_all, smoke.runs_each, smoke.epochs) == (10, 10, 5)
    paper = p21.PRESETS["paper"]
    assert min(paper.runs_all, paper.runs_each) >= 192
