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
CREATE TABLE IF NOT EXISTS sweeps (
    name       TEXT PRIMARY KEY,
    study      TEXT NOT NULL,
    scale      TEXT NOT NULL,
    engine     TEXT NOT NULL,
    definition TEXT NOT NULL,
    created    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_points (
    sweep     TEXT NOT NULL REFERENCES sweeps (name),
    point     INTEGER NOT NULL,
    params    TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    run_id    INTEGER REFERENCES runs (run_id),
    PRIMARY KEY (sweep, point)
);
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

    def add_sweep(self, name: str, study: str, scale: str, engine: str, definition: dict[str, Any],
                  params: list[dict[str, Any]], keys: list[str], *, resume: bool = False) -> None:
        """Register a sweep and its points; an existing name must be resumed, with the same definition."""
        spec = json.dumps({"study": study, "scale": scale, "definition": definition}, sort_keys=True, default=str)
        with self._connect() as con:
            row = con.execute("SELECT study, scale, definition FROM sweeps WHERE name = ?", (name,)).fetchone()
            if row is not None:
                old = json.dumps({"study": row["study"], "scale": row["scale"],
                                  "definition": json.loads(row["definition"])}, sort_keys=True, default=str)
                if old != spec:
                    raise ValueError(f"A sweep named {name!r} exists with another definition; choose another name.")
                if not resume:
                    raise ValueError(f"A sweep named {name!r} exists; pass --resume to complete it.")
                return
            con.execute("INSERT INTO sweeps VALUES (?,?,?,?,?,?)",
                        (name, study, scale, engine, json.dumps(definition, default=str), time.time()))
            rows = [(name, i, json.dumps(p, sort_keys=True), k) for i, (p, k) in enumerate(zip(params, keys))]
            con.executemany("INSERT INTO sweep_points (sweep, point, params, cache_key) VALUES (?,?,?,?)", rows)

    def link_sweep_run(self, name: str, point: int, run_id: int) -> None:
        """Tie a sweep's point to the run that answers it (the latest one)."""
        with self._connect() as con:
            con.execute("UPDATE sweep_points SET run_id = ? WHERE sweep = ? AND point = ?", (run_id, name, point))

    def sweep(self, name: str) -> dict[str, Any]:
        """A sweep's definition and its points, each with its run (or None when not yet run)."""
        with self._connect() as con:
            row = con.execute("SELECT * FROM sweeps WHERE name = ?", (name,)).fetchone()
            if row is None:
                names = [r[0] for r in con.execute("SELECT name FROM sweeps ORDER BY name")]
                raise KeyError(f"No sweep named {name!r} in {self.path}. Known sweeps: {', '.join(names) or 'none'}.")
            points = con.execute("SELECT * FROM sweep_points WHERE sweep = ? ORDER BY point", (name,)).fetchall()
        out = dict(row)
        out["definition"] = json.loads(out["definition"])
        out["points"] = [{"point": p["point"], "params": json.loads(p["params"]),
                          "run": self.get(p["run_id"]) if p["run_id"] is not None else None} for p in points]
        return out

    def sweeps(self) -> list[str]:
        """Names of all sweeps in the store."""
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT name FROM sweeps ORDER BY name")]

    def best(self, study: str) -> dict[str, Any] | None:
        """The run a study's chapter and ledger show: the latest completed one at the largest scale."""
        rank = {"paper": 2, "cpu": 1, "smoke": 0}
        done = self.runs(study, "completed")
        if not done:
            return None
        return max(done, key=lambda r: (rank.get(r["scale"], -1), r["finished"], r["run_id"]))
