"""Parameter sweeps on Dask: a grid of runs of one study, resumable, failure-isolated, stored as they arrive.

A grid is the product of axes; an axis is ``name=v1,v2,...`` (a value list) or ``name=a:b[:step]`` (the integers
``range(a, b, step)``: ``poke_exponent=1:8`` is 1, 2, ..., 7). Every point is validated before anything runs. Each
point is one run through the runner's code path (:func:`nnsens.runner.produce`) inside a Dask worker, with the
``papermill`` engine (a fresh kernel and an executed notebook per point) or the ``direct`` engine (the study's
``run(cfg)`` in the warm worker, the same record without a notebook). Workers return records; the driver writes
each to the store the moment it arrives, so killing the driver loses nothing that finished.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nnsens import registry, runner
from nnsens.store import Store


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: its name, study, scale, grid axes and the run of each point."""

    name: str
    study: str
    scale: str
    axes: dict[str, list[Any]]
    fixed: dict[str, Any]
    engine: str
    points: list[runner.RunSpec] = field(repr=False)
    description: str = ""


@dataclass
class SweepSummary:
    """What a sweep did: points completed (run now or before), failed, and the errors of the failures."""

    name: str
    total: int
    skipped: int = 0
    completed: int = 0
    failed: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    wall_s: float = 0.0


def parse_axis(text: str) -> tuple[str, list[Any]]:
    """``"seed=0,1,2"`` → ``("seed", ["0", "1", "2"])``; ``"j=1:8"`` → ``("j", [1, ..., 7])``.

    Values of a list stay strings here; the study's Config types and checks them.
    """
    if "=" not in text:
        raise ValueError(f"A grid axis must be NAME=VALUES (a list a,b,c or an integer range a:b[:step]). "
                         f"Got {text!r} instead.")
    name, spec = (s.strip() for s in text.split("=", 1))
    return name, expand_values(name, spec)


def expand_values(name: str, spec: Any) -> list[Any]:
    """Expand one axis' values: a YAML list as is, ``"a:b[:step]"`` as an integer range, ``"a,b"`` as a list."""
    if isinstance(spec, list):
        values = spec
    elif isinstance(spec, str) and ":" in spec:
        try:
            bounds = [int(x) for x in spec.split(":")]
            if len(bounds) not in (2, 3) or (len(bounds) == 3 and bounds[2] == 0):
                raise ValueError
        except ValueError:
            raise ValueError(f"The grid axis {name!r} must be an integer range a:b or a:b:step (b excluded). "
                             f"Got {spec!r} instead.") from None
        values = list(range(*bounds))
    elif isinstance(spec, str):
        values = [v.strip() for v in spec.split(",")]
    else:
        values = [spec]
    if not values or any(v == "" for v in values):
        raise ValueError(f"The grid axis {name!r} has no values (or an empty one). Got {spec!r} instead.")
    return values


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a sweep file (``sweeps/<name>.yaml``): study, scale, grid, and optional params, engine, name."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"study", "scale", "grid", "params", "engine", "name", "description"}
    if unknown or "study" not in data or "grid" not in data:
        raise ValueError(f"The sweep file {path} needs 'study' and 'grid' (optional: scale, params, engine, name, "
                         f"description). Got keys {sorted(data)}.")
    data.setdefault("name", path.stem)
    return data


def plan(name: str, study: str, scale: str, axes: dict[str, list[Any]], *, fixed: dict[str, Any] | None = None,
         engine: str = "papermill", device: str | None = None, description: str = "") -> SweepPlan:
    """Expand and validate the whole grid before anything runs (same messages as ``nnsens run``)."""
    if engine not in runner.ENGINES:
        raise ValueError(f"The 'engine' parameter must be one of {', '.join(map(repr, runner.ENGINES))}. "
                         f"Got {engine!r} instead.")
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"The sweep name must be letters, digits, '-' or '_'. Got {name!r} instead.")
    fixed = dict(fixed or {})
    clash = set(fixed) & set(axes)
    if clash:
        raise ValueError(f"Parameters {sorted(clash)} are both swept and fixed; choose one.")
    scale = runner.resolve_scale(scale)
    names = list(axes)
    points = [
        runner.prepare(study, scale, {**fixed, **dict(zip(names, combo))}, device)
        for combo in itertools.product(*(axes[n] for n in names))
    ]
    typed_axes = {n: sorted({p.params[n] for p in points}, key=lambda v: (str(type(v)), v)) for n in names}
    return SweepPlan(name, registry.get(study).id, scale, typed_axes, fixed, engine, points, description)


