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


# The cases below were each written for a mutant of contract/coverage.py that survived the tests
# above (make mutants): every boundary of the rule, pinned.


def test_time_coverage_is_never_rounded_up_to_the_next_percent():
    # just below 5% of 0.7 s: true division rounds the quotient to 5.0; the coverage is 4%
    assert time_coverage_percent(0.034999999999999996, 0.7) == 4
    assert time_coverage_percent(0.5, 100) == 0  # half a percent is no percent (not a clamp to 1 s)


def test_a_short_but_positive_requirement_is_a_real_requirement():
    assert time_coverage_percent(0.5, 1) == 50  # 1 s is not "no requirement"
    assert time_coverage_percent(-5, 0) == 100  # nothing required: covered, whatever the clock says


def test_reaching_a_huge_requirement_exactly_is_covered_without_overflow():
    assert time_coverage_percent(1e308, 1e308) == 100  # 1e308 * 100 would be inf


def test_samples_coverage_floors_whole_percent():
    assert coverage(WEEK, WEEK, 1, 3).samples == 33  # not 33.33
    assert isinstance(coverage(WEEK, WEEK, 1, 3).samples, int)
    assert coverage(WEEK, WEEK, 999, 1000).samples == 99  # one short of the requirement is not 100%
    assert coverage(WEEK, WEEK, 1, 1).samples == 100  # one sample required, one seen


def test_more_hours_seen_than_the_cycle_has_is_still_100_percent():
    assert coverage(WEEK, WEEK, 10, 10, (2, 1)).hours == 100
