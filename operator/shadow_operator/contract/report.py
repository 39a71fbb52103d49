"""The comparison job's report: everything measured, and the verdict drawn from it.

The job is the only writer of a report (a ConfigMap `<name>-report`, key `report.json`);
the operator is the only writer of status and copies the verdict and coverage into it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..api.v1alpha1 import KIND, CheckSource, Verdict
from .metric_names import ALL_SEGMENTS

REPORT_VERSION = 1
REPORT_KEY = "report.json"
REPORT_SUFFIX = "report"

# Codes of data problems: what was wrong with the input, never silently ignored.
CORRUPT_RECORD = "CorruptRecord"  # unparseable or truncated line, wrong shape
FOREIGN_RECORD = "ForeignRecord"  # written for another ShadowDeployment
CLOCK_SKEW = "ClockSkew"  # timestamp in the future, or the two sides of a pair far apart
UNPAIRED_RECORD = "UnpairedRecord"  # one-sided record whose other side never arrived
METRICS_ERROR = "MetricsError"  # Prometheus unreachable, erroring, or returning nothing


class ReportModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorText(ReportModel):
    text: str
    count: int


class Latency(ReportModel):
    p50: float
    p95: float
    p99: float


class LatencyBounds(ReportModel):
    """Distribution-free bounds of the p50/p95/p99 latency at one confidence level, from order statistics.

    `low` is 0 where the lower rank falls before the first sample, `high` 1e308 where the upper
    rank falls beyond the last: no bound on that side.
    """

    confidence: float
    low: Latency
    high: Latency


class HistogramBucket(ReportModel):
    le_ms: float  # upper bound; float("inf") is written as 1e308 for JSON
    count: int  # requests with latency <= le_ms and > the previous bound


class SideStats(ReportModel):
    """One role's answers in one slice."""

    requests: int
    errors: int
    error_rate: float | None = None
    outcomes: dict[str, int] = Field(default_factory=dict)
    top_errors: list[ErrorText] = Field(default_factory=list)
    latency_ms: Latency | None = None
    latency_histogram: list[HistogramBucket] = Field(default_factory=list)
    # One entry per level of intervals.LATENCY_LEVELS, whole-period slices only: what the latency
    # checks are judged on (their messages carry the interval used). Not written to report.json
    # (about 2.5 KB a slice against the ConfigMap's 1 MiB); empty when read back, in reports of
    # older jobs and in Prometheus's slices, where latency falls back to histogram or point estimate.
    latency_bounds: list[LatencyBounds] = Field(default_factory=list, exclude=True)

    def latency_interval(self, percentile: str, confidence: float) -> tuple[float, float, float] | None:
        """(level, low, high ms) of one percentile at the smallest recorded level >= confidence; None if none is."""
        for bounds in sorted(self.latency_bounds, key=lambda b: b.confidence):
            if bounds.confidence >= confidence - 1e-12:
                return bounds.confidence, getattr(bounds.low, percentile), getattr(bounds.high, percentile)
        return None


class SliceStats(ReportModel):
    """Both roles on one slice of traffic: a segment bucket (or `all`), optionally one hour of day,
    as one source measured it (the checks on a slice carry the same three fields)."""

    segment: str  # ALL_SEGMENTS or "<name>=<bucket>"
    hour: int | None = Field(default=None, ge=0, le=23)  # hour of day (UTC); None: the whole period
    source: CheckSource = CheckSource.RECORDS
    pairs: int
    primary: SideStats
    candidate: SideStats
    agreement: float | None = None  # classification: share of comparable pairs that agree
    comparable: int = 0  # pairs where both sides answered with a prediction
    abs_diff_mean: float | None = None  # regression
    abs_diff_p95: float | None = None
    feature_missing: dict[str, float] = Field(default_factory=dict)  # feature path -> missing rate


class ReportCoverage(ReportModel):
    first_ts: float | None = None
    last_ts: float | None = None
    elapsed_seconds: float = 0
    required_seconds: float
    samples: int = 0
    required_samples: int
    # Hour buckets of the business cycle (job/cycle.py): 0 when judged by time alone.
    cycle_hours: int = 0
    hours_seen: int = 0
    gaps: list[str] = Field(default_factory=list)  # runs of hours without a pair, named
    percent: int = 0  # the lowest of time, sample and hour coverage


class DataProblem(ReportModel):
    code: str
    count: int = 1
    message: str


class Report(ReportModel):
    version: int = REPORT_VERSION
    shadow: str  # "namespace/name"
    generated_at: str
    candidate: str | None = None  # the candidate image the records were judged for
    coverage: ReportCoverage
    slices: list[SliceStats] = Field(default_factory=list)
    verdict: Verdict
    problems: list[DataProblem] = Field(default_factory=list)
    queries: dict[str, float | None] = Field(default_factory=dict)  # PromQL -> value, as issued

    def slice(self, segment: str = ALL_SEGMENTS, hour: int | None = None) -> SliceStats | None:
        return next((s for s in self.slices if s.segment == segment and s.hour == hour), None)


