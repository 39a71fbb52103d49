"""Load record files into DuckDB: one normalised table of pairs, and every data problem met on the way.

The fast path is a single `read_json` over all files with explicit columns: DuckDB parses the
lines in parallel, and a line it cannot parse (not JSON, truncated, not an object, invalid
UTF-8) comes back as a row of NULLs, so it is counted, never lost. Lines are also counted
with a cheap byte scan; Python reads a file line by line only when something in it is wrong,
to name an example line in the problem's message.

The table `pairs` has one row per request id:

    id, ts (epoch seconds), hour (0-23 UTC), segments MAP(VARCHAR, VARCHAR),
    features MAP(VARCHAR, BOOLEAN), primary_outcome, primary_status, primary_latency_ms,
    primary_prediction (JSON), primary_error, candidate_* the same, agree, abs_diff

Pair records go straight in; one-sided records are joined by id (primary + candidate).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from ..contract.records import (
    CANDIDATE_IMAGE,
    COMPARED,
    OK,
    RECEIVED,
    RECORD_SUFFIX,
    RECORD_VERSION,
    RECORDER_ROLES,
    ROLES,
)
from ..contract.report import CLOCK_SKEW, CORRUPT_RECORD, FOREIGN_RECORD, UNPAIRED_RECORD, DataProblem
from .cycle import bucket_sql

TABLE = "pairs"
FUTURE_TOLERANCE_SECONDS = 300.0  # a timestamp further ahead of `now` is clock skew
# A timestamp (`ts`, `received`) before the Unix epoch, like one not finite, is a corrupt record:
# no writer's clock says 1969, and -1e308 would overflow every duration computed from it.
MIN_TIMESTAMP = 0.0
PAIR_SKEW_SECONDS = 60.0  # the two sides of a one-sided join further apart are clock skew
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

_SIDE_TYPE = f"STRUCT({', '.join(f'{name} {type_}' for name, type_ in SIDE_TYPES.items())})"
_JSON_COLUMNS = {
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
_CHUNK = 1 << 23
_EXCERPT = 80

# Kinds of rows in `_records`, the table every line lands in; everything but `pair` and `one` is a problem to count.
_PAIR, _ONE, _CORRUPT, _FOREIGN, _FUTURE = "pair", "one", "corrupt", "foreign", "future"
_DUPLICATE = "duplicate"  # a one-sided record repeating an id and role
# Answered before the judged candidate rolled out, or by another candidate image: not its evidence.
_EARLIER = "earlier"
# The other comparison's records (the baseline's when judging the candidate, and the other way round).
_OTHER_COMPARISON = "other_comparison"


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


def load(
    paths: Iterable[Path],
    shadow: str,
    now: float | None = None,
    regression: bool = False,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    candidate_image: str | None = None,
    since: float | None = None,
    against: str = "candidate",
) -> Dataset:
    """Read record files (or directories of `*.jsonl`) into the table `pairs`; never raises on bad input.

    `regression` decides how joined one-sided records are compared (absolute difference, not
    equality); pair records keep the `agree`/`abs_diff` their writer computed. With
    `candidate_image`, records another candidate image answered are left out (records without
    the field, from older writers, count). With `since`, records stamped before it are left out
    (the judged candidate had not rolled out yet; the router's records do not name the image).
    `against="baseline"` reads the noise baseline's answers as the candidate's (records.BASELINE).
    """
    now = time.time() if now is None else now
    con = con if con is not None else connect()
    files, unreadable = _expand([Path(p) for p in paths])
    lines: dict[Path, int] = {}
    for path in files:
        try:
            lines[path] = _count_lines(path)
        except OSError as exc:
            unreadable.append((path, exc))
    files = [p for p in files if p in lines]

    _create_records(con)
    failed = _insert(con, files, shadow, now, _Judged(candidate_image, since, against))
    unreadable += failed
    files = [p for p in files if p not in {path for path, _ in failed}]
    problems = [
        DataProblem(code=CORRUPT_RECORD, message=f"cannot read {path}: {_reason(exc)}") for path, exc in unreadable
    ]

    counts: dict[tuple[int, str], int] = {
        (file_idx, kind): n
        for file_idx, kind, n in con.execute("SELECT file_idx, kind, count(*) FROM _records GROUP BY ALL").fetchall()
    }
    total_lines, corrupt_per_file = _count_corrupt(files, lines, counts)
    problems += _corrupt_problem(files, corrupt_per_file)
    problems += _foreign_problem(con, files, counts)
    joined = any(kind == _ONE for _, kind in counts)
    if joined:
        problems += _join_one_sided(con, now, regression, files)
    problems += _future_problem(con, files, now, joined)
    problems += _finish(con, files, counts, joined)
    pairs = con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    return Dataset(
        con=con,
        shadow=shadow,
        regression=regression,
        files=files,
        problems=problems,
        total_lines=total_lines,
        pairs=pairs,
    )


def _count_corrupt(
    files: list[Path], lines: dict[Path, int], counts: dict[tuple[int, str], int]
) -> tuple[int, dict[int, int]]:
    """Non-blank lines in all files, and corrupt records per file index.

    DuckDB gives a row of NULLs for a line it cannot parse, so rows normally equal lines; where
    there are fewer rows (blank lines, or a DuckDB that skips bad lines), Python counts exactly.
    """
    rows_per_file = [0] * len(files)
    for (file_idx, _), n in counts.items():
        rows_per_file[file_idx] += n
    total_lines = 0
    corrupt: dict[int, int] = {}
    for idx, path in enumerate(files):
        rows, nonblank = rows_per_file[idx], lines[path]
        if rows < nonblank:
            nonblank = _scan(path).nonblank
        total_lines += max(nonblank, rows)  # more rows than lines: the file grew while read
        corrupt[idx] = counts.get((idx, _CORRUPT), 0) + max(nonblank - rows, 0)
    return total_lines, corrupt


def _corrupt_problem(files: list[Path], corrupt_per_file: dict[int, int]) -> list[DataProblem]:
    corrupt = sum(corrupt_per_file.values())
    if not corrupt:
        return []
    first = next(i for i, n in corrupt_per_file.items() if n)
    example = _scan(files[first], find_example=True).example
    where = f"{files[first]}:{example[0]}: {example[1]!r}" if example else str(files[first])
    in_files = sum(1 for n in corrupt_per_file.values() if n)
    return [
        DataProblem(
            code=CORRUPT_RECORD,
            count=corrupt,
            message=f"{corrupt} corrupt records in {in_files} file(s) were skipped (unparseable or truncated "
            f"lines, not a JSON object, wrong version, missing required keys or a timestamp that is not a time), "
            f"e.g. {where}",
        )
    ]


def _foreign_problem(
    con: duckdb.DuckDBPyConnection, files: list[Path], counts: dict[tuple[int, str], int]
) -> list[DataProblem]:
    foreign = sum(n for (_, kind), n in counts.items() if kind == _FOREIGN)
    if not foreign:
        return []
    other, file_idx = con.execute(f"SELECT shadow, file_idx FROM _records WHERE kind = '{_FOREIGN}' LIMIT 1").fetchone()
    return [
        DataProblem(
            code=FOREIGN_RECORD,
            count=foreign,
            message=f"{foreign} records written for another ShadowDeployment were excluded, "
            f"e.g. one for {other!r} in {files[file_idx]}",
        )
    ]


def _future_problem(con: duckdb.DuckDBPyConnection, files: list[Path], now: float, joined: bool) -> list[DataProblem]:
    source = "SELECT ts, file_idx, kind FROM _records"
    if joined:
        source += " UNION ALL SELECT ts, file_idx, kind FROM _joined"
    future, ts, file_idx = con.execute(
        f"SELECT count(*), any_value(ts), any_value(file_idx) FROM ({source}) WHERE kind = '{_FUTURE}'"
    ).fetchone()
    if not future:
        return []
    return [
        DataProblem(
            code=CLOCK_SKEW,
            count=future,
            message=f"{future} pairs more than {FUTURE_TOLERANCE_SECONDS:g}s in the future were excluded, "
            f"e.g. ts {ts!r} ({_seconds(ts - now)} ahead) in {files[file_idx]}",
        )
    ]


def _expand(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, Exception]]]:
    files: list[Path] = []
    unreadable: list[tuple[Path, Exception]] = []
    for path in paths:
        try:
            if path.is_dir():
                files += sorted(p for p in path.rglob(f"*{RECORD_SUFFIX}") if not p.is_dir())
            elif path.exists():
                files.append(path)
            else:
                unreadable.append((path, FileNotFoundError("no such file or directory")))
        except OSError as exc:
            unreadable.append((path, exc))
    seen: set[Path] = set()
    return [p for p in files if not (p in seen or seen.add(p))], unreadable


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]


def _count_lines(path: Path) -> int:
    """Lines in a file, the last one counted even without its newline (it is being written)."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


@dataclass
class _Scan:
    nonblank: int = 0
    example: tuple[int, str] | None = None  # line number (1-based) and an excerpt of a corrupt line


def _scan(path: Path, find_example: bool = False) -> _Scan:
    """Read one file line by line: the slow path, only for files where something is wrong.

    Counts non-blank lines, or (find_example) stops at the first corrupt line.
    """
    result = _Scan()
    try:
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                result.nonblank += 1
                if find_example and _corrupt(raw):
                    result.example = (number, raw[:_EXCERPT].decode("utf-8", "replace").rstrip("\r\n"))
                    break
    except OSError:
        pass
    return result


def _corrupt(raw: bytes) -> bool:
    """The Python twin of the SQL `kind` check, used only to name an example line."""
    try:
        record = json.loads(raw)
    except ValueError:
        return True
    except RecursionError:  # nested deeper than Python's json can go: DuckDB (no recursion) decides
        return _corrupt_in_duckdb(raw)
    if not isinstance(record, dict):
        return True
    try:
        if int(record.get("v")) != RECORD_VERSION:
            return True
        if not _timestamp_ok(float(record["ts"])):
            return True
        if record.get(RECEIVED) is not None and not _timestamp_ok(float(record[RECEIVED])):
            return True
    except (TypeError, ValueError, KeyError, OverflowError):
        return True
    if record.get("shadow") is None or record.get("id") is None:
        return True
    if record.get("role") is not None:
        return record["role"] not in RECORDER_ROLES or not _side_ok(record.get("result"))
    return not (_side_ok(record.get("primary")) and _side_ok(record.get("candidate")))


def _side_ok(side: Any) -> bool:
    return isinstance(side, dict) and isinstance(side.get("outcome"), str)


def _timestamp_ok(value: float) -> bool:
    return math.isfinite(value) and value >= MIN_TIMESTAMP


def _corrupt_in_duckdb(raw: bytes) -> bool:
    """`_corrupt` for a line Python cannot parse without recursing too deep: the SQL check itself, on that line."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"line{RECORD_SUFFIX}"
        path.write_bytes(raw.rstrip(b"\r\n") + b"\n")
        con = duckdb.connect()
        try:
            row = con.execute(
                f"SELECT {_corrupt_sql()} FROM read_json($files, format = 'newline_delimited', "
                f"ignore_errors = true, columns = {_JSON_COLUMNS!r})",
                {"files": [str(path)]},
            ).fetchone()
        except duckdb.Error:
            return True
        finally:
            con.close()
    return row is None or row[0] is not False


def _create_records(con: duckdb.DuckDBPyConnection) -> None:
    """The table every line lands in; it becomes `pairs` once only pairs are left."""
    side_columns = ", ".join(f"{role}_{name} {type_}" for role in ROLES for name, type_ in SIDE_TYPES.items())
    con.execute(
        f"CREATE OR REPLACE TABLE _records (id VARCHAR, ts DOUBLE, hour INTEGER, "
        f"segments MAP(VARCHAR, VARCHAR), features MAP(VARCHAR, BOOLEAN), {side_columns}, "
        f"agree BOOLEAN, abs_diff DOUBLE, kind VARCHAR, role VARCHAR, shadow VARCHAR, file_idx INTEGER)"
    )


@dataclass(frozen=True)
class _Judged:
    """Which records are the judged candidate's evidence: its image, from `since` on (None: any)."""

    candidate_image: str | None = None
    since: float | None = None
    against: str = "candidate"

    def not_evidence(self) -> str:
        """SQL WHEN clauses marking rows that are not this candidate's evidence."""
        other = next(role for role in RECORDER_ROLES[1:] if role != self.against)
        if self.against == "candidate":  # the usual case stays one cheap test per row
            clauses = f"WHEN {COMPARED} IS NOT NULL AND {COMPARED} <> 'candidate' THEN '{_OTHER_COMPARISON}' "
        else:
            clauses = (
                f"WHEN role IS NULL AND {COMPARED} IS DISTINCT FROM {_quote(self.against)} THEN '{_OTHER_COMPARISON}' "
            )
        clauses += f"WHEN role = {_quote(other)} THEN '{_OTHER_COMPARISON}' "
        if self.candidate_image:
            clauses += f"WHEN {CANDIDATE_IMAGE} <> {_quote(self.candidate_image)} THEN '{_EARLIER}' "
        if self.since is not None:
            # By arrival: with eventTimePath, ts is the request's own time (a replayed week, say).
            clauses += f"WHEN coalesce({RECEIVED}, ts) < {self.since!r} THEN '{_EARLIER}' "
        return clauses


def _select_from_json(file_idx: str, shadow: str, now: float, judged: _Judged) -> str:
    """Rows from a read_json over `$files`: normalised columns, the row's kind, and its file's index."""
    sides = []
    for role in ROLES:
        written = judged.against if role == "candidate" else role  # the baseline's answers stand in
        for name in SIDE_COLUMNS:
            sides.append(
                f"CASE WHEN role IS NULL THEN \"{role}\".{name} WHEN role = '{written}' THEN result.{name} END "
                f"AS {role}_{name}"
            )
    corrupt = _corrupt_sql()
    not_evidence = judged.not_evidence()
    kind = (
        f"CASE WHEN {corrupt} THEN '{_CORRUPT}' WHEN shadow <> {_quote(shadow)} THEN '{_FOREIGN}' {not_evidence}"
        f"WHEN role IS NOT NULL THEN '{_ONE}' WHEN ts > {now + FUTURE_TOLERANCE_SECONDS!r} THEN '{_FUTURE}' "
        f"ELSE '{_PAIR}' END"
    )
    return (
        f"SELECT id, ts, {_hour('ts')} AS hour, coalesce(segments, MAP {{}}) AS segments, "
        f"coalesce(features, MAP {{}}) AS features, {', '.join(sides)}, agree, abs_diff, "
        f"{kind} AS kind, CASE WHEN role = {_quote(judged.against)} THEN 'candidate' ELSE role END AS role, "
        f"CASE WHEN kind = '{_FOREIGN}' THEN shadow END, {file_idx} AS file_idx "
        f"FROM read_json($files, format = 'newline_delimited', ignore_errors = true, filename = true, "
        f"columns = {_JSON_COLUMNS!r})"
    )


def _corrupt_sql() -> str:
    """SQL over read_json's columns: true for a line that is no record (the `corrupt` kind)."""
    return (
        f"v IS DISTINCT FROM {RECORD_VERSION} OR shadow IS NULL OR id IS NULL OR ts IS NULL OR NOT isfinite(ts) OR "
        f"ts < {MIN_TIMESTAMP!r} OR coalesce(NOT isfinite({RECEIVED}) OR {RECEIVED} < {MIN_TIMESTAMP!r}, false) OR "
        f'CASE WHEN role IS NULL THEN "primary".outcome IS NULL OR candidate.outcome IS NULL '
        f"ELSE role NOT IN {tuple(RECORDER_ROLES)} OR result.outcome IS NULL END"
    )


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if abs(value) < 1e9 else f"{value:.3g}s"


def _hour(ts: str) -> str:
    return f"CASE WHEN isfinite({ts}) THEN CAST(((floor({ts} / 3600) % 24) + 24) % 24 AS INTEGER) END"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _insert(
    con: duckdb.DuckDBPyConnection, files: list[Path], shadow: str, now: float, judged: _Judged
) -> list[tuple[Path, Exception]]:
    """Insert every file in one parallel scan; if DuckDB fails on the batch, file by file to isolate the culprit."""
    if not files:
        return []
    names = [str(p) for p in files]
    try:
        con.execute(
            f"INSERT INTO _records {_select_from_json('list_position($files, filename) - 1', shadow, now, judged)}",
            {"files": names},
        )
        return []
    except duckdb.Error:
        con.execute("DELETE FROM _records")
    failed = []
    for idx, name in enumerate(names):
        try:
            con.execute(f"INSERT INTO _records {_select_from_json(str(idx), shadow, now, judged)}", {"files": [name]})
        except duckdb.Error as exc:
            con.execute(f"DELETE FROM _records WHERE file_idx = {idx}")
            failed.append((files[idx], exc))
    if failed:  # renumber the survivors
        keep = [i for i, p in enumerate(files) if p not in {f for f, _ in failed}]
        con.execute("UPDATE _records SET file_idx = list_position($keep, file_idx) - 1", {"keep": keep})
    return failed


def _compare_sql(regression: bool) -> tuple[str, str]:
    """(agree, abs_diff) of two joined sides, as records.compare computes them: two JSON arrays (a batch
    answered with a list) element by element, judged by the worst element."""
    p, c = "primary_prediction", "candidate_prediction"
    both = f"primary_outcome = '{OK}' AND candidate_outcome = '{OK}' AND {p} IS NOT NULL AND {c} IS NOT NULL"
    arrays = f"json_type({p}) = 'ARRAY' AND json_type({c}) = 'ARRAY'"
    length = f"json_array_length({p})"
    same_length = f"{length} = json_array_length({c})"
    # The elements' 0-based indexes: json_extract(x, i) is the i-th element.
    indexes = f"range(CAST({length} AS BIGINT))"
    if regression:
        scalar = (
            f"abs(TRY_CAST(json_extract_string({p}, '$') AS DOUBLE) "
            f"- TRY_CAST(json_extract_string({c}, '$') AS DOUBLE))"
        )
        diffs = (
            f"list_transform({indexes}, lambda i: abs(TRY_CAST(json_extract_string({p}, i) AS DOUBLE) "
            f"- TRY_CAST(json_extract_string({c}, i) AS DOUBLE)))"
        )
        # The largest difference; none when an element is not a number (list_count skips NULLs).
        batch = (
            f"CASE WHEN {same_length} AND {length} > 0 AND list_count({diffs}) = {length} THEN list_max({diffs}) END"
        )
        return "CAST(NULL AS BOOLEAN)", f"CASE WHEN {both} THEN CASE WHEN {arrays} THEN {batch} ELSE {scalar} END END"

    def same(a: str, b: str) -> str:
        numbers = "('UBIGINT', 'BIGINT', 'DOUBLE')"
        return (
            f"CASE WHEN json_type({a}) IN {numbers} AND json_type({b}) IN {numbers} "
            f"THEN CAST({a} AS DOUBLE) = CAST({b} AS DOUBLE) "
            f"ELSE CAST({a} AS VARCHAR) = CAST({b} AS VARCHAR) END"
        )

    elements = f"list_transform({indexes}, lambda i: {same(f'json_extract({p}, i)', f'json_extract({c}, i)')})"
    batch = f"{same_length} AND coalesce(list_bool_and({elements}), true)"
    agree = f"CASE WHEN {both} THEN CASE WHEN {arrays} THEN {batch} ELSE {same(p, c)} END END"
    return agree, "CAST(NULL AS DOUBLE)"


def _join_one_sided(
    con: duckdb.DuckDBPyConnection, now: float, regression: bool, files: list[Path]
) -> list[DataProblem]:
    """Join one-sided records by id (a hash join) into the table `_joined`; count duplicates, unpaired and skew."""
    p, c = ROLES
    problems = []
    ones = f"kind = '{_ONE}'"
    duplicates = con.execute(f"SELECT count(*) - count(DISTINCT (id, role)) FROM _records WHERE {ones}").fetchone()[0]
    if duplicates:  # keep the earliest answer of each role to a request
        con.execute(
            f"UPDATE _records SET kind = '{_DUPLICATE}' WHERE rowid IN (SELECT rowid FROM _records WHERE {ones} "
            "QUALIFY row_number() OVER (PARTITION BY id, role ORDER BY ts, file_idx) > 1)"
        )
        problems.append(
            DataProblem(
                code=CORRUPT_RECORD,
                count=duplicates,
                message=f"{duplicates} one-sided records repeat a request id and role already seen; "
                "only the earliest of each was kept",
            )
        )
    agree, abs_diff = _compare_sql(regression)
    primary_columns = ", ".join(f"{p}_{name}" for name in SIDE_COLUMNS)
    candidate_columns = ", ".join(f"{c}_{name}" for name in SIDE_COLUMNS)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _joined AS SELECT id, ts, hour, "
        "CASE WHEN cardinality(c_segments) = 0 THEN segments ELSE map_concat(c_segments, segments) END AS segments, "
        "CASE WHEN cardinality(c_features) = 0 THEN features ELSE map_concat(c_features, features) END AS features, "
        f"{primary_columns}, {candidate_columns}, {agree} AS agree, {abs_diff} AS abs_diff, "
        f"CASE WHEN ts > {now + FUTURE_TOLERANCE_SECONDS!r} THEN '{_FUTURE}' ELSE '{_PAIR}' END AS kind, "
        "abs(ts - c_ts) AS skew, file_idx "
        f"FROM (SELECT id, ts, hour, segments, features, {primary_columns}, file_idx FROM _records "
        f"WHERE {ones} AND role = '{p}') "
        f"JOIN (SELECT id, ts AS c_ts, segments AS c_segments, features AS c_features, {candidate_columns} "
        f"FROM _records WHERE {ones} AND role = '{c}') USING (id)"
    )
    kept, joined = con.execute(
        f"SELECT (SELECT count(*) FROM _records WHERE {ones}), (SELECT count(*) FROM _joined)"
    ).fetchone()
    unpaired = kept - 2 * joined
    if unpaired:
        lonely = f"{ones} AND id NOT IN (SELECT id FROM _joined)"
        example_id, role, file_idx = con.execute(
            f"SELECT id, role, file_idx FROM _records WHERE {lonely} ORDER BY id LIMIT 1"
        ).fetchone()
        primary_only = con.execute(f"SELECT count(*) FROM _records WHERE {lonely} AND role = '{p}'").fetchone()[0]
        other = p if role == c else c
        # Istio mirrors mirrorPercent of the requests the primary's recorder sees, of the methods and
        # paths traffic.mirrorMethods and traffic.match select: the rest are primary answers without
        # a candidate answer by design, not lost records.
        split = (
            f"{primary_only} {p} answers without a {c} answer (expected for requests not mirrored: "
            f"outside mirrorPercent, mirrorMethods or match) and {unpaired - primary_only} {c} answers "
            f"without a {p} answer"
        )
        problems.append(
            DataProblem(
                code=UNPAIRED_RECORD,
                count=unpaired,
                message=f"{unpaired} one-sided records have no other side: {split}; e.g. the {role} answer "
                f"to id {example_id!r} in {files[file_idx]} has no {other} answer",
            )
        )
    skewed, example = con.execute(
        f"SELECT count(*), arg_max(id, skew) FROM _joined WHERE kind = '{_PAIR}' AND skew > {PAIR_SKEW_SECONDS!r}"
    ).fetchone()
    if skewed:
        problems.append(
            DataProblem(
                code=CLOCK_SKEW,
                count=skewed,
                message=f"{skewed} pairs joined from one-sided records have sides more than "
                f"{PAIR_SKEW_SECONDS:g}s apart (kept), e.g. id {example!r}",
            )
        )
    return problems


