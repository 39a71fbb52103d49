"""The analysis state between runs: which record bytes are folded, and the aggregates they folded into.

One JSON document (docs/verdict.md, "Incremental analysis"), kept by a `StateStore`: a local file
(`shadowctl analyze --state FILE`, `FileStore` here) or, in a cluster, a ConfigMap only the job
may write (job/state_configmap.py):

    {"version", "fingerprint", "cursors": {file: {"offset", "head"}}, "aggregates", "baseline", "pending"}

Records come from a `RecordSource`: local files (`LocalFiles` here) or the collector's parts
(job/remote.py, `CollectorSource`). Both offer the same three things, and the cursor logic below
is written once against them: a listing (key and size of each growing file), the bytes of a file
from an offset, and a hash of a file's first bytes.

* **What is new.** Record files only grow (the router's sink and the collector append whole
  lines; rotation and retention start new files or delete whole ones). A cursor is, per file,
  the byte offset up to which its whole lines are folded, and a hash of its first bytes. A run
  copies each file's bytes from its cursor to its last newline into one increment file, loads
  that (dataset.load: the same validation), folds it (aggregates.fold) and merges the result.
  A partial last line stays for the next run. A file that is gone (retention) keeps what it
  contributed; a file that is shorter than its cursor, or whose first bytes changed, was
  replaced: what it contributed cannot be taken out, so the state is rebuilt from all records.
* **Never counted twice.** Aggregates and cursors are written together, in one document,
  after the fold (a file: a temporary file renamed over it; a ConfigMap: one update): a run that
  dies before leaves the old state and the old cursors, and the next run folds the same bytes
  once. Two runs never fold into one state: a file is locked (`FILE.lock`); a ConfigMap is
  written with the resourceVersion it was read at, so a concurrent writer loses cleanly (and
  the CronJob's concurrencyPolicy is Forbid).
* **What invalidates it.** `fingerprint`: the shadow, the judged candidate image and from when
  its evidence counts (a new image or rollout), the prediction type, the segments (names,
  paths, buckets), the recorded features, the business cycle's hours, whether a noise baseline
  is read, and the sketch's grid. Any change starts a new state from all records. Thresholds
  and confidence are not in it: the aggregates do not depend on them, and the verdict is
  computed from the aggregates on every run.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import math
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ..contract.collector_protocol import HEAD_BYTES, head_digest
from ..contract.records import CANDIDATE_IMAGE, RECEIVED, RECORD_SUFFIX, RECORD_VERSION
from ..contract.report import UNPAIRED_RECORD, DataProblem
from . import sketch
from .aggregates import Aggregates
from .stats import BOUNDS_MS

STATE_VERSION = 1
# Job-side data problems of the incremental analysis: notices in the report, never a verdict's cause.
STATE_REBUILT = "AnalysisStateRebuilt"  # the kept state was refused or no longer matches the records
STATE_TOO_LARGE = "AnalysisStateTooLarge"  # the state cannot be kept: every run recomputes from all records
STATE_NOT_SAVED = "AnalysisStateNotSaved"  # this run's fold was not kept (another run wrote first, API error)
FINGERPRINT_CHANGED = "the candidate, its evidence start or the recording spec changed"
# A state decompresses to at most this: a gzip bomb in a ConfigMap is refused, not inflated. A week
# of 525 slices over 3M pairs is 2.3 MB of JSON (docs/verdict.md); 64 MiB is far beyond any that fits
# the ConfigMap compressed.
MAX_STATE_JSON_BYTES = 64 << 20


@dataclass
class State:
    fingerprint: str
    cursors: dict[str, dict[str, Any]] = field(default_factory=dict)
    aggregates: Aggregates = field(default_factory=Aggregates)
    baseline: Aggregates | None = None
    # Per comparison ("candidate", "baseline"): one-sided record lines of the last increment whose
    # other side had not arrived yet; read again, once, with the next increment.
    pending: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "cursors": self.cursors,
            "aggregates": self.aggregates.to_json(),
            "baseline": self.baseline.to_json() if self.baseline is not None else None,
            "pending": self.pending,
        }


def fingerprint(**parts: Any) -> str:
    """A hash of everything the aggregates depend on besides the records (and of the sketch's grid)."""
    parts = {
        **parts,
        "state_version": STATE_VERSION,
        "sketch": [sketch.ALPHA, sketch.MIN_VALUE],
        "histogram": list(BOUNDS_MS),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# --- the state as bytes: what every store keeps ------------------------------------------------------


def encode(state: State, compress: bool = False) -> bytes:
    """The state as one JSON document (gzip-compressed for a ConfigMap: 4-5x smaller, measured)."""
    data = json.dumps(state.to_json(), separators=(",", ":")).encode()  # dumps: the C encoder, ~10x json.dump
    return gzip.compress(data, compresslevel=6, mtime=0) if compress else data


def decode(raw: bytes, expected: str, where: str) -> tuple[State | None, str]:
    """(the state, "") when `raw` (JSON, or gzip of it) holds one with this fingerprint, else (None, why not)."""
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = _gunzip(raw, MAX_STATE_JSON_BYTES)
        data = json.loads(raw)
    except (OSError, EOFError, ValueError, zlib.error, RecursionError) as error:
        return None, f"the state in {where} cannot be read ({error})"
    try:
        if data.get("version") != STATE_VERSION:
            return None, f"the state in {where} was written by another version ({data.get('version')!r})"
        if data.get("fingerprint") != expected:
            return None, FINGERPRINT_CHANGED
        if problem := _not_finite(data):
            return None, f"the state in {where} is malformed ({problem})"
        cursors = {str(key): _cursor(value) for key, value in dict(data["cursors"]).items()}
        pending = data.get("pending") or {}
        return (
            State(
                fingerprint=expected,
                cursors=cursors,
                aggregates=Aggregates.from_json(data["aggregates"]),
                baseline=Aggregates.from_json(data["baseline"]) if data.get("baseline") is not None else None,
                pending={str(k): [_text(line) for line in v] for k, v in dict(pending).items()},
            ),
            "",
        )
    # Hostile JSON reaches from_json in any shape (a list for a dict, a string for a count): refuse, never crash.
    except Exception as error:
        return None, f"the state in {where} is malformed ({type(error).__name__}: {error})"


def _gunzip(raw: bytes, limit: int) -> bytes:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = inflate.decompress(raw, limit + 1)
    if len(data) > limit or inflate.unconsumed_tail:
        raise ValueError(f"it inflates to more than {limit} bytes")
    if not inflate.eof:
        raise ValueError("the compressed state is truncated")
    return data


def _cursor(value: Any) -> dict[str, Any]:
    offset, head = value["offset"], value["head"]
    if type(offset) is not int or offset < 0 or not isinstance(head, str):
        raise ValueError(f"a cursor needs a byte offset >= 0 and a head, not {value!r}")
    return {"offset": offset, "head": head}


def _text(line: Any) -> str:
    if not isinstance(line, str):
        raise ValueError(f"a pending record line is text, not {type(line).__name__}")
    return line


def _not_finite(data: Any) -> str:
    """Where a number in `data` is not finite (NaN, Infinity: JSON parsers accept them), else ""."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"a number is {item}"
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return ""


# --- where the state is kept -------------------------------------------------------------------------


class StateStore(Protocol):
    """Keeps one state between runs. `read` and `write` say what a report should know, as notices."""

    where: str

    def locked(self) -> contextlib.AbstractContextManager[None]: ...

    def read(self, expected: str) -> tuple[State | None, str, list[DataProblem]]:
        """(the state or None, why it is rebuilt, notices): a refused state is a notice, a missing one is not."""
        ...

    def write(self, state: State) -> list[DataProblem]:
        """Keep `state` (aggregates and cursors together); notices when it was not kept."""
        ...


@dataclass
class FileStore:
    """`shadowctl analyze --state FILE`: one JSON file, replaced atomically, locked for a run."""

    path: Path

    @property
    def where(self) -> str:
        return str(self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on `path`.lock for one run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self, expected: str) -> tuple[State | None, str, list[DataProblem]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None, "no state yet", []
        except OSError as error:
            return None, f"the state {self.path} cannot be read ({error})", []
        state, why = decode(raw, expected, self.where)
        return state, why, []

    def write(self, state: State) -> list[DataProblem]:
        write(self.path, state)
        return []


@dataclass
class Rebuilding:
    """A store whose kept state is ignored this run (`--rebuild-state`): every record folded again, then kept."""

    store: StateStore

    @property
    def where(self) -> str:
        return self.store.where

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return self.store.locked()

    def read(self, expected: str) -> tuple[State | None, str, list[DataProblem]]:
        _, _, notices = self.store.read(expected)  # still read: a ConfigMap is written at the version read
        return None, "a rebuild was asked for (--rebuild-state)", notices

    def write(self, state: State) -> list[DataProblem]:
        return self.store.write(state)


def write(path: Path, state: State) -> None:
    """Replace the state atomically: a temporary file in the same directory, flushed, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(encode(state))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def unusable(state: State, segment_names: list[str], features: list[str], regression: bool) -> str:
    """Why a decoded state cannot be folded into or judged (a count that is text, a list that is short), else "".

    A state only the job writes is well formed; one edited by hand, or by a bug, must not crash
    the run: it is merged into a copy of itself and its slices computed once, here, where any
    failure refuses it.
    """
    try:
        for aggregates, read_features in ((state.aggregates, features), (state.baseline, [])):
            if aggregates is None:
                continue
            twice = Aggregates.from_json(aggregates.to_json())
            twice.merge(Aggregates.from_json(aggregates.to_json()))
            twice.slice_stats(segment_names, read_features, regression)
    except Exception as error:  # any shape reaches here: refused, never a crash
        return f"the state is malformed ({type(error).__name__}: {error})"
    return ""


def rebuilt_notice(why: str) -> DataProblem:
    return DataProblem(
        code=STATE_REBUILT,
        count=1,
        message=f"The incremental analysis state was rebuilt from every record the collector retains: {why}. "
        "Records retention already deleted no longer count.",
    )


# --- where the records come from ---------------------------------------------------------------------


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


# --- one-sided records (istio mode): a pair whose two sides fall into two increments ---------------


def write_pending(lines: list[str], target: Path) -> None:
    target.write_text("".join(f"{line}\n" for line in lines))


def one_sided(path: Path, shadow: str, against: str, image: str | None, since: float | None) -> dict[str, str]:
    """id -> line of the one-sided records in `path` that this comparison would join (primary and `against`).

    The Python twin of dataset.load's kinds for these lines: same shadow and version, a known role,
    the judged image (or none named), arrived since the evidence start. Scanned only where a line
    names a role (pair records never do), so a file of pair records costs one substring test a line.
    """
    found: dict[str, str] = {}
    with path.open("rb") as f:
        for raw in f:
            if b'"role"' not in raw:
                continue
            try:
                record = json.loads(raw)
                if not isinstance(record, dict) or record.get("role") not in ("primary", against):
                    continue
                if record.get("v") != RECORD_VERSION or record.get("shadow") != shadow:
                    continue
                if image and record.get(CANDIDATE_IMAGE) not in (None, image):
                    continue
                arrived = record.get(RECEIVED, record.get("ts"))
                if since is not None and not (isinstance(arrived, int | float) and arrived >= since):
                    continue
                if isinstance(record.get("id"), str):
                    found[f"{record['role']}\0{record['id']}"] = raw.decode("utf-8", "replace").rstrip("\r\n")
            except (ValueError, RecursionError):
                continue
    return found


def unpaired(con: Any, table: str, lines: dict[str, str]) -> dict[str, str]:
    """The entries of `lines` (role NUL id -> line) whose id has no row in the loaded pairs table."""
    if not lines:
        return {}
    ids = sorted({key.split("\0", 1)[1] for key in lines})
    paired = {
        row[0]
        for row in con.execute(f"SELECT id FROM {table} WHERE id IN (SELECT unnest($ids))", {"ids": ids}).fetchall()
    }
    return {key: line for key, line in lines.items() if key.split("\0", 1)[1] not in paired}


def unpaired_problem(expired: int) -> list[DataProblem]:
    if not expired:
        return []
    return [
        DataProblem(
            code=UNPAIRED_RECORD,
            count=expired,
            message=f"{expired} one-sided records have no other side, also after waiting one more analysis run "
            "(expected for requests not mirrored when mirrorPercent is below 100)",
        )
    ]
