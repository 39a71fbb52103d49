"""The one coverage rule the job's report and the operator's status share (contract/coverage.py)."""

from __future__ import annotations

import pytest

from shadow_operator.contract.coverage import coverage, time_coverage_percent

WEEK = 7 * 24 * 3600.0


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(0, 0), (-5, 0), (WEEK / 2, 50), (175392.0, 29), (344736.0, 57), (WEEK - 1, 99), (WEEK, 100), (1e308, 100)],
)
def test_time_is_whole_percent_floored_and_a_covered_cycle_is_100_without_overflow(elapsed, expected):
    # 0.29 and 0.57 of a week: float division reads 28.999... and 56.999..., one percent low
    assert time_coverage_percent(elapsed, WEEK) == expected


def test_the_lowest_of_time_samples_and_hours_is_the_coverage():
    assert coverage(WEEK, WEEK, 500, 1000) == (100, 50, 100, 50)
    assert coverage(WEEK / 4, WEEK, 5000, 1000) == (25, 100, 100, 25)
    assert coverage(WEEK, WEEK, 5000, 1000, (84, 168)) == (100, 100, 50, 50)
    assert coverage(WEEK, WEEK, 5000, 1000, None).hours == 100  # judged by time alone


def test_degenerate_requirements_never_divide_by_zero():
    assert coverage(10, 0, 0, 0, (0, 0)) == (100, 0, 100, 0)
