"""Shared fixtures: a sandboxed project root with the echo study registered as P99."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))


@pytest.fixture
def echo_project(tmp_path, monkeypatch):
    """NNSENS_ROOT = tmp_path with notebooks/P99_echo.ipynb; the registry knows P99; a fresh store."""
    import p99_echo

    from nnsens import registry

    (tmp_path / "notebooks").mkdir()
    p99_echo.write_notebook(tmp_path / "notebooks" / "P99_echo.ipynb")
    monkeypatch.setenv("NNSENS_ROOT", str(tmp_path))
    monkeypatch.setenv("NNSENS_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(registry.EXTRA_ENV, "P99=p99_echo")
    registry.catalog.cache_clear()
    yield tmp_path
    registry.catalog.cache_clear()
