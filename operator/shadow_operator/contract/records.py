"""The record format shared by the router/recorder (writer) and the comparison job (reader).

One JSON object per line in rotating `*.jsonl` files. A pair record holds both answers to
one request (builtin router); a one-sided record holds one role's answer (recorder sidecar
in Istio mode), and the job joins primary and candidate by request id.

    {"v": 1, "shadow": "ns/name", "id": "...", "ts": 1764000000.123,
     "segments": {"history": "<1"}, "features": {"$.features.purchase_count": false},
     "primary":   {"outcome": "ok", "status": 200, "latency_ms": 12.5, "prediction": 1, "error": null},
     "candidate": {"outcome": "http_5xx", "status": 500, "latency_ms": 3.1, "prediction": null,
                   "error": "KeyError: 'purchase_history'"},
     "agree": null, "abs_diff": null, "candidate_image": "registry.example/recommender:v2",
     "received": 1764600000.5}   # only when ts is the request's event time (eventTimePath)

    one-sided: {"v": 1, "shadow": ..., "id": ..., "ts": ..., "role": "candidate",
                "segments": ..., "features": ..., "result": {<side>}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .naming import BASELINE, CANDIDATE, PRIMARY

RECORD_VERSION = 1
RECORD_SUFFIX = ".jsonl"

# Outcome classes, the same words in records, metrics labels and reports.
OK = "ok"
HTTP_4XX = "http_4xx"
HTTP_5XX = "http_5xx"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
OUTCOMES = (OK, HTTP_4XX, HTTP_5XX, TIMEOUT, CONNECTION_ERROR)
ROLES = (PRIMARY, CANDIDATE)
# The noise baseline (spec.analysis.baseline): a copy of the primary fed the candidate's copies. Its
# recorder writes one-sided records with role "baseline"; the router writes a second pair record per
# request, `"compared": "baseline"`, whose `candidate` side is the baseline's answer. The job judges
# the two comparisons apart (dataset.load(against=...)) and the candidate against the baseline's noise.
COMPARED = "compared"
RECORDER_ROLES = (*ROLES, BASELINE)
# Which candidate answered (its image): the job judges only the current candidate's records,
# so a new candidate never inherits the previous one's answers from the same record store.
CANDIDATE_IMAGE = "candidate_image"
# When the request arrived (epoch seconds), written only where `ts` is the request's own event time
# (recording.eventTimePath): the job tells which candidate answered by arrival, not by event time.
RECEIVED = "received"
MISSING_SEGMENT = "missing"
OTHER_SEGMENT = "other"


def outcome_for_status(status: int) -> str:
    if status >= 500:
        return HTTP_5XX
    if status >= 400:
        return HTTP_4XX
    return OK


@dataclass(frozen=True)
class SideResult:
    """One role's answer to one request."""

    outcome: str
    latency_ms: float
    status: int | None = None
    prediction: Any = None
    error: str | None = None  # exception name or error text the body reported, e.g. "KeyError: 'x'"

    def as_dict(self) -> dict[str, Any]:
        """dataclasses.asdict without its recursive deep copy (the router writes two per request)."""
        return {
            "outcome": self.outcome,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "prediction": self.prediction,
            "error": self.error,
        }


def compare(primary: SideResult, candidate: SideResult, regression: bool) -> tuple[bool | None, float | None]:
    """(agree, abs_diff) of two answers; None where either side has no prediction to compare.

    Two lists (a batch of N instances answered with N predictions: `$.outputs[0].data`,
    `$.predictions`) are compared element by element, and the request is judged by its worst
    element: it agrees only when both have the same length and every element is equal, and its
    abs_diff is the largest elementwise difference (none when the lengths differ, a list is empty or
    an element is not a number). The job's SQL (job.one_sided.compare_sql) computes the same
    for one-sided records.
    """
    if primary.outcome != OK or candidate.outcome != OK or primary.prediction is None or candidate.prediction is None:
        return None, None
    p, c = primary.prediction, candidate.prediction
    if regression:
        if isinstance(p, list) and isinstance(c, list):
            if not p or len(p) != len(c):
                return None, None
            diffs = [_abs_diff(x, y) for x, y in zip(p, c, strict=True)]
            return None, None if None in diffs else max(d for d in diffs if d is not None)
        return None, _abs_diff(p, c)
    if isinstance(p, list) and isinstance(c, list):
        return len(p) == len(c) and all(_same(x, y) for x, y in zip(p, c, strict=True)), None
    return _same(p, c), None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """One prediction (or element) as the job's SQL compares it: numbers by value (1 == 1.0), anything
    else by its JSON text (so true != 1, and two objects are equal only with their keys in one order)."""
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)
    return _JSON_TEXT.encode(a) == _JSON_TEXT.encode(b)


def _abs_diff(a: Any, b: Any) -> float | None:
    """|a - b| of two numbers or numeric strings (as the SQL's TRY_CAST); None otherwise."""
    if isinstance(a, bool | list | dict) or isinstance(b, bool | list | dict):
        return None
    try:
        return abs(float(a) - float(b))
    except (TypeError, ValueError):
        return None


def pair_record(
    shadow: str,
    request_id: str,
    ts: float,
    segments: dict[str, str],
    features: dict[str, bool],
    primary: SideResult,
    candidate: SideResult,
    regression: bool = False,
    candidate_image: str | None = None,
    received: float | None = None,
) -> dict[str, Any]:
    agree, abs_diff = compare(primary, candidate, regression)
    fields = {
        "segments": segments,
        "features": features,
        "primary": primary.as_dict(),
        "candidate": candidate.as_dict(),
        "agree": agree,
        "abs_diff": abs_diff,
    }
    return _record(shadow, request_id, ts, fields, candidate_image, received)


def one_sided_record(
    shadow: str,
    request_id: str,
    ts: float,
    role: str,
    segments: dict[str, str],
    features: dict[str, bool],
    result: SideResult,
    candidate_image: str | None = None,
    received: float | None = None,
) -> dict[str, Any]:
    fields = {"role": role, "segments": segments, "features": features, "result": result.as_dict()}
    return _record(shadow, request_id, ts, fields, candidate_image, received)


def _record(
    shadow: str,
    request_id: str,
    ts: float,
    fields: dict[str, Any],
    candidate_image: str | None,
    received: float | None,
) -> dict[str, Any]:
    """A record of either kind: what identifies it, its own `fields`, then the optional stamps that say something."""
    record = {"v": RECORD_VERSION, "shadow": shadow, "id": request_id, "ts": ts, **fields}
    if candidate_image:
        record[CANDIDATE_IMAGE] = candidate_image
    if received is not None and received != ts:
        record[RECEIVED] = received
    return record


# One encoder: json.dumps with options builds a new JSONEncoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_JSON_TEXT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(record: dict[str, Any]) -> str:
    return _ENCODER.encode(record) + "\n"
