"""Sweeps on a real Dask deployment: grid validation, failure isolation, kill and resume, the report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnsens import cli, sweep, sweep_report
from nnsens.store import Store

BIN = Path(sys.executable).parent


def test_axes_expand_lists_and_ranges():
    assert sweep.parse_axis("poke_exponent=1:8") == ("poke_exponent", [1, 2, 3, 4, 5, 6, 7])
    assert sweep.parse_axis("seed=0,1, 2") == ("seed", ["0", "1", "2"])
    assert sweep.expand_values("x", "0:10:5") == [0, 5]
    assert sweep.expand_values("x", [1, 2]) == [1, 2]
    for bad in ("x", "x=", "x=1:b", "x=1:2:0", "x=1,,2"):
        with pytest.raises(ValueError, match="grid axis|NAME=VALUES"):
            sweep.parse_axis(bad)


def test_bad_grid_is_rejected_before_any_run(echo_project, capsys):
    code = cli.main(["sweep", "P99", "--scale", "smoke", "--grid", "n=0:3", "--grid", "seed=0,1"])
    err = capsys.readouterr().err
    assert code == 2 and "The 'n' parameter of P99 must be an int in [1, 100]. Got 0 instead." in err
    assert cli.main(["sweep", "P99", "--grid", "bogus=1,2"]) == 2
    assert "P99 has no parameter 'bogus'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="both swept and fixed"):
        sweep.plan("s", "P99", "smoke", {"n": [1]}, fixed={"n": 2})
    assert Store(echo_project / "store.sqlite").runs() == []


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    t0 = time.time()
    while not path.exists():
        if time.time() - t0 > timeout:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.2)


@pytest.fixture
def dask_cluster(echo_project, tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, shut down afterwards."""
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(sched_file)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait_for(sched_file)
        for _ in range(2):
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", "--scheduler-file", str(sched_file),
                                           "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import json

        from dask.distributed import Client

        address = json.loads(sched_file.read_text())["address"]
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_sweep_on_separately_started_scheduler(echo_project, dask_cluster, capsys):
    code = cli.main(["sweep", "P99", "--scale", "smoke", "--grid", "n=5,6", "--grid", "fail=false,true",
                     "--scheduler", dask_cluster, "--name", "remote", "--device", "cpu",
                     "--out-root", str(echo_project / "points")])
    err = capsys.readouterr().err
    assert code == 1, "a sweep with failed points ends non-zero"
    assert err.count("FAILED") == 2 and "planted failure in P99" in err
    store = Store(echo_project / "store.sqlite")
    sw = store.sweep("remote")
    assert len(sw["points"]) == 4 and all(p["run"] is not None for p in sw["points"])
    by_status = {}
    for p in sw["points"]:
        by_status.setdefault(p["run"]["status"], []).append(p)
    assert len(by_status["completed"]) == 2 and len(by_status["failed"]) == 2
    for p in by_status["failed"]:
        assert p["params"]["fail"] is True and "planted failure" in p["run"]["error"]
        assert Path(p["run"]["notebook"]).exists(), "the partial notebook is kept"
    for p in by_status["completed"]:
        assert p["run"]["claims"][0]["value"] == p["params"]["n"] and p["run"]["notebook"]
    # the same sweep again without --resume is refused; with --resume only the failed points run again
    assert cli.main(["sweep", "P99", "--scale", "smoke", "--grid", "n=5,6", "--grid", "fail=false,true",
                     "--scheduler", dask_cluster, "--name", "remote", "--device", "cpu"]) == 2
    n_runs = len(store.runs())
    assert cli.main(["sweep", "P99", "--scale", "smoke", "--grid", "n=5,6", "--grid", "fail=false,true",
                     "--scheduler", dask_cluster, "--name", "remote", "--device", "cpu", "--resume"]) == 1
    assert len(store.runs()) == n_runs + 2


def test_killed_sweep_resumes_without_redoing_finished_points(echo_project):
    args = [str(BIN / "nnsens"), "sweep", "P99", "--scale", "smoke", "--grid", "n=1:9", "-p", "sleep=1.0",
            "--engine", "direct", "--workers", "2", "--name", "killme", "--device", "cpu"]
    store = Store(echo_project / "store.sqlite")
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while len(store.runs(status="completed")) < 2:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        assert time.time() - t0 < 120
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local workers, at once
    proc.wait()
    finished = {r["cache_key"]: r["run_id"] for r in store.runs(status="completed")}
    assert 2 <= len(finished) < 8
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = store.runs(status="completed")
    assert len({r["cache_key"] for r in runs}) == 8
    for key, run_id in finished.items():  # a point finished before the kill was not run again
        assert [r["run_id"] for r in runs if r["cache_key"] == key] == [run_id]
    sw = store.sweep("killme")
    assert all(p["run"]["status"] == "completed" for p in sw["points"])

    paths = sweep_report.write_report(store, "killme", root=echo_project)
    tidy = __import__("pandas").read_csv(paths["csv"])
    assert set(tidy["n"]) == set(range(1, 9)) and {"n", "message_length"} <= set(tidy["metric"])
    assert paths["figure"].exists()
    page = paths["page"].read_text()
    assert "Points completed: 8 of 8; failed: 0" in page and "![Each metric against n](killme.png)" in page
