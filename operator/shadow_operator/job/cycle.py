"""The business cycle as hour buckets: which hours of the cycle the pairs cover, and the gaps named.

Time since shadowing began says nothing about which hours were seen: a router down for two
days still "covered" them. A cycle of `minDuration` (whole hours, at least MIN_BUCKETED_HOURS)
is cut into hour buckets by the pairs' own timestamps, aligned so that a week starts on Monday
00:00 UTC and a day at midnight UTC; coverage counts the buckets holding at least one pair.
Shorter cycles (a test's 3m) are judged by time alone.
"""

from __future__ import annotations

from collections.abc import Iterable

HOUR = 3600
DAY_HOURS = 24
WEEK_HOURS = 7 * DAY_HOURS
# 1970-01-05 00:00 UTC, a Monday: bucket 0 of a week-long cycle is Monday 00:00-01:00 UTC.
MONDAY_EPOCH = 4 * 86400
MIN_BUCKETED_HOURS = 2
MAX_GAPS_NAMED = 6
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def cycle_hours(required_seconds: float) -> int:
    """The cycle's number of hour buckets; 0 when it is too short or not whole hours (time alone)."""
    if required_seconds % HOUR or required_seconds < MIN_BUCKETED_HOURS * HOUR:
        return 0
    return int(required_seconds // HOUR)


def bucket_sql(ts: str, hours: int) -> str:
    """SQL: the hour bucket (0 to hours-1) of the cycle a timestamp column falls in."""
    period = hours * HOUR
    return f"CAST(floor((((({ts}) - {MONDAY_EPOCH}) % {period}) + {period}) % {period} / {HOUR}) AS INTEGER)"


def bucket_label(bucket: int, hours: int) -> str:
    """`Sat 01:00` in a weekly cycle, `01:00` in a daily one, `day 2 01:00` or `hour 5` otherwise."""
    day, hour = divmod(bucket, DAY_HOURS)
    if hours == WEEK_HOURS:
        return f"{_WEEKDAYS[day]} {hour:02d}:00"
    if hours == DAY_HOURS:
        return f"{hour:02d}:00"
    if hours % DAY_HOURS == 0:
        return f"day {day + 1} {hour:02d}:00"
    return f"hour {bucket}"


def gaps(seen: Iterable[int], hours: int) -> list[str]:
    """The runs of hours without a pair, named ("Sat 01:00-05:00"), at most MAX_GAPS_NAMED and a count."""
    present = set(seen)
    runs: list[tuple[int, int]] = []  # [start, end) bucket indexes
    start = None
    for bucket in range(hours + 1):
        missing = bucket < hours and bucket not in present
        if missing and start is None:
            start = bucket
        elif not missing and start is not None:
            runs.append((start, bucket))
            start = None
    named = [_run_label(begin, end, hours) for begin, end in runs[:MAX_GAPS_NAMED]]
    if len(runs) > MAX_GAPS_NAMED:
        named.append(f"and {len(runs) - MAX_GAPS_NAMED} more")
    return named


def _run_label(begin: int, end: int, hours: int) -> str:
    first, after = bucket_label(begin, hours), bucket_label(end % hours, hours)
    if hours in (WEEK_HOURS,) and begin // DAY_HOURS == (end - 1) // DAY_HOURS and end % DAY_HOURS:
        return f"{first}-{after.split(' ')[1]}"  # same day: "Sat 01:00-05:00"
    return f"{first}-{after}"
