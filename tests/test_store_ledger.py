"""Results store and claims ledger."""

from __future__ import annotations

import re

from nnsens import ledger, registry
from nnsens.store import Store


def _record(study="P99", scale="cpu", key="k", status="completed", finished=1.0, verdict="PASS"):
    return {"study": study, "scale": scale, "cache_key": key, "status": status, "params": {"n": 1},
            "metrics": {"m": 0.5}, "provenance": {"device": "cpu"}, "finished": finished, "started": 0.0,
            "claims": [{"claim": "c1", "statement": "s", "value": 0.5, "threshold": ">= 0.4", "verdict": verdict}]}


def test_store_round_trip_and_cache_lookup(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    rid = store.add(_record())
    got = store.get(rid)
    assert got["params"] == {"n": 1} and got["metrics"] == {"m": 0.5}
    assert got["claims"][0]["verdict"] == "PASS" and got["claims"][0]["threshold"] == ">= 0.4"
    assert store.completed("k")["run_id"] == rid
    store.add(_record(key="f", status="failed"))
    assert store.completed("f") is None and store.completed("nope") is None


def test_best_prefers_larger_scale_then_latest(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.add(_record(scale="smoke", finished=9.0))
    cpu_old = store.add(_record(scale="cpu", finished=1.0))
    assert store.best("P99")["run_id"] == cpu_old
    cpu_new = store.add(_record(scale="cpu", finished=2.0, verdict="FAIL"))
    assert store.best("P99")["run_id"] == cpu_new
    assert store.best("P01") is None


def test_ledger_lists_all_68_studies(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    rows = ledger.ledger_rows(store)
    assert {r["study"] for r in rows} == set(registry.catalog()) and len(registry.catalog()) == 68
    text = ledger.render_markdown(store)
    study_rows = [ln for ln in text.splitlines() if re.match(r"\| (\{doc\}`)?P\d\d", ln)]
    assert "not yet reproduced" in text and len(study_rows) == 68


def test_ledger_shows_the_best_runs_claims(echo_project):
    store = Store(echo_project / "store.sqlite")
    store.add(_record(scale="cpu", verdict="FAIL"))
    (row,) = [r for r in ledger.ledger_rows(store) if r["study"] == "P99"]
    assert (row["claim"], row["verdict"], row["scale"]) == ("c1", "FAIL", "cpu")
    assert "| cpu | FAIL | 1 |" in ledger.render_markdown(store)