def _finish(
    con: duckdb.DuckDBPyConnection, files: list[Path], counts: dict[tuple[int, str], int], joined: bool
) -> list[DataProblem]:
    """Leave only pairs in `_records` (no copy on the clean path), one row per id, and rename it `pairs`."""
    if any(kind != _PAIR for _, kind in counts):
        con.execute(f"DELETE FROM _records WHERE kind <> '{_PAIR}'")
    if joined:
        columns = ", ".join(COLUMNS)
        con.execute(
            f"INSERT INTO _records SELECT {columns}, '{_PAIR}', NULL, NULL, file_idx FROM _joined WHERE kind = '{_PAIR}'"
        )
        con.execute("DROP TABLE _joined")
    rows, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM _records").fetchone()
    problems = []
    if rows != distinct:
        example, file_idx = con.execute(
            "SELECT id, any_value(file_idx) FROM _records GROUP BY id HAVING count(*) > 1 LIMIT 1"
        ).fetchone()
        problems.append(
            DataProblem(
                code=CORRUPT_RECORD,
                count=rows - distinct,
                message=f"{rows - distinct} records repeat a request id already seen; only the earliest of each "
                f"was kept, e.g. id {example!r} in {files[file_idx]}",
            )
        )
        con.execute(  # in place, ranking only the repeated ids: no copy of the table
            "DELETE FROM _records WHERE rowid IN (SELECT rowid FROM _records "
            "WHERE id IN (SELECT id FROM _records GROUP BY id HAVING count(*) > 1) "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY ts, file_idx) > 1)"
        )
    for column in ("kind", "role", "shadow", "file_idx"):  # dropping a column is lazy: no copy
        con.execute(f"ALTER TABLE _records DROP COLUMN {column}")
    con.execute(f"DROP TABLE IF EXISTS {TABLE}")
    con.execute(f"ALTER TABLE _records RENAME TO {TABLE}")
    return problems
