"""Run one study: validate its parameters, execute its notebook with papermill, store the record.

Flow: registry entry → PRESETS[scale] updated by overrides → every value validated (before any kernel starts) →
cache key → papermill into the output folder → JSON sidecar read back → one row in the results store.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nnsens import registry
from nnsens.record import RECORD_ENV, build_record, git_state
from nnsens.store import Store
from nnsens.study import validate_params

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class RunFailed(RuntimeError):
    """A study's notebook raised: carries the stored record (with the partial notebook's path)."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class RunSpec:
    """A validated run: which study, at which scale, with which full parameter set."""

    study: str
    scale: str
    params: dict[str, Any]

    @property
    def entry(self) -> registry.StudyEntry:
        return registry.get(self.study)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imported lazily: the CLI starts faster without torch)."""
    import torch

    return torch.cuda.is_available()


def resolve_scale(scale: str) -> str:
    """``"auto"`` is ``paper`` when CUDA is found, else ``cpu``; other names must be a known scale."""
    if scale == "auto":
        return "paper" if cuda_available() else "cpu"
    if scale not in registry.SCALES:
        raise ValueError(f"The 'scale' parameter must be one of 'auto', {', '.join(map(repr, registry.SCALES))}. "
                         f"Got {scale!r} instead.")
    return scale


def prepare(study: str, scale: str = "cpu", overrides: dict[str, Any] | None = None,
            device: str | None = None) -> RunSpec:
    """Resolve and validate a run before anything executes.

    Raises
    ------
    ValueError
        Unknown study, scale or parameter name, or a value of the wrong type or out of range; the message names
        the parameter and says what is valid.
    """
    entry = registry.get(study)
    if not entry.implemented:
        raise ValueError(f"Study {entry.id} ({entry.title}) is not implemented yet; `nnsens list` shows which are.")
    scale = resolve_scale(scale)
    module = entry.load()
    overrides = dict(overrides or {})
    if device is not None:
        overrides["device"] = device
    checked = validate_params(entry.id, module.Config, overrides)
    params = {**module.PRESETS[scale].to_params(), **checked}
    cfg = module.Config(**params)  # cross-field validation happens here too
    return RunSpec(entry.id, scale, cfg.to_params())


def _notebook_source_hash(path: Path) -> str:
    """Hash of the notebook's cell sources only (outputs and metadata do not change what runs)."""
    cells = json.loads(path.read_text())["cells"]
    return hashlib.sha256(json.dumps([(c["cell_type"], "".join(c["source"])) for c in cells]).encode()).hexdigest()


def tree_hash() -> str:
    """Hash of the ``nnsens`` source tree (every .py and data file in the package)."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".csv", ".yaml", ".json") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _pins() -> list[str]:
    try:
        return sorted(metadata.requires("nnsens") or [])
    except metadata.PackageNotFoundError:
        return []


def cache_key(spec: RunSpec, *, tree: str | None = None) -> str:
    """Hash of (notebook source, scale, parameters, resolved device, nnsens source tree, dependency pins).

    ``tree`` is the source tree's hash when the caller already has it (a sweep hashes the tree once for all points).
    """
    from nnsens.study import resolve_device

    nb = spec.entry.notebook
    parts = {
        "notebook": _notebook_source_hash(nb) if nb and nb.exists() else "",
        "scale": spec.scale,
        "params": spec.params,
        "device": str(resolve_device(spec.params["device"])),
        "tree": tree or tree_hash(),
        "pins": _pins(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def default_store() -> Store:
    """The store at ``NNSENS_STORE`` or ``results/nnsens.sqlite`` under the project root."""
    return Store(os.environ.get("NNSENS_STORE") or registry.project_root() / "results" / "nnsens.sqlite")


def provenance(spec: RunSpec, key: str, engine: str, wall: float,
               git: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the driver adds to a record: git state (``git``, or read now), scale, cache key, engine, wall time,
    host."""
    import platform

    return {**(git or git_state(registry.project_root())), "scale": spec.scale, "cache_key": key, "engine": engine,
            "wall_time_s": round(wall, 3), "host": platform.node()}


ENGINES = ("papermill", "direct")


