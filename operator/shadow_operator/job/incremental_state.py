"""The incremental analysis's state between runs: which record bytes are folded, and the aggregates they folded into.

One JSON document (docs/verdict.md, "Incremental analysis"), kept by a `StateStore`: a local file
(`shadowctl analyze --state FILE`, job/state_file.py) or, in a cluster, a ConfigMap only the job
may write (job/state_configmap.py):

    {"version", "fingerprint", "cursors": {file: {"offset", "head"}}, "aggregates", "baseline", "pending"}

The cursors are record_sources.py's (what of each record file is folded), the pending lines
pending_records.py's (one-sided records waiting for their other side). This module is the
document itself: its fields, its fingerprint, its bytes (encode, decode: refused, never a crash,
when malformed), what a store promises, and the notices a report gets about it.

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
import gzip
import hashlib
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..contract.report import DataProblem
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


# --- where the state is kept: state_file.py, state_configmap.py -------------------------------------


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


def state_notice(code: str, message: str) -> DataProblem:
    """A notice about the kept state (STATE_REBUILT, STATE_TOO_LARGE, STATE_NOT_SAVED): never a verdict's cause."""
    return DataProblem(code=code, count=1, message=message)


def rebuilt_notice(why: str) -> DataProblem:
    return state_notice(
        STATE_REBUILT,
        f"The incremental analysis state was rebuilt from every record the collector retains: {why}. "
        "Records retention already deleted no longer count.",
    )
