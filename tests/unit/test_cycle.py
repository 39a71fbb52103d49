"""Business-cycle coverage from the data: hour buckets of minDuration, gaps named (job/cycle.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from shadow_operator.contract import reasons
from shadow_operator.contract.timestamps import timestamp
from shadow_operator.controller.progress import compute_coverage
from shadow_operator.job import cycle
from shadow_operator.job.job import analyze

from ..support.week import WEEK_START
from .factories import make_sd
from .records_factory import pair, write

HOUR = 3600


@pytest.mark.parametrize(
    ("min_duration_seconds", "hours"),
    [(168 * HOUR, 168), (24 * HOUR, 24), (2 * HOUR, 2), (90 * 60, 0), (180, 0), (26.5 * HOUR, 0)],
)
def test_cycles_of_whole_hours_are_bucketed_shorter_ones_judged_by_time(min_duration_seconds, hours):
    assert cycle.cycle_hours(min_duration_seconds) == hours


@pytest.mark.parametrize(
    ("offset_hours", "bucket", "label"),
    [(0.5, 0, "Mon 00:00"), (5 * 24 + 1.5, 121, "Sat 01:00"), (167.99, 167, "Sun 23:00"), (168.2, 0, "Mon 00:00")],
)
def test_a_week_starts_on_monday_midnight_utc(offset_hours, bucket, label):
    ts = WEEK_START + offset_hours * HOUR
    assert datetime.fromtimestamp(WEEK_START, UTC).weekday() == 0
    assert duckdb.connect().execute(f"SELECT {cycle.bucket_sql(repr(ts), 168)}").fetchone()[0] == bucket
    assert cycle.bucket_label(bucket, 168) == label


def test_gaps_are_named_as_runs_of_hours():
    week = set(range(168)) - {121, 122, 123, 124} - {166, 167}
    assert cycle.gaps(week, 168) == ["Sat 01:00-05:00", "Sun 22:00-Mon 00:00"]
    assert cycle.gaps(set(range(24)) - {3}, 24) == ["03:00-04:00"]
    assert cycle.gaps(set(range(168)), 168) == []
    scattered = set(range(0, 168, 2))
    named = cycle.gaps(scattered, 168)
    assert len(named) == cycle.MAX_GAPS_NAMED + 1 and named[-1] == f"and {84 - cycle.MAX_GAPS_NAMED} more"


def _week(tmp_path: Path, skip: set[int]) -> Path:
    """Two clean pairs in every hour of the week but those in `skip` (hours since Monday 00:00 UTC)."""
    records = [
        pair(f"r-{hour}-{i}", ts=WEEK_START + hour * HOUR + 600 * (i + 1))
        for hour in range(168)
        if hour not in skip
        for i in range(2)
    ]
    write(tmp_path / "records.jsonl", records)
    return tmp_path / "records.jsonl"


SPEC = {"analysis": {"prometheus": None, "minSamples": 10, "minSamplesPerSegment": 1}}
NOW = datetime.fromtimestamp(WEEK_START, UTC) + timedelta(days=8)


def test_hours_without_pairs_hold_back_a_pass_and_are_named(tmp_path):
    """A router down on Saturday night: time has passed, the hours were never seen."""
    report = analyze(make_sd(SPEC), [_week(tmp_path, skip={121, 122, 123, 124})], now=NOW)
    assert (report.coverage.cycle_hours, report.coverage.hours_seen) == (168, 164)
    assert report.coverage.gaps == ["Sat 01:00-05:00"]
    assert report.coverage.percent == 164 * 100 // 168
    assert (report.verdict.result, report.verdict.reason) == ("Inconclusive", reasons.COVERAGE_INCOMPLETE)
    assert "164 of the 168 hours" in report.verdict.message and "Sat 01:00-05:00" in report.verdict.message


def test_every_hour_seen_lets_the_cycle_count(tmp_path):
    report = analyze(make_sd(SPEC), [_week(tmp_path, skip=set())], now=NOW)
    assert (report.coverage.hours_seen, report.coverage.gaps, report.coverage.percent) == (168, [], 100)
    assert report.verdict.reason != reasons.COVERAGE_INCOMPLETE, report.verdict.message


def test_status_coverage_counts_the_hours_the_report_saw():
    sd = make_sd()
    since = timestamp(NOW - timedelta(days=10))
    coverage = compute_coverage(sd, since, NOW, 100_000, hours=(150, 168))
    assert (coverage.percent, coverage.hours_seen, coverage.required_hours) == (89, 150, 168)
    assert coverage.summary == "89% of 168h (150 of 168 hours seen)"
    assert compute_coverage(sd, since, NOW, 100_000).percent == 100


# --- exact boundaries (mutation testing, docs/mutants.md) ---


@pytest.mark.parametrize(("seconds", "hours"), [(HOUR, 0), (2 * HOUR, 2), (3 * HOUR, 3), (169 * HOUR, 169)])
def test_one_hour_is_too_short_to_bucket_two_hours_are_enough(seconds, hours):
    assert cycle.cycle_hours(seconds) == hours


@pytest.mark.parametrize(
    ("bucket", "hours", "label"),
    [(0, 48, "day 1 00:00"), (25, 48, "day 2 01:00"), (71, 72, "day 3 23:00"), (3, 5, "hour 3"), (30, 36, "hour 30")],
)
def test_cycles_of_whole_days_name_the_day_others_the_hour(bucket, hours, label):
    assert cycle.bucket_label(bucket, hours) == label


def test_a_gap_ending_at_the_last_hour_of_a_day_or_the_first_stays_on_that_day():
    saturday = 5 * 24
    # Sat 01:00 to 23:00 (the last missing hour 22:00, the run ends at 23:00 on the same day)
    assert cycle.gaps(set(range(168)) - set(range(saturday + 1, saturday + 23)), 168) == ["Sat 01:00-23:00"]
    # one hour at Saturday midnight: 00:00-01:00 on Saturday
    assert cycle.gaps(set(range(168)) - {saturday}, 168) == ["Sat 00:00-01:00"]
    # up to midnight: the end is the next day's 00:00
    assert cycle.gaps(set(range(168)) - set(range(saturday + 20, saturday + 24)), 168) == ["Sat 20:00-Sun 00:00"]


def test_exactly_max_gaps_named_are_all_named_without_a_count():
    seen = set(range(24)) - {2 * i for i in range(cycle.MAX_GAPS_NAMED)}
    named = cycle.gaps(seen, 24)
    assert named == [f"{2 * i:02d}:00-{2 * i + 1:02d}:00" for i in range(cycle.MAX_GAPS_NAMED)]
    one_more = cycle.gaps(seen - {2 * cycle.MAX_GAPS_NAMED}, 24)
    assert one_more[-1] == "and 1 more" and len(one_more) == cycle.MAX_GAPS_NAMED + 1