def _run_point(spec: runner.RunSpec, engine: str, out: str | None, key: str, git: dict[str, Any]) -> dict[str, Any]:
    """Executed inside a Dask worker: one run, one thread, never raises for a study failure."""
    try:
        return runner.produce(spec, engine=engine, out=out, threads=1, key=key, git=git)
    except Exception as exc:  # a failure of the machinery itself is still a record
        import traceback

        return {"study": spec.study, "params": spec.params, "metrics": {}, "claims": [], "provenance": {},
                "scale": spec.scale, "cache_key": key, "notebook": None, "engine": engine,
                "started": time.time(), "finished": time.time(), "status": "failed",
                "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}


def _client(workers: int, scheduler: str | None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={k: "1" for k in runner.THREAD_VARS})
    return Client(cluster), cluster


def execute(sweep: SweepPlan, *, store: Store, workers: int = 2, scheduler: str | None = None,
            resume: bool = False, out_root: str | Path | None = None, resources: dict[str, float] | None = None,
            progress: bool = True) -> SweepSummary:
    """Run every point not yet completed on Dask and store each record as it arrives.

    Raises
    ------
    ValueError
        The sweep's name exists with another definition, or exists and ``resume`` is False.
    """
    from dask.distributed import as_completed
    from tqdm import tqdm

    from nnsens.record import git_state

    t0 = time.time()
    tree = runner.tree_hash()
    keys = [runner.cache_key(p, tree=tree) for p in sweep.points]
    git = git_state(registry.project_root())  # once for the sweep: the driver's checkout is what ran
    store.add_sweep(sweep.name, sweep.study, sweep.scale, sweep.engine,
                    {"axes": sweep.axes, "fixed": sweep.fixed, "description": sweep.description},
                    [p.params for p in sweep.points], keys,
                    resume=resume)
    summary = SweepSummary(sweep.name, len(sweep.points))
    todo = []
    for i, (spec, key) in enumerate(zip(sweep.points, keys)):
        hit = store.completed(key, engine="papermill" if sweep.engine == "papermill" else None)
        if hit is not None:
            store.link_sweep_run(sweep.name, i, hit["run_id"])
            summary.skipped += 1
        else:
            todo.append((i, spec, key))
    bar = tqdm(total=len(sweep.points), initial=summary.skipped, desc=f"sweep {sweep.name}", unit="run",
               disable=not progress)
    bar.set_postfix(done=summary.skipped, failed=0, left=len(todo))
    if todo:
        client, cluster = _client(workers, scheduler)
        try:
            futures = {}
            for i, spec, key in todo:
                out = str(Path(out_root) / f"{sweep.name}-{i:04d}") if out_root else None
                fut = client.submit(_run_point, spec, sweep.engine, out, key, git, pure=False, resources=resources)
                futures[fut] = (i, spec, key)
            for fut in as_completed(futures):
                i, spec, key = futures[fut]
                try:
                    record = fut.result()
                except Exception as exc:  # the worker died or the task was lost: record it and go on
                    record = {"study": spec.study, "params": spec.params, "scale": spec.scale, "cache_key": key,
                              "status": "failed", "engine": sweep.engine, "error": f"{type(exc).__name__}: {exc}",
                              "started": time.time(), "finished": time.time()}
                run_id = store.add(record)
                store.link_sweep_run(sweep.name, i, run_id)
                if record["status"] == "completed":
                    summary.completed += 1
                else:
                    first_line = (record.get("error") or "").strip().splitlines()[:1]
                    where = f" (partial notebook: {record['notebook']})" if record.get("notebook") else ""
                    summary.failed.append((spec.params, (first_line[0] if first_line else "") + where))
                bar.update(1)
                bar.set_postfix(done=summary.skipped + summary.completed, failed=len(summary.failed),
                                left=len(sweep.points) - bar.n)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    bar.close()
    summary.wall_s = time.time() - t0
    return summary


def describe(sweep: SweepPlan) -> str:
    """One line per axis and the grid's size, printed before a sweep starts."""
    axes = "; ".join(f"{n} = {json.dumps(v)}" for n, v in sweep.axes.items())
    return f"sweep {sweep.name}: {sweep.study} at {sweep.scale} scale, engine {sweep.engine}; {axes}; " \
           f"{len(sweep.points)} points"