def produce(spec: RunSpec, *, engine: str = "papermill", out: str | Path | None = None,
            threads: int | None = None, key: str | None = None, git: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """Execute ``spec`` and return its record, without touching any store; a failure is a record too.

    ``engine="papermill"`` executes the study's notebook in a fresh kernel; ``engine="direct"`` calls the study's
    ``run(cfg)`` in this process (warm imports, no notebook) and builds the same record. This is what a sweep's
    workers call; the driver stores what they return (and reads the git state once, passing it as ``git``).
    """
    if engine not in ENGINES:
        raise ValueError(f"The 'engine' parameter must be one of {', '.join(map(repr, ENGINES))}. Got {engine!r}.")
    key = key or cache_key(spec)
    started = time.time()
    if engine == "papermill":
        record, error, notebook = _run_papermill(spec, key, out, threads)
    else:
        record, error, notebook = _run_direct(spec, threads)
    finished = time.time()
    if record is None:
        record = {"study": spec.study, "params": spec.params, "metrics": {}, "claims": [], "provenance": {}}
    record.update(scale=spec.scale, cache_key=key, notebook=notebook, engine=engine, started=started,
                  finished=finished, status="failed" if error else "completed", error=error)
    record["provenance"] = {**record.get("provenance", {}),
                            **provenance(spec, key, engine, finished - started, git)}
    return record


def _run_papermill(spec: RunSpec, key: str, out: str | Path | None,
                   threads: int | None) -> tuple[dict | None, str | None, str]:
    import papermill as pm

    from nnsens import papermill_literal

    papermill_literal.install()
    entry = spec.entry
    runs = registry.project_root() / "results" / "runs"
    outdir = Path(out) if out else runs / entry.slug / f"{spec.scale}-{key[:12]}"
    outdir.mkdir(parents=True, exist_ok=True)
    nb_out = (outdir / f"{entry.slug}.ipynb").resolve()
    sidecar = (outdir / "record.json").resolve()
    sidecar.unlink(missing_ok=True)
    # The kernel inherits this process's environment: where to write the sidecar, how many threads to use.
    env_before = {k: os.environ.get(k) for k in (RECORD_ENV, *THREAD_VARS)}
    os.environ[RECORD_ENV] = str(sidecar)
    if threads:
        for k in THREAD_VARS:
            os.environ[k] = str(threads)
    error = None
    try:
        for _attempt in range(KERNEL_START_ATTEMPTS):
            try:
                pm.execute_notebook(str(entry.notebook), str(nb_out), parameters=spec.params, cwd=str(outdir),
                                    kernel_name="python3", progress_bar=False, log_output=False)
                error = None
                break
            except Exception as exc:  # papermill's PapermillExecutionError carries the failing cell's error
                error = _describe_error(exc)
                if not _kernel_start_failure(exc):
                    break
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    record = None
    if error is None:
        if sidecar.exists():
            record = json.loads(sidecar.read_text())
        else:
            error = "The notebook finished without writing its record (does it call nnsens.record.finish?)."
    return record, error, str(nb_out)


def _run_direct(spec: RunSpec, threads: int | None) -> tuple[dict | None, str | None, None]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    module = spec.entry.load()
    try:
        cfg = module.Config(**spec.params)
        return build_record(cfg, module.run(cfg)), None, None
    except Exception:
        return None, traceback.format_exc(), None


def execute(spec: RunSpec, *, engine: str = "papermill", out: str | Path | None = None, force: bool = False,
            store: Store | None = None, threads: int | None = None) -> dict[str, Any]:
    """Execute ``spec`` (unless an identical completed run is stored) and store its record.

    A papermill run is only satisfied by a stored papermill run (it must leave a notebook); a direct run by
    either. Returns the stored record (``record["cached"]`` is True for a cache hit); raises :class:`RunFailed` after
    storing a failure, with the partial notebook's path and the failing cell's error in its message.
    """
    store = store or default_store()
    key = cache_key(spec)
    hit = None if force else store.completed(key, engine="papermill" if engine == "papermill" else None)
    if hit is not None:
        hit["cached"] = True
        return hit
    record = produce(spec, engine=engine, out=out, threads=threads, key=key)
    record["run_id"] = store.add(record)
    if record["error"]:
        where = f"; partial notebook: {record['notebook']}" if record["notebook"] else ""
        raise RunFailed(f"{spec.study} failed{where}\n{record['error']}", record)
    return record


KERNEL_START_ATTEMPTS = 3
"""A kernel that dies before its first reply is started again: two kernels started at once on one machine can
pick the same free TCP port (jupyter_client's race, seen here as ZMQError 'Address already in use'). A notebook
whose cell fails is never rerun."""


def _kernel_start_failure(exc: BaseException) -> bool:
    """Did the kernel die while starting (no cell has run), rather than a cell raising?"""
    return isinstance(exc, RuntimeError) and "Kernel died before replying to kernel_info" in str(exc)


def _describe_error(exc: Exception) -> str:
    """The failing cell's exception and traceback, as plain text."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        import re

        tb = "\n".join(getattr(exc, "traceback", []) or [])
        tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)  # strip ANSI colours
        return f"{ename}: {evalue}\n{tb}".strip()
    return f"{type(exc).__name__}: {exc}"
