"""What is recorded from a request and its answers: segments, features, prediction, error text.

Pure functions over bytes; each body is parsed at most once (parse_body), then every path is a
tuple walk (jsonpath.extract). Redacted paths never leave: a segment or prediction that reads a
redacted path (or a value containing one) is recorded as "[redacted]"; and every leaf found under
a redacted path, in the request or in an answer, is scrubbed from what else is recorded (the
prediction, segment labels, error text): redaction.Secrets. With `redact` empty none of that runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..api.v1alpha1.recording import PREDICTION_PATHS, RecordingSpec, Segment
from ..contract.jsonpath import MISSING, Step, compile_path, extract
from ..contract.records import MISSING_SEGMENT, OTHER_SEGMENT, SideResult
from .redaction import REDACTED, UNCHECKED, Secrets, redact_paths

ERROR_TEXT_LIMIT = 200
DISTINCT_LIMIT = 20
UNPARSEABLE = object()  # a body that is not JSON (MISSING is an absent value)


def parse_body(body: bytes | None) -> Any:
    """The JSON document of a body, or UNPARSEABLE."""
    if not body:
        return UNPARSEABLE
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return UNPARSEABLE


def value_at(document: Any, steps: tuple[Step, ...]) -> Any:
    if document is UNPARSEABLE:
        return MISSING
    return extract(document, steps)


def _overlaps(a: tuple[Step, ...], b: tuple[Step, ...]) -> bool:
    """One path is a prefix of the other: reading `a` reveals (part of) `b` or vice versa."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _format_bound(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


class SegmentBucketer:
    """Maps a segment's raw value to a bounded bucket label."""

    def __init__(self, segment: Segment) -> None:
        self.name = segment.name
        self.steps = compile_path(segment.path)
        self.source = segment.source
        self.bounds = list(segment.bounds) if segment.bounds is not None else None
        self.values = set(segment.values) if segment.values is not None else None
        self.seen: set[str] = set()  # neither bounds nor values: the first DISTINCT_LIMIT values
        if self.bounds is not None:
            b = [_format_bound(x) for x in self.bounds]
            self.labels = [f"<{b[0]}"] + [f"{lo}-{hi}" for lo, hi in itertools.pairwise(b)] + [f">={b[-1]}"]

    def known_buckets(self) -> set[str] | None:
        """Every label this segment can produce, when finite and known up front."""
        if self.bounds is not None:
            return {*self.labels, MISSING_SEGMENT, OTHER_SEGMENT}
        if self.values is not None:
            return {*self.values, MISSING_SEGMENT, OTHER_SEGMENT}
        return None

    def bucket(self, value: Any) -> str:
        if value is MISSING or value is None:
            return MISSING_SEGMENT
        if self.bounds is not None:
            number = _as_number(value)
            if number is None:
                return OTHER_SEGMENT
            for i, bound in enumerate(self.bounds):
                if number < bound:
                    return self.labels[i]
            return self.labels[-1]
        text = _as_text(value)
        if self.values is not None:
            return text if text in self.values else OTHER_SEGMENT
        if text in self.seen:
            return text
        if len(self.seen) < DISTINCT_LIMIT and len(text) <= 64:
            self.seen.add(text)
            return text
        return OTHER_SEGMENT


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return None if math.isnan(number) else number


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _format_bound(value) if isinstance(value, float) and math.isfinite(value) else str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# The line of a Python traceback that names the exception: `ValueError: Input X contains NaN.`
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*: \S")


def _mlflow_error(document: dict[str, Any], message: str) -> str:
    """MLflow's scoring server: `error_code` before the message, and the exception its stack trace ends
    with (the message alone says "an unexpected error while evaluating the model")."""
    code, trace = document.get("error_code"), document.get("stack_trace")
    raised = [line for line in trace.splitlines() if _EXCEPTION_LINE.match(line)] if isinstance(trace, str) else []
    text = f"{raised[-1].strip()}; {message}" if raised and raised[-1] not in message else message
    return f"{code}: {text}" if isinstance(code, str) and code and not text.startswith(code) else text


@dataclass(frozen=True)
class Extracted:
    segments: dict[str, str]
    features: dict[str, bool]
    ts: float  # the request's event time (eventTimePath) or its arrival time
    received: float  # its arrival time


