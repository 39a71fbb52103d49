"""Load record files into the table `pairs` (pairs.py), and every data problem met on the way.

The fast path is a single `read_json` over all files with explicit columns (record_sql.py):
DuckDB parses the lines in parallel, and a line it cannot parse (not JSON, truncated, not an
object, invalid UTF-8) comes back as a row of NULLs, so it is counted, never lost. Lines are
also counted with a cheap byte scan; Python reads a file line by line only when something in it
is wrong, to name an example line in the problem's message (record_files.py).

Pair records go straight in; one-sided records are joined by id (primary + candidate: one_sided.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import duckdb

from ..contract.report import CLOCK_SKEW, CORRUPT_RECORD, FOREIGN_RECORD, DataProblem
from .one_sided import join_one_sided
from .pairs import COLUMNS, TABLE, Dataset, connect
from .record_files import count_lines, expand, reason, scan
from .record_sql import FUTURE_TOLERANCE_SECONDS, Judged, Kind, create_records_table, select_from_json


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
    files, unreadable = expand([Path(p) for p in paths])
    lines: dict[Path, int] = {}
    for path in files:
        try:
            lines[path] = count_lines(path)
        except OSError as exc:
            unreadable.append((path, exc))
    files = [p for p in files if p in lines]

    create_records_table(con)
    failed = _insert(con, files, shadow, now, Judged(candidate_image, since, against))
    unreadable += failed
    files = [p for p in files if p not in {path for path, _ in failed}]
    problems = [
        DataProblem(code=CORRUPT_RECORD, message=f"cannot read {path}: {reason(exc)}") for path, exc in unreadable
    ]

    counts: dict[tuple[int, str], int] = {
        (file_idx, kind): n
        for file_idx, kind, n in con.execute("SELECT file_idx, kind, count(*) FROM _records GROUP BY ALL").fetchall()
    }
    total_lines, corrupt_per_file = _count_corrupt(files, lines, counts)
    problems += _corrupt_problem(files, corrupt_per_file)
    problems += _foreign_problem(con, files, counts)
    joined = any(kind == Kind.ONE_SIDED for _, kind in counts)
    if joined:
        problems += join_one_sided(con, now, regression, files)
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
            nonblank = scan(path).nonblank
        total_lines += max(nonblank, rows)  # more rows than lines: the file grew while read
        corrupt[idx] = counts.get((idx, Kind.CORRUPT), 0) + max(nonblank - rows, 0)
    return total_lines, corrupt


def _corrupt_problem(files: list[Path], corrupt_per_file: dict[int, int]) -> list[DataProblem]:
    corrupt = sum(corrupt_per_file.values())
    if not corrupt:
        return []
    first = next(i for i, n in corrupt_per_file.items() if n)
    example = scan(files[first], find_example=True).example
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
    foreign = sum(n for (_, kind), n in counts.items() if kind == Kind.FOREIGN)
    if not foreign:
        return []
    other, file_idx = con.execute(
        f"SELECT shadow, file_idx FROM _records WHERE kind = '{Kind.FOREIGN}' LIMIT 1"
    ).fetchone()
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
        f"SELECT count(*), any_value(ts), any_value(file_idx) FROM ({source}) WHERE kind = '{Kind.FUTURE}'"
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


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if abs(value) < 1e9 else f"{value:.3g}s"


def _insert(
    con: duckdb.DuckDBPyConnection, files: list[Path], shadow: str, now: float, judged: Judged
) -> list[tuple[Path, Exception]]:
    """Insert every file in one parallel scan; if DuckDB fails on the batch, file by file to isolate the culprit."""
    if not files:
        return []
    names = [str(p) for p in files]
    try:
        con.execute(
            f"INSERT INTO _records {select_from_json('list_position($files, filename) - 1', shadow, now, judged)}",
            {"files": names},
        )
        return []
    except duckdb.Error:
        con.execute("DELETE FROM _records")
    failed = []
    for idx, name in enumerate(names):
        try:
            con.execute(f"INSERT INTO _records {select_from_json(str(idx), shadow, now, judged)}", {"files": [name]})
        except duckdb.Error as exc:
            con.execute(f"DELETE FROM _records WHERE file_idx = {idx}")
            failed.append((files[idx], exc))
    if failed:  # renumber the survivors
        keep = [i for i, p in enumerate(files) if p not in {f for f, _ in failed}]
        con.execute("UPDATE _records SET file_idx = list_position($keep, file_idx) - 1", {"keep": keep})
    return failed


def _finish(
    con: duckdb.DuckDBPyConnection, files: list[Path], counts: dict[tuple[int, str], int], joined: bool
) -> list[DataProblem]:
    """Leave only pairs in `_records` (no copy on the clean path), one row per id, and rename it `pairs`."""
    if any(kind != Kind.PAIR for _, kind in counts):
        con.execute(f"DELETE FROM _records WHERE kind <> '{Kind.PAIR}'")
    if joined:
        columns = ", ".join(COLUMNS)
        con.execute(
            f"INSERT INTO _records SELECT {columns}, '{Kind.PAIR}', NULL, NULL, file_idx FROM _joined WHERE kind = '{Kind.PAIR}'"
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
