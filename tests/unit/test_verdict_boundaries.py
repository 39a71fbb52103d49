"""Exact boundaries of the verdict: minimum samples met exactly, singular and plural, orderings, the
Passed message's parts. Written against the mutants `make mutants` found surviving (docs/mutants.md).
"""

from __future__ import annotations

import random

from shadow_operator.contract import reasons
from shadow_operator.contract.report import CLOCK_SKEW, CORRUPT_RECORD
from shadow_operator.job import verdict as v
from shadow_operator.job.verdict import decide, slice_checks

from .slices_factory import Cell, analysis, build_slices, coverage, make_slice, problem

NOW = "2025-06-01T12:00:00Z"


def judge(spec, slices, cov=None, problems=(), prediction_type="classification", metric_slices=()):
    cov = cov if cov is not None else coverage(slices)
    return decide(spec, prediction_type, slices, cov, list(problems), True, NOW, metric_slices=metric_slices)


def test_exactly_min_samples_everywhere_is_judged_and_passes():
    # 40 pairs an hour: 960 in all (minSamples 960), 40 in each hour window (minSamplesPerSegment 40)
    slices = build_slices(Cell("x=a", hour, 40) for hour in range(24))
    spec = analysis(max_error_rate=0.5, min_samples=960, min_samples_per_segment=40)
    verdict = judge(spec, slices)
    assert (verdict.result, verdict.reason) == ("Passed", reasons.VERDICT_PASSED), verdict.message
    # all, x=a and 48 hour windows: every one judged, none "not judged"
    assert verdict.message.startswith("all 50 checks passed on 50 slices over 960 pairs and 168h (")
    assert "not judged" not in verdict.message
    short = judge(analysis(max_error_rate=0.5, min_samples=961, min_samples_per_segment=40), slices)
    assert short.result == "Inconclusive"
    assert short.message.startswith("960 mirrored pairs so far, fewer than minSamples 961 (")


def test_a_single_pair_and_a_single_check_pass_in_the_singular():
    spec = analysis(max_error_rate=0.99, min_samples=1, min_samples_per_segment=1)
    verdict = judge(spec, [make_slice(pairs=1)])
    assert (verdict.result, verdict.message) == ("Passed", "all 1 checks passed on 1 slice over 1 pairs and 168h")


def test_the_family_wise_level_is_named_once_two_checks_could_fail():
    spec = analysis(max_error_rate=0.99, max_error_rate_increase=0.99, min_samples=1, min_samples_per_segment=1)
    verdict = judge(spec, [make_slice(pairs=1)])
    assert verdict.message == (
        "all 2 checks passed on 1 slice over 1 pairs and 168h (each within its limit at 95%; a failure needs 97.5%, "
        "so that a false failure among the 2 checks that could fail stays under 5%)"
    )


def test_passing_checks_are_shown_at_the_verdicts_own_confidence():
    slices = build_slices(Cell("x=a", hour, 100) for hour in range(24))
    verdict = judge(analysis(max_error_rate=0.5, min_samples=1000), slices)
    assert verdict.result == "Passed"
    [overall] = [k for k in verdict.checks if k.segment == "all"]
    assert "(0 of 2400 requests, 95% interval 0% to 0.16%)" in overall.message


def test_no_records_names_the_first_problem():
    verdict = judge(analysis(max_error_rate=0.01), [], cov=coverage([]), problems=[problem(CORRUPT_RECORD, 3)])
    assert verdict.message == "no records: no mirrored pairs have been analysed yet (3 lines with CorruptRecord)"
    one = judge(analysis(max_error_rate=0.01, min_samples=1), [make_slice(pairs=1)])
    assert not one.message.startswith("no records")


def test_only_feature_checks_cannot_pass_a_candidate():
    slices = [make_slice(pairs=2000, feature_missing={"$.x": 0.0})]
    verdict = judge(analysis(max_feature_missing_rate=0.01), slices)
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.INSUFFICIENT_DATA)
    assert verdict.message == (
        "no check could be computed from the slices measured (no recorded feature or prediction to judge)"
    )


