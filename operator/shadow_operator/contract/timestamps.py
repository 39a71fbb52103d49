"""Timestamps as every record, report and status spells them, and the share of a cycle they span."""

from __future__ import annotations

from datetime import UTC, datetime

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def timestamp(moment: datetime) -> str:
    return moment.strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def time_coverage_percent(elapsed_seconds: float, required_seconds: float) -> int:
    """Whole percent of the business cycle covered (integer arithmetic: no off-by-one at boundaries)."""
    if required_seconds <= 0:
        return 100
    return min(100, int(max(elapsed_seconds, 0) * 100 // required_seconds))
