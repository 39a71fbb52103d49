"""The table of pairs the job analyses: its columns, the Dataset that holds it, and the DuckDB connection.

The table `pairs` has one row per request id:

    id, ts (epoch seconds), hour (0-23 UTC), segments MAP(VARCHAR, VARCHAR),
    features MAP(VARCHAR, BOOLEAN), primary_outcome, primary_status, primary_latency_ms,
    primary_prediction (JSON), primary_error, candidate_* the same, agree, abs_diff

dataset.load fills it from record files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ..contract.records import ROLES
from ..contract.report import DataProblem
from .cycle import bucket_sql

TABLE = "pairs"
# Per role: the table has `<role>_<name>` for each of these.
SIDE_TYPES = {
    "outcome": "VARCHAR",
    "status": "INTEGER",
    "latency_ms": "DOUBLE",
    "prediction": "JSON",
    "error": "VARCHAR",
}
SIDE_COLUMNS = tuple(SIDE_TYPES)
COLUMNS = (
    "id",
    "ts",
    "hour",
    "segments",
    "features",
    *(f"{role}_{name}" for role in ROLES for name in SIDE_COLUMNS),
    "agree",
    "abs_diff",
)


@dataclass
class Dataset:
    """The pairs of one ShadowDeployment in an in-memory DuckDB, and what was wrong with the input."""

    con: duckdb.DuckDBPyConnection
    shadow: str
    regression: bool
    files: list[Path] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)
    total_lines: int = 0  # non-blank lines in every readable file
    pairs: int = 0  # rows of the table: pairs after joining, without excluded records
    table: str = TABLE

    def time_range(self) -> tuple[float | None, float | None]:
        """Timestamps of the first and the last pair."""
        first, last = self.con.execute(f"SELECT min(ts), max(ts) FROM {self.table}").fetchone()
        return first, last

    def hours_seen(self, hours: int) -> set[int]:
        """The hour buckets of a `hours`-long business cycle (cycle.py) holding at least one pair."""
        rows = self.con.execute(
            f"SELECT DISTINCT {bucket_sql('ts', hours)} FROM {self.table} WHERE isfinite(ts)"
        ).fetchall()
        return {bucket for (bucket,) in rows}

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a thread per core this process may use.

    DuckDB's own default already counts the cores and honours a cgroup CPU quota (the Job's
    limit); the CPU affinity can only lower it.
    """
    con = duckdb.connect(config={"preserve_insertion_order": False})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < con.execute("SELECT current_setting('threads')").fetchone()[0]:
        con.execute(f"SET threads = {cores}")
    return con
