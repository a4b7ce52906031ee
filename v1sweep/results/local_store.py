"""Read a local sqlite MLflow store directly (read-only SQL), for `v1sweep status` / `best`.

Why: a CLI query of a local store spent almost all its time importing MLflow (its SQLAlchemy store
pulls in the GenAI, dataset and pandas modules: ~3 s of CPU here, tens of seconds on a cold first
call while Python compiles and reads ~2,000 modules), while the query itself takes milliseconds.
This module answers the few questions those commands ask (the sweep's parent runs, their trial
child runs with tags, params and latest metrics) with the standard library's `sqlite3`.

It reads the tables MLflow has kept since 1.x (`experiments`, `runs`, `tags`, `params`,
`latest_metrics`); when any is missing or shaped differently, `open_store` returns None and the
caller uses MLflow's client as before. Runs come back as small objects with the attributes of
MLflow's `Run` the query module reads (``run.info.run_id`` ..., ``run.data.tags/params/metrics``).
It never writes: the database is opened with ``mode=ro``.
"""
from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from v1sweep.results.store import sqlite_path

_NEEDED = {"experiments": {"experiment_id", "name", "lifecycle_stage"},
           "runs": {"run_uuid", "name", "status", "start_time", "end_time", "lifecycle_stage", "experiment_id"},
           "tags": {"key", "value", "run_uuid"}, "params": {"key", "value", "run_uuid"},
           "latest_metrics": {"key", "value", "is_nan", "run_uuid"}}


def open_store(uri: str) -> "LocalStore | None":
    """A reader for a sqlite store with MLflow's known schema, else None (use MLflow's client)."""
    path = sqlite_path(uri)
    if path is None or not Path(path).is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=10)
        for table, columns in _NEEDED.items():
            have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
            if not columns <= have:
                con.close()
                return None
    except sqlite3.Error:
        return None
    return LocalStore(con)


class LocalStore:
    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def close(self) -> None:
        self.con.close()

    def experiment_id(self, name: str) -> str | None:
        row = self.con.execute("SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'",
                               (name,)).fetchone()
        return str(row[0]) if row else None

    def runs_tagged(self, tags: dict[str, str], experiment_ids: Sequence[str] | None = None) -> list:
        """Active runs carrying every (key, value) in `tags`, newest first, as Run-like objects."""
        sql = ["SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
               "WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'"]
        args: list[Any] = []
        for key, value in tags.items():
            sql.append("AND EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ?)")
            args += [key, value]
        if experiment_ids is not None:
            sql.append(f"AND r.experiment_id IN ({','.join('?' * len(experiment_ids))})")
            args += [int(e) for e in experiment_ids]
        sql.append("ORDER BY r.start_time DESC")
        ids = [row[0] for row in self.con.execute(" ".join(sql), args)]
        return self.runs(ids)

    def runs(self, run_ids: Sequence[str]) -> list:
        """Run-like objects for `run_ids` (missing or deleted ones are left out), in that order."""
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        info = {row[0]: row for row in self.con.execute(
            f"SELECT run_uuid, name, status, start_time, end_time, experiment_id FROM runs "
            f"WHERE run_uuid IN ({marks}) AND lifecycle_stage = 'active'", list(run_ids))}
        tags = self._pairs("tags", marks, run_ids)
        params = self._pairs("params", marks, run_ids)
        metrics: dict[str, dict[str, float]] = {}
        for rid, key, value, is_nan in self.con.execute(
                f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({marks})", list(run_ids)):
            metrics.setdefault(rid, {})[key] = math.nan if is_nan else float(value)
        out = []
        for rid in run_ids:
            if rid not in info:
                continue
            _, name, status, start, end, exp = info[rid]
            out.append(SimpleNamespace(
                info=SimpleNamespace(run_id=rid, run_name=name, status=status, start_time=start, end_time=end,
                                     experiment_id=str(exp)),
                data=SimpleNamespace(tags=tags.get(rid, {}), params=params.get(rid, {}),
                                     metrics=metrics.get(rid, {}))))
        return out

    def _pairs(self, table: str, marks: str, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for rid, key, value in self.con.execute(
                f"SELECT run_uuid, key, value FROM {table} WHERE run_uuid IN ({marks})", list(run_ids)):
            found.setdefault(rid, {})[key] = value
        return found