def report_name(shadow_name: str) -> str:
    """The ConfigMap the job publishes its report in."""
    return f"{shadow_name}-{REPORT_SUFFIX}"


def report_from_configmap(body: dict[str, Any] | None) -> Report | None:
    """The published report, or None when absent or unreadable (a bad report never breaks status)."""
    return _read_report(body)[0]


# A report is untrusted input: its problems are named in an Event, so only the first few, each cut short.
_FIELDS_NAMED = 3
_FIELD_NAME_CAP = 120


def _read_report(body: Mapping[str, Any] | None) -> tuple[Report | None, str | None]:
    """(report, None), (None, why it cannot be read), or (None, None) when there is no report.json."""
    text = ((body or {}).get("data") or {}).get(REPORT_KEY)
    if not text:
        return None, None
    try:
        return Report.model_validate(json.loads(text)), None
    except ValidationError as error:
        return None, _invalid_fields(error)
    except ValueError as error:  # not JSON
        return None, f"not JSON: {str(error)[:_FIELD_NAME_CAP]}"


def _invalid_fields(error: ValidationError) -> str:
    """`verdict.checks[3].hour: Input should be less than or equal to 23`: the fields a report fails on."""
    named = []
    for item in error.errors()[:_FIELDS_NAMED]:
        field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]).lstrip(".")
        field = "".join(ch if ch.isprintable() else "?" for ch in field[:_FIELD_NAME_CAP])  # a key may hold anything
        named.append(f"{field or 'the document'}: {item['msg']}")
    more = error.error_count() - len(named)
    return "; ".join(named) + (f"; and {more} more" if more > 0 else "")


def slice_label(segment: str, hour: int | None = None, source: CheckSource = CheckSource.RECORDS) -> str:
    """A slice (of a check or of the report) as people read it in tables and lists: `all`,
    `history=<1 @14h`, `all (prometheus)`. Presentation only: the fields are the data, and nothing
    parses a label back."""
    label = segment if hour is None else f"{segment} @{hour}h"
    return label if source == CheckSource.RECORDS else f"{label} ({source})"


def check_priority(check) -> tuple[int, int]:
    """Which checks a trimmed list keeps first (status, a report over its budget): failing ones in
    the verdict's order (it lists their cause first), then inconclusive, then passed, all traffic
    over the whole period before segments and hour windows."""
    if check.passed is False:
        return (0, 0)
    overall = check.segment == ALL_SEGMENTS and check.hour is None
    return (1 if check.passed is None else 2, 0 if overall else 1)


# The reason of the Event (and the note on the Analyzed condition) for a report the operator ignores.
UNTRUSTED_REPORT = "UntrustedReport"


def trusted_report(
    body: Mapping[str, Any] | None, namespace: str, name: str, uid: str
) -> tuple[Report | None, str | None]:
    """The report in ConfigMap `<name>-report` if it can be trusted, else why not.

    (report, None): trusted. (None, None): no report yet (absent, or the empty ConfigMap the
    operator pre-creates). (None, why): there is one, and it is ignored: the ConfigMap is not
    controlled by this ShadowDeployment (its uid: a namesake created and deleted before, or
    someone else's object), its report.json is unreadable, or the report names another
    ShadowDeployment (`shadow` is not `namespace/name`). Only this object's job can write the
    ConfigMap the operator made (a Role with resourceNames), so a report passing these checks
    was written by it, or by someone who may edit the namespace's ConfigMaps anyway.
    """
    if not body:
        return None, None
    metadata = body.get("metadata") or {}
    where = f"ConfigMap {metadata.get('name')}"
    controllers = [ref for ref in metadata.get("ownerReferences") or [] if ref.get("controller")]
    if not any(ref.get("uid") == uid and ref.get("kind") == KIND for ref in controllers):
        owners = ", ".join(f"{ref.get('kind')}/{ref.get('name')} uid {ref.get('uid')}" for ref in controllers)
        return None, (
            f"{where} is not controlled by this ShadowDeployment (uid {uid}; its controller: {owners or 'none'}), "
            "so its report is ignored: delete the ConfigMap and the operator recreates it for the comparison job."
        )
    report, unreadable = _read_report(body)
    if unreadable is not None:
        return None, (
            f"{where} holds no readable report.json ({unreadable}), so it is ignored: the next run of the "
            "comparison job (CronJob <name>-analysis) replaces it."
        )
    if report is None:
        return None, None
    expected = f"{namespace}/{name}"
    if report.shadow != expected:
        return None, (
            f"{where} holds a report for {report.shadow!r}, not {expected!r}, so it is ignored: only this "
            "object's comparison job may publish its verdict."
        )
    return report, None