def test_thresholds_are_judged_for_the_prediction_type():
    spec = analysis(min_agreement=0.9, max_error_rate=0.01)
    verdict = judge(spec, [make_slice(pairs=2000)], prediction_type="regression")
    assert verdict.reason == reasons.THRESHOLDS_INCONSISTENT
    both = analysis(max_error_rate=0.01, min_samples=100, min_samples_per_segment=500, min_duration="5m")
    message = judge(both, [make_slice(pairs=2000)]).message
    assert message.startswith("(1) spec.analysis.minSamplesPerSegment: 500 is above minSamples 100")
    assert message.endswith("the time between two comparison runs")  # the last ';' dropped, nothing more


def test_bad_records_count_only_when_there_are_some():
    problems = [problem(CORRUPT_RECORD, 0), problem(CLOCK_SKEW, 1), problem(CLOCK_SKEW, 2)]
    assert v._bad_records(problems) == {CLOCK_SKEW: 3}


def test_bad_records_without_analysed_samples_are_all_of_them():
    slices = [make_slice(pairs=2000)]
    cov = coverage(slices).model_copy(update={"samples": 0})
    verdict = judge(analysis(max_error_rate=0.5), slices, cov=cov, problems=[problem(CORRUPT_RECORD, 5)])
    assert verdict.message.startswith("5 corrupt records (CorruptRecord): 100% of the 0 pairs analysed")


def test_five_names_are_listed_whole():
    assert v._listed(["a", "b", "c", "d", "e"]) == "a, b, c, d, e"
    assert v._listed(["a", "b", "c", "d", "e", "f"]) == "a, b, c, d, e and 1 more"


def test_all_traffic_short_of_min_samples_is_shown_never_passed():
    slices = [make_slice(pairs=900)]
    verdict = judge(analysis(max_error_rate=0.5, min_samples=1000), slices)
    [check] = verdict.checks
    assert check.passed is None
    assert check.message.startswith("not judged, only 900 of the minSamples 1000 pairs so far: ")


def test_hour_windows_are_ordered_by_hour_whatever_order_they_come_in():
    slices = build_slices(Cell("x=a", hour, 100) for hour in range(24))
    shuffled = slices[:2] + random.Random(3).sample(slices[2:], len(slices) - 2)
    verdict = judge(analysis(max_error_rate=0.5), shuffled)
    segments = [k.segment for k in verdict.checks]
    assert segments == ["all", "x=a", *(f"all@{h}h" for h in range(24)), *(f"x=a@{h}h" for h in range(24))]
    # all traffic is found as the whole-period slice wherever it stands
    backwards = judge(analysis(max_error_rate=0.5), list(reversed(slices)))
    assert "over 2400 pairs" in backwards.message


def test_thin_hour_windows_are_named_as_such_and_nothing_else():
    # 0 errors in 100 requests an hour cannot confirm a rate below 2%; all and the segment can
    slices = build_slices(Cell("x=a", hour, 100) for hour in range(24))
    verdict = judge(analysis(max_error_rate=0.02, min_samples_per_segment=100), slices)
    assert verdict.result == "Passed", verdict.message
    assert verdict.message.endswith("; 48 hour-window checks too thin to confirm a pass, none failing")
    one_hour = [s for s in slices if s.hour in (None, 0)]
    single = judge(analysis(max_error_rate=0.02, min_samples=100, min_samples_per_segment=100), one_hour)
    assert single.message.endswith("; 2 hour-window checks too thin to confirm a pass, none failing")


def test_metric_slices_use_the_minimum_of_what_they_view():
    slices = build_slices(Cell("x=a", hour, 100) for hour in range(24))
    spec = analysis(max_error_rate=0.5, min_samples=1000, min_samples_per_segment=100)
    metrics = [
        make_slice("prometheus:all", pairs=999),  # short of minSamples: listed only if failing
        make_slice("prometheus:x=a", pairs=100),  # exactly minSamplesPerSegment: listed
        make_slice("prometheus:x=b", pairs=99),  # short: not listed
    ]
    verdict = judge(spec, slices, metric_slices=metrics)
    assert verdict.result == "Passed", verdict.message
    listed = {k.segment for k in verdict.checks if k.segment.startswith("prometheus:")}
    assert listed == {"prometheus:x=a"}
    # 50 record slices and 3 metric slices, one errorRate check each: all of them count in the family
    assert "among the 53 checks that could fail" in verdict.message


def test_slice_checks_default_to_the_specs_confidence():
    [check] = slice_checks(analysis(max_error_rate=0.5, confidence=0.9), "classification", make_slice(pairs=200), 100)
    assert "90% interval" in check.message
