"""What is recorded from a request and its answers: segments, features, prediction, error text.

Pure functions over bytes; each body is parsed at most once (parse_body), then every path is a
tuple walk (jsonpath.extract). Redacted paths never leave: a segment or prediction that reads a
redacted value (or a value containing one) is recorded as "[redacted]", and redacted values are
scrubbed from error text.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..api.v1alpha1.spec import RecordingSpec, Segment
from ..jsonpath import MISSING, Step, compile_path, extract
from ..records import MISSING_SEGMENT, OTHER_SEGMENT

REDACTED = "[redacted]"
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
        self.prediction_steps = compile_path(recording.prediction_path)
        self.prediction_redacted = self._is_redacted(self.prediction_steps)
        self.event_time_steps = compile_path(recording.event_time_path) if recording.event_time_path else None
        self.segment_redacted = {s.name: self._is_redacted(s.steps) for s in self.segments}
        self.needs_request = (
            bool(self.features)
            or self.event_time_steps is not None
            or any(s.source == "request" for s in self.segments)
        )
        self.needs_response = any(s.source == "response" for s in self.segments)

    def _is_redacted(self, steps: tuple[Step, ...]) -> bool:
        return any(_overlaps(steps, r) for r in self.redact)

    def request_facts(self, request_doc: Any, response_doc: Any = UNPARSEABLE) -> Extracted:
        """Segments (from the request, or the primary's response) and feature presence flags."""
        segments = {}
        for seg in self.segments:
            if self.segment_redacted[seg.name]:
                segments[seg.name] = REDACTED
                continue
            document = request_doc if seg.source == "request" else response_doc
            segments[seg.name] = seg.bucket(value_at(document, seg.steps))
        features = {path: value_at(request_doc, steps) not in (MISSING, None) for path, steps in self.features}
        arrival = time.time()
        ts = (
            arrival
            if self.event_time_steps is None
            else event_time(value_at(request_doc, self.event_time_steps), arrival)
        )
        return Extracted(segments, features, ts, arrival)

    def prediction(self, response_doc: Any) -> Any:
        if self.prediction_redacted:
            return REDACTED
        value = value_at(response_doc, self.prediction_steps)
        return None if value is MISSING else value

    def redacted_values(self, request_doc: Any) -> list[str]:
        """String forms of the request's redacted values, to scrub from error text."""
        found = []
        for steps in self.redact:
            value = value_at(request_doc, steps)
            if value is not MISSING and value is not None:
                text = _as_text(value)
                if len(text) >= 2:
                    found.append(text)
        return found

    def error_text(self, status: int | None, body: bytes, document: Any, scrub: list[str] = ()) -> str | None:
        """What an error answer says went wrong: `error`/`detail`/`message` field, else its text."""
        if status is None or status < 400:
            return None
        text = None
        if isinstance(document, dict):
            for key in ("error", "detail", "message", "exception"):
                if key in document and document[key] not in (None, ""):
                    value = document[key]
                    text = value if isinstance(value, str) else _as_text(value)
                    break
        if text is None:
            text = body.decode("utf-8", "replace").strip() if body else ""
        if not text:
            return f"HTTP {status}"
        for secret in scrub:
            text = text.replace(secret, REDACTED)
        return text[:ERROR_TEXT_LIMIT]
