"""Sweep overhead: per-point cost of the papermill and direct engines, and throughput with 1 and 2 workers.

The study is the trivial echo study of the tests (no work inside run), so every second measured is overhead:
cluster start-up is excluded by differencing a long sweep against a one-point sweep on the same engine and workers.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

SUPPORT = Path(__file__).resolve().parents[1] / "tests" / "support"


def _sweep_seconds(engine: str, workers: int, n_points: int, tag: str) -> float:
    from nnsens import registry, sweep
    from nnsens.store import Store

    store = Store(Path(tempfile.mkdtemp()) / "bench.sqlite")
    plan = sweep.plan(f"{tag}-{engine}-{workers}-{n_points}", "P99", "smoke",
                      {"n": list(range(1, n_points + 1))}, engine=engine, device="cpu")
    assert registry.get("P99").implemented
    t0 = time.perf_counter()
    summary = sweep.execute(plan, store=store, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    assert summary.completed == n_points and not summary.failed, summary
    return wall


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
    sizes = {"direct": 60, "papermill": 12}
    print(f"{'engine':10} {'workers':>7} {'points':>6} {'wall s':>8} {'1-point s':>9} {'per point s':>11} "
          f"{'points/min':>10}")
    for workers in (1, 2):
        for engine in ("direct", "papermill"):  # engines interleaved within each worker count
            n = sizes[engine]
            one = _sweep_seconds(engine, workers, 1, f"b{time.time_ns()}")
            many = _sweep_seconds(engine, workers, n, f"b{time.time_ns()}")
            per_point = (many - one) / (n - 1)
            print(f"{engine:10} {workers:>7} {n:>6} {many:>8.2f} {one:>9.2f} {per_point * workers:>11.3f} "
                  f"{60 / per_point:>10.1f}")
    print("per point s = worker-seconds per point beyond cluster start-up ((wall - 1-point wall)/(n-1) x workers);")
    print("points/min = steady-state sweep throughput.")


if __name__ == "__main__":
    main()
