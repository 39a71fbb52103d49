"""The analysis state between runs: which record bytes are folded, and the aggregates they folded into.

`shadowctl analyze --state FILE` keeps one JSON file (docs/verdict.md, "Incremental analysis"):

    {"version", "fingerprint", "cursors": {file: {"offset", "head"}}, "aggregates", "baseline"}

* **What is new.** Record files only grow (the router's sink and the collector append whole
  lines; rotation and retention start new files or delete whole ones). A cursor is, per file,
  the byte offset up to which its whole lines are folded, and a hash of its first bytes. A run
  copies each file's bytes from its cursor to its last newline into one increment file, loads
  that (dataset.load: the same validation), folds it (aggregates.fold) and merges the result.
  A partial last line stays for the next run. A file that is gone (retention) keeps what it
  contributed; a file that is shorter than its cursor, or whose first bytes changed, was
  replaced: what it contributed cannot be taken out, so the state is rebuilt from all records.
* **Never counted twice.** Aggregates and cursors are written together, to a temporary file
  renamed over the state (atomic on POSIX), after the fold: a run that dies before leaves the
  old state and the old cursors, and the next run folds the same bytes once. A lock on
  `FILE.lock` keeps two runs from folding at once (the CronJob's concurrencyPolicy is Forbid).
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
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contract.records import CANDIDATE_IMAGE, RECEIVED, RECORD_SUFFIX, RECORD_VERSION
from ..contract.report import UNPAIRED_RECORD, DataProblem
from . import sketch
from .aggregates import Aggregates
from .stats import BOUNDS_MS

STATE_VERSION = 1
HEAD_BYTES = 4096  # bytes hashed at the start of each file: a replaced file is told apart
COPY_CHUNK = 1 << 22


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


def read(path: Path, expected: str) -> tuple[State | None, str]:
    """(the state, "") when `path` holds one with this fingerprint, else (None, why it is rebuilt)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, "no state yet"
    except (OSError, ValueError) as error:
        return None, f"the state {path} cannot be read ({error})"
    try:
        if data.get("version") != STATE_VERSION:
            return None, f"the state was written by another version ({data.get('version')!r})"
        if data.get("fingerprint") != expected:
            return None, "the candidate, its evidence start or the recording spec changed"
        return (
            State(
                fingerprint=expected,
                cursors=dict(data["cursors"]),
                aggregates=Aggregates.from_json(data["aggregates"]),
                baseline=Aggregates.from_json(data["baseline"]) if data.get("baseline") is not None else None,
                pending={str(k): [str(line) for line in v] for k, v in (data.get("pending") or {}).items()},
            ),
            "",
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return None, f"the state {path} is malformed ({type(error).__name__}: {error})"


def write(path: Path, state: State) -> None:
    """Replace the state atomically: a temporary file in the same directory, flushed, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(state.to_json(), separators=(",", ":")))  # dumps: the C encoder, ~10x json.dump
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`.lock for one run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record_files(paths: list[Path]) -> list[Path]:
    """Record files named or found under directories (`*.jsonl`), as dataset.load expands them."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob(f"*{RECORD_SUFFIX}") if p.is_file())
        elif path.is_file():
            found.append(path)
    return list(dict.fromkeys(p.resolve() for p in found))


def _head(path: Path, length: int) -> str:
    with path.open("rb") as f:
        return hashlib.sha256(f.read(min(length, HEAD_BYTES))).hexdigest()


def replaced(files: list[Path], cursors: dict[str, dict[str, Any]]) -> str:
    """Why the folded bytes of some file are no longer what it holds ("" when every file only grew)."""
    for path in files:
        cursor = cursors.get(str(path))
        if not cursor or not cursor["offset"]:
            continue
        try:
            size = path.stat().st_size
            if size < cursor["offset"]:
                return f"{path} is shorter ({size} bytes) than what was folded ({cursor['offset']})"
            if _head(path, cursor["offset"]) != cursor["head"]:
                return f"{path} was replaced (its first bytes changed)"
        except OSError as error:
            return f"{path} cannot be read ({error.strerror or error})"
    return ""


def collect(
    files: list[Path], cursors: dict[str, dict[str, Any]], target: Path
) -> tuple[dict[str, dict[str, Any]], int]:
    """Copy every file's whole lines beyond its cursor into `target`: (the cursors after them, bytes copied).

    Cursors of files no longer listed are dropped (retention deleted them; what they held stays folded).
    """
    updated: dict[str, dict[str, Any]] = {}
    copied = 0
    with target.open("wb") as out:
        for path in files:
            key = str(path)
            cursor = cursors.get(key) or {"offset": 0, "head": ""}
            offset = cursor["offset"]
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    position = offset
                    pending = b""
                    while chunk := f.read(COPY_CHUNK):
                        data = pending + chunk
                        cut = data.rfind(b"\n") + 1
                        out.write(data[:cut])
                        copied += cut
                        position += cut
                        pending = data[cut:]
            except OSError:
                updated[key] = cursor  # unreadable now: tried again next run
                continue
            head = cursor["head"] if offset >= HEAD_BYTES and cursor["head"] else _head(path, position)
            updated[key] = {"offset": position, "head": head}
    return updated, copied


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
