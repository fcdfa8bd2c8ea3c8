"""The record of one run: parameters, metrics, claim verdicts and provenance.

A notebook ends its run with ``claims = finish(cfg, result)``: that judges the study's CLAIMS on the result, glues
each verdict and value for the prose (myst-nb), and, when the runner asked for it through the ``NNSENS_RECORD``
environment variable, writes the record as a JSON sidecar in the kernel's working directory. The runner reads the
sidecar back and adds what only it knows (git state, cache key, wall time) before storing it.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

RECORD_ENV = "NNSENS_RECORD"
TRACKED_PACKAGES = ("nnsens", "torch", "numpy", "scipy", "captum", "SALib", "scikit-learn", "mnist1d", "papermill")


def _round(x: Any, digits: int = 3) -> Any:
    """Round a float to ``digits`` significant digits (what the claims table shows and nbval compares)."""
    if isinstance(x, float) and math.isfinite(x) and x != 0:
        return float(f"{x:.{digits}g}")
    return x


def judge(claims: Any, result: Any) -> list[dict[str, Any]]:
    """Evaluate each claim check on ``result``: a list of ``{claim, statement, value, threshold, verdict, note}``."""
    rows = []
    for claim in claims:
        v = claim.check(result)
        rows.append(
            {
                "claim": claim.name,
                "statement": claim.statement,
                "value": float(v.value),
                "threshold": v.threshold,
                "verdict": v.verdict,
                "note": v.note,
            }
        )
    return rows


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on (absent ones are skipped)."""
    return dict(_package_versions())


@lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    # ~55 ms of metadata look-ups: once per process (installed versions do not change under a running process)
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_state(root: Path) -> dict[str, Any]:
    """Commit hash and dirty flag of the checkout at ``root`` (``None`` outside git)."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        dirty = bool(git("status", "--porcelain", "--", "src", "notebooks"))
        return {"commit": git("rev-parse", "HEAD"), "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def build_record(cfg: Any, result: Any) -> dict[str, Any]:
    """The run's record as a JSON-ready dict, built where the study ran (notebook or direct engine)."""
    from nnsens.study import resolve_device, study_id_of

    module = importlib.import_module(type(cfg).__module__)
    study_id = study_id_of(type(cfg))
    metrics = {k: float(v) for k, v in getattr(result, "metrics", {}).items()}
    return {
        "study": study_id,
        "params": cfg.to_params(),
        "metrics": metrics,
        "claims": judge(module.CLAIMS, result),
        "provenance": {
            "device": str(resolve_device(cfg.device)),
            "seed": cfg.seed,
            "packages": package_versions(),
        },
    }


def finish(cfg: Any, result: Any) -> Any:
    """Judge the claims, glue them for the prose, write the sidecar if asked; return the claims table.

    The table (claim, rounded value, threshold, verdict) is the cell output nbval compares.
    """
    import pandas as pd

    record = build_record(cfg, result)
    target = os.environ.get(RECORD_ENV)
    if target:
        Path(target).write_text(json.dumps(record, indent=1, default=str))
    try:
        from myst_nb import glue
    except ImportError:  # outside a book build environment: glue is optional
        glue = None
    if glue is not None:
        for row in record["claims"]:
            glue(f"{row['claim']}_verdict", row["verdict"], display=False)
            glue(f"{row['claim']}_value", _round(row["value"]), display=False)
        for name, value in record["metrics"].items():
            glue(f"metric_{name}", _round(value), display=False)
    table = pd.DataFrame(
        [{k: _round(r[k]) if k == "value" else r[k] for k in ("claim", "value", "threshold", "verdict")}
         for r in record["claims"]]
    )
    return table.set_index("claim")
