"""Where an incremental run's records come from, and what of them is new: record sources and their cursors.

Records come from a `RecordSource`: local files (`LocalFiles` here) or the collector's parts
(job/remote.py, `CollectorSource`). Both offer the same three things, and the cursor logic below
is written once against them: a listing (key and size of each growing file), the bytes of a file
from an offset, and a hash of a file's first bytes. The cursors are kept in the analysis state
(incremental_state.py), written together with the aggregates they folded into.

* **What is new.** Record files only grow (the router's sink and the collector append whole
  lines; rotation and retention start new files or delete whole ones). A cursor is, per file,
  the byte offset up to which its whole lines are folded, and a hash of its first bytes. A run
  copies each file's bytes from its cursor to its last newline into one increment file, loads
  that (dataset.load: the same validation), folds it (aggregates.fold) and merges the result.
  A partial last line stays for the next run. A file that is gone (retention) keeps what it
  contributed; a file that is shorter than its cursor, or whose first bytes changed, was
  replaced: what it contributed cannot be taken out, so the state is rebuilt from all records.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ..contract.collector_protocol import HEAD_BYTES, head_digest
from ..contract.records import RECORD_SUFFIX
from ..contract.report import DataProblem


@dataclass(frozen=True)
class RecordFile:
    """A growing record file as a source lists it: the key its cursor is kept under, its size now."""

    key: str
    size: int
    head: str = ""  # a hash of its first min(size, HEAD_BYTES) bytes, when the listing gives it


class SourceUnavailable(Exception):
    """The records cannot be read whole this run (the collector unreachable, a read broken off)."""

    def __init__(self, problem: DataProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class FileGone(Exception):
    """A listed file is no longer there (deleted by retention since the listing): skipped this run."""


class RecordSource(Protocol):
    def listing(self) -> list[RecordFile]: ...

    def head(self, file: RecordFile, length: int) -> str:
        """A hash of the file's first min(length, HEAD_BYTES) bytes. Raises FileGone."""
        ...

    def read(self, file: RecordFile, offset: int) -> Iterator[bytes]:
        """The file's bytes from `offset` (up to its listed size, or on), in chunks. Raises FileGone."""
        ...


COPY_CHUNK = 1 << 22


@dataclass
class LocalFiles:
    """Record files named or found under directories (`*.jsonl`), as dataset.load expands them."""

    paths: list[Path]

    def listing(self) -> list[RecordFile]:
        files = []
        for path in record_files(self.paths):
            with contextlib.suppress(OSError):
                files.append(RecordFile(str(path), path.stat().st_size))
        return files

    def head(self, file: RecordFile, length: int) -> str:
        try:
            with open(file.key, "rb") as f:
                return head_digest(f.read(min(length, HEAD_BYTES)))
        except OSError as error:
            raise FileGone(f"{file.key} cannot be read ({error.strerror or error})") from None

    def read(self, file: RecordFile, offset: int) -> Iterator[bytes]:
        try:
            with open(file.key, "rb") as f:
                f.seek(offset)
                while chunk := f.read(COPY_CHUNK):
                    yield chunk
        except OSError as error:
            raise FileGone(f"{file.key} cannot be read ({error.strerror or error})") from None


def record_files(paths: Iterable[Path]) -> list[Path]:
    """Record files named or found under directories (`*.jsonl`), as dataset.load expands them."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob(f"*{RECORD_SUFFIX}") if p.is_file())
        elif path.is_file():
            found.append(path)
    return list(dict.fromkeys(p.resolve() for p in found))


# --- the cursors: what is new ------------------------------------------------------------------------


def replaced(source: RecordSource, files: list[RecordFile], cursors: dict[str, dict[str, Any]]) -> str:
    """Why the folded bytes of some file are no longer what it holds ("" when every file only grew)."""
    for file in files:
        cursor = cursors.get(file.key)
        if not cursor or not cursor["offset"]:
            continue
        if file.size < cursor["offset"]:
            return f"{file.key} is shorter ({file.size} bytes) than what was folded ({cursor['offset']})"
        try:
            if source.head(file, cursor["offset"]) != cursor["head"]:
                return f"{file.key} was replaced (its first bytes changed)"
        except FileGone as gone:
            return str(gone)
    return ""


def collect(
    source: RecordSource,
    files: list[RecordFile],
    cursors: dict[str, dict[str, Any]],
    target: Path,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Copy every file's whole lines beyond its cursor into `target`: (the cursors after them, bytes copied).

    Cursors of files no longer listed are dropped (retention deleted them; what they held stays
    folded). A file that went away while read keeps its cursor, and none of its bytes are kept.
    """
    updated: dict[str, dict[str, Any]] = {}
    copied = 0
    with target.open("wb") as out:
        for file in files:
            cursor = cursors.get(file.key) or {"offset": 0, "head": ""}
            start = out.tell()
            try:
                position = _copy_whole_lines(source.read(file, cursor["offset"]), out, cursor["offset"])
                if position == cursor["offset"] and cursor["head"]:
                    head = cursor["head"]
                elif cursor["offset"] >= HEAD_BYTES and cursor["head"]:
                    head = cursor["head"]  # the first HEAD_BYTES were folded before: they cannot have changed
                else:
                    head = source.head(file, position)
            except FileGone:
                out.seek(start)
                out.truncate()
                updated[file.key] = cursor  # unreadable now: tried again next run
                continue
            copied += position - cursor["offset"]
            updated[file.key] = {"offset": position, "head": head}
    return updated, copied


def _copy_whole_lines(chunks: Iterator[bytes], out: BinaryIO | io.BufferedWriter, offset: int) -> int:
    """Write the chunks' whole lines to `out`; the offset after the last newline (a partial line waits)."""
    position = offset
    pending = b""
    for chunk in chunks:
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        out.write(data[:cut])
        position += cut
        pending = data[cut:]
    return position