def event_time(value: Any, arrival: float) -> float:
    """An event time from a body value: epoch seconds or RFC 3339, never in the future; else `arrival`."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return arrival
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        number = parsed.timestamp()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        return arrival
    return number if math.isfinite(number) and 0 < number <= arrival else arrival


class Extractor:
    """Everything the recording spec asks for, compiled once."""

    def __init__(self, recording: RecordingSpec) -> None:
        self.redact = [compile_path(p) for p in recording.redact]
        self.segments = [SegmentBucketer(s) for s in recording.segments]
        self.features = [(p, compile_path(p)) for p in recording.features]
        # predictionPath, else the protocol's preset (the spec fills it in when parsed; a RecordingSpec
        # built without validation may not have).
        self.prediction_steps = compile_path(recording.prediction_path or PREDICTION_PATHS[recording.protocol])
        self.prediction_redacted = self._is_redacted(self.prediction_steps)
        self.event_time_steps = compile_path(recording.event_time_path) if recording.event_time_path else None
        if self.event_time_steps is not None and self._is_redacted(self.event_time_steps):
            self.event_time_steps = None  # the record's ts would be the redacted value: arrival time instead
        self.segment_redacted = {s.name: self._is_redacted(s.steps) for s in self.segments}
        self.needs_request = (
            bool(self.features)
            or self.event_time_steps is not None
            or any(s.source == "request" for s in self.segments)
        )
        self.needs_response = any(s.source == "response" for s in self.segments)

    def _is_redacted(self, steps: tuple[Step, ...]) -> bool:
        return any(_overlaps(steps, r) for r in self.redact)

    def secrets(self, request_doc: Any, known: bool = True) -> Secrets | None:
        """The request's redacted leaves (None when nothing is redacted). `known`: the whole body was
        read and is JSON or empty; when it is not, nothing can be checked and everything fails closed."""
        if not self.redact:
            return None
        secrets = Secrets(self.redact, complete=known)
        if request_doc is not UNPARSEABLE:
            secrets.add_document(request_doc)
        return secrets

    def request_facts(
        self, request_doc: Any, response_doc: Any = UNPARSEABLE, secrets: Secrets | None = None
    ) -> Extracted:
        """Segments (from the request, or the primary's response) and feature presence flags."""
        segments = {}
        for seg in self.segments:
            if self.segment_redacted[seg.name]:
                segments[seg.name] = REDACTED
                continue
            document = request_doc if seg.source == "request" else response_doc
            value = value_at(document, seg.steps)
            # Only a distinct-values label is the value itself; bounds and values labels come from the spec.
            if secrets is not None and seg.bounds is None and seg.values is None and value not in (MISSING, None):
                value = secrets.value(value)
                if value is UNCHECKED:
                    value = REDACTED
            segments[seg.name] = seg.bucket(value)
        features = {path: value_at(request_doc, steps) not in (MISSING, None) for path, steps in self.features}
        arrival = time.time()
        ts = (
            arrival
            if self.event_time_steps is None
            else event_time(value_at(request_doc, self.event_time_steps), arrival)
        )
        return Extracted(segments, features, ts, arrival)

    def prediction(self, response_doc: Any, secrets: Secrets | None = None) -> Any:
        if self.prediction_redacted:
            return REDACTED
        value = value_at(response_doc, self.prediction_steps)
        if value is MISSING:
            return None
        if secrets is not None:
            value = secrets.value(value)
            if value is UNCHECKED:  # not "[redacted]": both sides would then agree on it
                return None
        return value

    def error_text(self, status: int | None, body: bytes, document: Any, secrets: Secrets | None = None) -> str | None:
        """What an error answer says went wrong: its `error`/`detail`/`message`/`exception` field, else its text.

        The model servers' shapes: MLServer, KServe and Triton `{"error": "..."}`; FastAPI's
        `{"detail": ...}`; a plain-text Python traceback (MLServer in debug mode, its default): the
        exception line it ends with; MLflow `{"error_code": "BAD_REQUEST", "message": "...", "stack_trace": "..."}`,
        kept as "BAD_REQUEST: <the trace's exception line>; <message>" (its message is generic)."""
        if status is None or status < 400:
            return None
        if secrets is not None and isinstance(document, dict | list):
            document = redact_paths(document, self.redact)  # the answer's own redacted paths
        text = None
        if isinstance(document, dict):
            for key in ("error", "detail", "message", "exception"):
                if key in document and document[key] not in (None, ""):
                    value = document[key]
                    if not isinstance(value, str) and secrets is not None:
                        value = secrets.value(value)  # leaf by leaf, not as compact JSON text
                        if value is UNCHECKED:
                            return REDACTED
                    text = value if isinstance(value, str) else _as_text(value)
                    if key == "message":
                        text = _mlflow_error(document, text)
                    break
        if text is None and body:
            if secrets is not None:
                # Decode no more than the scrubbed text can consume: `limit` characters plus the
                # secrets a marker each replaces (at least 2 characters each), 4 bytes a character.
                body = body.lstrip()[: 4 * (ERROR_TEXT_LIMIT + (ERROR_TEXT_LIMIT // 2 + 2) * max(1, secrets.longest))]
            text = body.decode("utf-8", "replace").strip()
            if text.startswith("Traceback (most recent call last):"):
                # A plain-text Python traceback (MLServer's default debug mode): its exception line.
                raised = [line for line in text.splitlines() if _EXCEPTION_LINE.match(line)]
                text = raised[-1].strip() if raised else text
        if not text:
            return f"HTTP {status}"
        if secrets is not None:
            return secrets.text(text, ERROR_TEXT_LIMIT)
        return text[:ERROR_TEXT_LIMIT]

    def rescrub(self, result: SideResult, secrets: Secrets) -> SideResult:
        """`result` again, after the other side's answer added secrets (its own redacted paths)."""
        prediction = result.prediction
        if prediction is not None and prediction != REDACTED:
            prediction = secrets.value(prediction)
            prediction = None if prediction is UNCHECKED else prediction
        error = secrets.text(result.error, ERROR_TEXT_LIMIT) if result.error else result.error
        return dataclasses.replace(result, prediction=prediction, error=error)
