"""The runner end to end on the echo study: validation before any kernel, literal parameters, records, cache,
failures that keep their partial notebook."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnsens import cli, runner
from nnsens.store import Store

NASTY = 'it\'s "quoted" \\ and\n"); raise SystemExit("injected")  # {braces} $x'


def test_unknown_parameter_is_refused_before_any_kernel(echo_project, capsys):
    with pytest.raises(ValueError, match="P99 has no parameter 'bogus'. Valid parameters: device, fail, message"):
        runner.prepare("P99", "smoke", {"bogus": "1"})
    assert cli.main(["run", "P99", "-p", "bogus=1"]) == 2
    assert "no parameter 'bogus'" in capsys.readouterr().err
    assert Store(echo_project / "store.sqlite").runs() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", r"The 'n' parameter of P99 must be an int in \[1, 100\]. Got '0' instead."),
     ("many", r"must be an int in \[1, 100\]. Got 'many'"),
     ("2.5", r"must be an int in \[1, 100\]. Got '2.5'")],
)
def test_bad_values_name_the_parameter(echo_project, value, message):
    with pytest.raises(ValueError, match=message):
        runner.prepare("P99", "smoke", {"n": value})


def test_bad_scale_and_device(echo_project):
    with pytest.raises(ValueError, match="'scale' parameter must be one of 'auto', 'smoke'"):
        runner.prepare("P99", "huge")
    with pytest.raises(ValueError, match="'device' parameter of P99 must be one of 'auto', 'cpu', 'cuda'"):
        runner.prepare("P99", "smoke", device="tpu")


def test_numpy_scalars_become_python_values(echo_project):
    spec = runner.prepare("P99", "smoke", {"n": np.int64(7)})
    assert spec.params["n"] == 7 and type(spec.params["n"]) is int


def test_run_stores_record_with_literal_parameters(echo_project):
    spec = runner.prepare("P99", "smoke", {"message": NASTY, "n": "6"}, device="cpu")
    rec = runner.execute(spec, out=echo_project / "out")
    assert rec["status"] == "completed"
    # the string arrived in the kernel as data: the notebook's own record echoes it unchanged
    sidecar = json.loads((echo_project / "out" / "record.json").read_text())
    assert sidecar["params"]["message"] == NASTY
    assert rec["metrics"]["message_length"] == len(NASTY)
    (claim,) = rec["claims"]
    assert (claim["claim"], claim["value"], claim["verdict"]) == ("c1_n_large", 6.0, "PASS")
    prov = rec["provenance"]
    for key in ("commit", "dirty", "packages", "device", "scale", "seed", "wall_time_s", "cache_key"):
        assert key in prov, key
    assert prov["device"] == "cpu" and prov["scale"] == "smoke" and prov["packages"]["nnsens"]
    stored = Store(echo_project / "store.sqlite").get(rec["run_id"])
    assert stored["params"]["message"] == NASTY and stored["claims"][0]["verdict"] == "PASS"


def test_identical_run_is_cached_unless_forced(echo_project):
    spec = runner.prepare("P99", "smoke", device="cpu")
    first = runner.execute(spec, out=echo_project / "a")
    again = runner.execute(spec, out=echo_project / "b")
    assert again.get("cached") and again["run_id"] == first["run_id"]
    assert not (echo_project / "b").exists()
    other = runner.execute(runner.prepare("P99", "smoke", {"n": 4}, device="cpu"), out=echo_project / "c")
    assert other["cache_key"] != first["cache_key"]
    forced = runner.execute(spec, out=echo_project / "d", force=True)
    assert forced["run_id"] > other["run_id"] and not forced.get("cached")


def test_failing_run_keeps_partial_notebook_and_is_stored(echo_project, capsys):
    code = cli.main(["run", "P99", "--scale", "smoke", "-p", "fail=true", "--device", "cpu",
                     "--out", str(echo_project / "bad")])
    assert code == 1
    err = capsys.readouterr().err
    assert "RuntimeError: planted failure in P99" in err
    assert (echo_project / "bad" / "P99_echo.ipynb").exists()
    (row,) = Store(echo_project / "store.sqlite").runs(status="failed")
    assert "planted failure" in row["error"] and row["notebook"].endswith("P99_echo.ipynb")


def test_direct_engine_gives_the_same_record(echo_project):
    spec = runner.prepare("P99", "smoke", {"n": 8}, device="cpu")
    direct = runner.execute(spec, engine="direct")
    assert direct["engine"] == "direct" and direct["claims"][0]["value"] == 8.0
    assert direct["provenance"]["device"] == "cpu"


def test_papermill_run_materializes_a_point_first_run_directly(echo_project):
    spec = runner.prepare("P99", "smoke", {"n": 9}, device="cpu")
    direct = runner.execute(spec, engine="direct")
    assert runner.execute(spec, engine="direct")["run_id"] == direct["run_id"]  # cached
    nb = runner.execute(spec, out=echo_project / "nb")
    assert not nb.get("cached") and nb["notebook"] and nb["cache_key"] == direct["cache_key"]
    assert nb["claims"] == [{**c, "note": c.get("note", "")} for c in direct["claims"]]


def test_only_kernel_start_failures_are_retried(monkeypatch, echo_project):
    """A kernel that dies before its first reply is started again; a failing cell is not rerun."""
    import papermill as pm

    from nnsens import runner

    assert runner._kernel_start_failure(RuntimeError("Kernel died before replying to kernel_info"))
    assert not runner._kernel_start_failure(RuntimeError("cell raised"))
    assert not runner._kernel_start_failure(ValueError("Kernel died before replying to kernel_info"))

    calls = []
    real = pm.execute_notebook

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(pm, "execute_notebook", flaky)
    spec = runner.prepare("P99", "smoke", {})
    record = runner.produce(spec, out=echo_project / "out")
    assert len(calls) == 2 and record["status"] == "completed" and not record["error"]
