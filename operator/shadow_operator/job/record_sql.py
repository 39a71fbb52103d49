"""The SQL that reads record lines: each line's normalised columns and its kind (pair, one-sided, or why not used).

Every line of every file lands in the staging table `_records` (create_records_table), a row a
line, through one `read_json` with explicit columns (select_from_json); the row's `kind` says
what it is. A line DuckDB cannot parse comes back as a row of NULLs, which corrupt_sql marks
corrupt, so it is counted, never lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from ..contract.records import CANDIDATE_IMAGE, COMPARED, RECEIVED, RECORD_VERSION, RECORDER_ROLES, ROLES
from .pairs import SIDE_COLUMNS, SIDE_TYPES

FUTURE_TOLERANCE_SECONDS = 300.0  # a timestamp further ahead of `now` is clock skew
# A timestamp (`ts`, `received`) before the Unix epoch, like one not finite, is a corrupt record:
# no writer's clock says 1969, and -1e308 would overflow every duration computed from it.
MIN_TIMESTAMP = 0.0

_SIDE_TYPE = f"STRUCT({', '.join(f'{name} {type_}' for name, type_ in SIDE_TYPES.items())})"
JSON_COLUMNS = {
    "v": "BIGINT",
    "shadow": "VARCHAR",
    "id": "VARCHAR",
    "ts": "DOUBLE",
    "role": "VARCHAR",
    "segments": "MAP(VARCHAR, VARCHAR)",
    "features": "MAP(VARCHAR, BOOLEAN)",
    "primary": _SIDE_TYPE,
    "candidate": _SIDE_TYPE,
    "result": _SIDE_TYPE,
    "agree": "BOOLEAN",
    "abs_diff": "DOUBLE",
    CANDIDATE_IMAGE: "VARCHAR",
    RECEIVED: "DOUBLE",
    COMPARED: "VARCHAR",
}


class Kind:
    """Values of the staging table's `kind`: everything but PAIR and ONE_SIDED is a problem to count."""

    PAIR = "pair"
    ONE_SIDED = "one"
    CORRUPT = "corrupt"
    FOREIGN = "foreign"
    FUTURE = "future"
    DUPLICATE = "duplicate"  # a one-sided record repeating an id and role
    # Answered before the judged candidate rolled out, or by another candidate image: not its evidence.
    EARLIER = "earlier"
    # The other comparison's records (the baseline's when judging the candidate, and the other way round).
    OTHER_COMPARISON = "other_comparison"


@dataclass(frozen=True)
class Judged:
    """Which records are the judged candidate's evidence: its image, from `since` on (None: any)."""

    candidate_image: str | None = None
    since: float | None = None
    against: str = "candidate"

    def not_evidence(self) -> str:
        """SQL WHEN clauses marking rows that are not this candidate's evidence."""
        other = next(role for role in RECORDER_ROLES[1:] if role != self.against)
        if self.against == "candidate":  # the usual case stays one cheap test per row
            clauses = f"WHEN {COMPARED} IS NOT NULL AND {COMPARED} <> 'candidate' THEN '{Kind.OTHER_COMPARISON}' "
        else:
            clauses = (
                f"WHEN role IS NULL AND {COMPARED} IS DISTINCT FROM {quote(self.against)} "
                f"THEN '{Kind.OTHER_COMPARISON}' "
            )
        clauses += f"WHEN role = {quote(other)} THEN '{Kind.OTHER_COMPARISON}' "
        if self.candidate_image:
            clauses += f"WHEN {CANDIDATE_IMAGE} <> {quote(self.candidate_image)} THEN '{Kind.EARLIER}' "
        if self.since is not None:
            # By arrival: with eventTimePath, ts is the request's own time (a replayed week, say).
            clauses += f"WHEN coalesce({RECEIVED}, ts) < {self.since!r} THEN '{Kind.EARLIER}' "
        return clauses


def create_records_table(con: duckdb.DuckDBPyConnection) -> None:
    """The table every line lands in; it becomes `pairs` once only pairs are left."""
    side_columns = ", ".join(f"{role}_{name} {type_}" for role in ROLES for name, type_ in SIDE_TYPES.items())
    con.execute(
        f"CREATE OR REPLACE TABLE _records (id VARCHAR, ts DOUBLE, hour INTEGER, "
        f"segments MAP(VARCHAR, VARCHAR), features MAP(VARCHAR, BOOLEAN), {side_columns}, "
        f"agree BOOLEAN, abs_diff DOUBLE, kind VARCHAR, role VARCHAR, shadow VARCHAR, file_idx INTEGER)"
    )


def select_from_json(file_idx: str, shadow: str, now: float, judged: Judged) -> str:
    """Rows from a read_json over `$files`: normalised columns, the row's kind, and its file's index."""
    sides = []
    for role in ROLES:
        written = judged.against if role == "candidate" else role  # the baseline's answers stand in
        for name in SIDE_COLUMNS:
            sides.append(
                f"CASE WHEN role IS NULL THEN \"{role}\".{name} WHEN role = '{written}' THEN result.{name} END "
                f"AS {role}_{name}"
            )
    kind = (
        f"CASE WHEN {corrupt_sql()} THEN '{Kind.CORRUPT}' WHEN shadow <> {quote(shadow)} THEN '{Kind.FOREIGN}' "
        f"{judged.not_evidence()}WHEN role IS NOT NULL THEN '{Kind.ONE_SIDED}' "
        f"WHEN ts > {now + FUTURE_TOLERANCE_SECONDS!r} THEN '{Kind.FUTURE}' ELSE '{Kind.PAIR}' END"
    )
    return (
        f"SELECT id, ts, {_hour('ts')} AS hour, coalesce(segments, MAP {{}}) AS segments, "
        f"coalesce(features, MAP {{}}) AS features, {', '.join(sides)}, agree, abs_diff, "
        f"{kind} AS kind, CASE WHEN role = {quote(judged.against)} THEN 'candidate' ELSE role END AS role, "
        f"CASE WHEN kind = '{Kind.FOREIGN}' THEN shadow END, {file_idx} AS file_idx "
        f"FROM read_json($files, format = 'newline_delimited', ignore_errors = true, filename = true, "
        f"columns = {JSON_COLUMNS!r})"
    )


def corrupt_sql() -> str:
    """SQL over read_json's columns: true for a line that is no record (the `corrupt` kind)."""
    return (
        f"v IS DISTINCT FROM {RECORD_VERSION} OR shadow IS NULL OR id IS NULL OR ts IS NULL OR NOT isfinite(ts) OR "
        f"ts < {MIN_TIMESTAMP!r} OR coalesce(NOT isfinite({RECEIVED}) OR {RECEIVED} < {MIN_TIMESTAMP!r}, false) OR "
        f'CASE WHEN role IS NULL THEN "primary".outcome IS NULL OR candidate.outcome IS NULL '
        f"ELSE role NOT IN {tuple(RECORDER_ROLES)} OR result.outcome IS NULL END"
    )


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _hour(ts: str) -> str:
    return f"CASE WHEN isfinite({ts}) THEN CAST(((floor({ts} / 3600) % 24) + 24) % 24 AS INTEGER) END"
