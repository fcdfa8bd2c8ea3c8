"""Sweep overhead: per-point cost of the papermill and direct engines, and throughput with 1 and 2 workers.

The study is the trivial echo study of the tests (no work inside run), so every second measured is overhead.
Steady-state throughput is read from the stored records (points finished between the first and the last record),
which leaves cluster start-up out; the wall time of the whole sweep is printed beside it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

SUPPORT = Path(__file__).resolve().parents[1] / "tests" / "support"


def _sweep_seconds(engine: str, workers: int, n_points: int, tag: str) -> tuple[float, float]:
    """(wall seconds of the sweep, steady-state seconds per point between the first and the last record)."""
    from nnsens import registry, sweep
    from nnsens.store import Store

    store = Store(Path(tempfile.mkdtemp()) / "bench.sqlite")
    plan = sweep.plan(f"{tag}-{engine}-{workers}-{n_points}", "P99", "smoke",
                      {"seed": list(range(n_points))}, engine=engine, device="cpu")
    assert registry.get("P99").implemented
    t0 = time.perf_counter()
    summary = sweep.execute(plan, store=store, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    assert summary.completed == n_points and not summary.failed, summary
    done = sorted(r["finished"] for r in store.runs(status="completed"))
    return wall, (done[-1] - done[0]) / (len(done) - 1)


def main() -> None:
    root = Path(tempfile.mkdtemp())
    (root / "notebooks").mkdir()
    sys.path.insert(0, str(SUPPORT))
    import p99_echo

    from nnsens import registry

    p99_echo.write_notebook(root / "notebooks" / "P99_echo.ipynb")
    os.environ.update(NNSENS_ROOT=str(root), NNSENS_EXTRA_STUDIES="P99=p99_echo", OMP_NUM_THREADS="1",
                      PYTHONPATH=os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")]))
    registry.catalog.cache_clear()
    sizes = {"direct": 200, "papermill": 12}
    print(f"{'engine':10} {'workers':>7} {'points':>6} {'wall s':>8} {'worker-s/point':>14} {'points/min':>10}")
    for workers in (1, 2):
        for engine in ("direct", "papermill"):  # engines interleaved within each worker count
            n = sizes[engine]
            wall, per_point = _sweep_seconds(engine, workers, n, f"b{time.time_ns()}")
            print(f"{engine:10} {workers:>7} {n:>6} {wall:>8.2f} {per_point * workers:>14.3f} {60 / per_point:>10.1f}")
    print("worker-s/point = steady-state seconds between finished points x workers (start-up excluded);")
    print("points/min = steady-state sweep throughput.")


if __name__ == "__main__":
    main()
