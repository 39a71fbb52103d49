"""Coverage of the business cycle, one rule for the job's report and the operator's status: the
lowest of the time covered, the samples seen and the hours of the cycle seen, in whole percent
(integer arithmetic: no off-by-one at exact boundaries)."""

from __future__ import annotations

from typing import NamedTuple


class Coverage(NamedTuple):
    time: int
    samples: int
    hours: int  # 100 when the cycle is judged by time alone
    lowest: int


def time_coverage_percent(elapsed_seconds: float, required_seconds: float) -> int:
    """Whole percent of the business cycle covered; a cycle already covered is 100% (no overflow
    from multiplying a huge elapsed time)."""
    if required_seconds <= 0 or elapsed_seconds >= required_seconds:
        return 100
    return int(max(elapsed_seconds, 0) * 100 // required_seconds)


def coverage(
    elapsed_seconds: float,
    required_seconds: float,
    samples: int,
    required_samples: int,
    hours: tuple[int, int] | None = None,
) -> Coverage:
    """`hours`: (seen, in the cycle), or None when the cycle has no hour buckets."""
    time = time_coverage_percent(elapsed_seconds, required_seconds)
    sample = min(100, max(samples, 0) * 100 // max(1, required_samples))
    hour = min(100, hours[0] * 100 // hours[1]) if hours and hours[1] else 100
    return Coverage(time, sample, hour, min(time, sample, hour))
