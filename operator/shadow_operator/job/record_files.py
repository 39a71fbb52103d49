"""Record files as files: listing them, counting their lines, and naming an example corrupt line.

Lines are counted with a cheap byte scan; Python reads a file line by line (scan) only when
something in it is wrong, to name an example line in the problem's message.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ..contract.records import RECEIVED, RECORD_SUFFIX, RECORD_VERSION, RECORDER_ROLES
from .record_sql import JSON_COLUMNS, MIN_TIMESTAMP, corrupt_sql

_CHUNK = 1 << 23
_EXCERPT = 80


def expand(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, Exception]]]:
    """The files given and the `*.jsonl` files below the directories given, each once; and those that cannot be read."""
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


def reason(exc: Exception) -> str:
    """Why a file cannot be read, in one line."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]


def count_lines(path: Path) -> int:
    """Lines in a file, the last one counted even without its newline (it is being written)."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


@dataclass
class Scan:
    nonblank: int = 0
    example: tuple[int, str] | None = None  # line number (1-based) and an excerpt of a corrupt line


def scan(path: Path, find_example: bool = False) -> Scan:
    """Read one file line by line: the slow path, only for files where something is wrong.

    Counts non-blank lines, or (find_example) stops at the first corrupt line.
    """
    result = Scan()
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
    """The Python twin of the SQL `kind` check (record_sql.corrupt_sql), used only to name an example line."""
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
                f"SELECT {corrupt_sql()} FROM read_json($files, format = 'newline_delimited', "
                f"ignore_errors = true, columns = {JSON_COLUMNS!r})",
                {"files": [str(path)]},
            ).fetchone()
        except duckdb.Error:
            return True
        finally:
            con.close()
    return row is None or row[0] is not False
