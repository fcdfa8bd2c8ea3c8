"""The results store: one SQLite row per run (and one per claim verdict), safe for concurrent writers."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    study      TEXT NOT NULL,
    scale      TEXT NOT NULL,
    cache_key  TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('completed', 'failed')),
    params     TEXT NOT NULL,
    metrics    TEXT NOT NULL DEFAULT '{}',
    provenance TEXT NOT NULL DEFAULT '{}',
    notebook   TEXT,
    error      TEXT,
    engine     TEXT NOT NULL DEFAULT 'papermill',
    started    REAL NOT NULL,
    finished   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_key ON runs (cache_key, status);
CREATE TABLE IF NOT EXISTS claims (
    run_id    INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    claim     TEXT NOT NULL,
    statement TEXT NOT NULL,
    value     REAL,
    threshold TEXT,
    verdict   TEXT NOT NULL,
    note      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS claims_run ON claims (run_id);
"""


class Store:
    """SQLite results store at ``path`` (created on first use).

    Each write is one short transaction, so a sweep's driver can store records as they arrive and a crash never
    loses a finished one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=60)
        con.row_factory = sqlite3.Row
        try:
            with con:
                yield con
        finally:
            con.close()

    def add(self, record: dict[str, Any]) -> int:
        """Insert a run record (see :mod:`nnsens.runner`); return its ``run_id``."""
        now = time.time()
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO runs (study, scale, cache_key, status, params, metrics, provenance, notebook, error,"
                " engine, started, finished) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record["study"],
                    record["scale"],
                    record["cache_key"],
                    record["status"],
                    json.dumps(record["params"], sort_keys=True),
                    json.dumps(record.get("metrics", {})),
                    json.dumps(record.get("provenance", {}), default=str),
                    record.get("notebook"),
                    record.get("error"),
                    record.get("engine", "papermill"),
                    record.get("started", now),
                    record.get("finished", now),
                ),
            )
            run_id = int(cur.lastrowid)
            con.executemany(
                "INSERT INTO claims (run_id, claim, statement, value, threshold, verdict, note) VALUES (?,?,?,?,?,?,?)",
                [
                    (run_id, c["claim"], c["statement"], c["value"], str(c["threshold"]), c["verdict"],
                     c.get("note", ""))
                    for c in record.get("claims", [])
                ],
            )
        return run_id

    def completed(self, cache_key: str, engine: str | None = None) -> dict[str, Any] | None:
        """The latest completed run with ``cache_key`` (and ``engine``, if given), or None."""
        sql = "SELECT run_id FROM runs WHERE cache_key = ? AND status = 'completed'"
        args: list[Any] = [cache_key]
        if engine:
            sql, args = sql + " AND engine = ?", [*args, engine]
        with self._connect() as con:
            row = con.execute(sql + " ORDER BY run_id DESC LIMIT 1", args).fetchone()
        return None if row is None else self.get(int(row["run_id"]))

    def get(self, run_id: int) -> dict[str, Any]:
        """One run with its claims, JSON columns decoded."""
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"No run with run_id={run_id} in {self.path}.")
            claims = con.execute("SELECT * FROM claims WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
        out = dict(row)
        for k in ("params", "metrics", "provenance"):
            out[k] = json.loads(out[k])
        out["claims"] = [{k: c[k] for k in c.keys() if k != "run_id"} for c in claims]
        return out

    def runs(self, study: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """All runs (optionally of one study and/or status), oldest first."""
        sql, args = "SELECT run_id FROM runs WHERE 1=1", []
        if study:
            sql, args = sql + " AND study = ?", [*args, study]
        if status:
            sql, args = sql + " AND status = ?", [*args, status]
        with self._connect() as con:
            ids = [r[0] for r in con.execute(sql + " ORDER BY run_id", args)]
        return [self.get(i) for i in ids]

    def best(self, study: str) -> dict[str, Any] | None:
        """The run a study's chapter and ledger show: the latest completed one at the largest scale."""
        rank = {"paper": 2, "cpu": 1, "smoke": 0}
        done = self.runs(study, "completed")
        if not done:
            return None
        return max(done, key=lambda r: (rank.get(r["scale"], -1), r["finished"], r["run_id"]))
