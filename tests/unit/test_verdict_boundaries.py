"""Exact boundaries of the verdict: minimum samples met exactly, singular and plural, orderings, the
Passed message's parts. Written against the mutants `make mutants` found surviving (docs/mutants.md).
"""

from __future__ import annotations

import random

from shadow_operator.api.v1alpha1 import CheckSource
from shadow_operator.contract import reasons
from shadow_operator.contract.report import CLOCK_SKEW, CORRUPT_RECORD, ErrorText
from shadow_operator.job import verdict as v
from shadow_operator.job.verdict import decide, slice_checks

from .slices_factory import Cell, analysis, build_slices, coverage, make_slice, problem

PROMETHEUS = CheckSource.PROMETHEUS

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
    [overall] = [k for k in verdict.checks if (k.segment, k.hour) == ("all", None)]
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
    slices_listed = [(k.segment, k.hour) for k in verdict.checks]
    hours = [(segment, hour) for segment in ("all", "x=a") for hour in range(24)]
    assert slices_listed == [("all", None), ("x=a", None), *hours]
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
        make_slice("all", pairs=999, source=PROMETHEUS),  # short of minSamples: listed only if failing
        make_slice("x=a", pairs=100, source=PROMETHEUS),  # exactly minSamplesPerSegment: listed
        make_slice("x=b", pairs=99, source=PROMETHEUS),  # short: not listed
    ]
    verdict = judge(spec, slices, metric_slices=metrics)
    assert verdict.result == "Passed", verdict.message
    listed = {k.segment for k in verdict.checks if k.source == PROMETHEUS}
    assert listed == {"x=a"}
    # 50 record slices and 3 metric slices, one errorRate check each: all of them count in the family
    assert "among the 53 checks that could fail" in verdict.message


def test_slice_checks_default_to_the_specs_confidence():
    [check] = slice_checks(analysis(max_error_rate=0.5, confidence=0.9), "classification", make_slice(pairs=200), 100)
    assert "90% interval" in check.message


# --- the Failed message: other failures, their order and number ---


def _errors(segment="all", hour=None, pairs=2000, errors=2000, top=None, source=CheckSource.RECORDS):
    """A slice whose candidate fails `errors` of `pairs` requests; `top`: its most common error text."""
    stats = make_slice(segment, hour=hour, pairs=pairs, candidate_errors=errors, source=source)
    if top is None:
        return stats
    candidate = stats.candidate.model_copy(update={"top_errors": [ErrorText(text=top, count=errors)]})
    return stats.model_copy(update={"candidate": candidate})


def test_one_other_failure_is_named_in_the_singular():
    seen_by_prometheus = _errors(errors=1000, source=PROMETHEUS)
    verdict = judge(analysis(max_error_rate=0.01), [_errors()], metric_slices=[seen_by_prometheus])
    assert verdict.result == "Failed"
    assert verdict.message.endswith("; 1 other check failed too: errorRate on all (prometheus)"), verdict.message


def test_other_failures_list_whole_period_slices_before_hour_windows():
    slices = [_errors(), _errors(hour=3, pairs=100, errors=100)]
    verdict = judge(analysis(max_error_rate=0.01), slices, metric_slices=[_errors(errors=1000, source=PROMETHEUS)])
    assert verdict.message.startswith("errorRate failed on all traffic: "), verdict.message
    # the checks come as all, all @3h, all (prometheus); the hour window is named last
    assert verdict.message.endswith("; 2 other checks failed too: errorRate on all (prometheus), errorRate on all @3h")
    assert [(k.segment, k.hour, k.source) for k in verdict.checks] == [
        ("all", None, CheckSource.RECORDS),
        ("all", None, PROMETHEUS),
        ("all", 3, CheckSource.RECORDS),
    ]


def test_prometheus_failing_alone_names_the_records_error_of_its_own_hour():
    slices = [_errors(errors=20, top="whole-period error"), _errors(hour=5, pairs=100, errors=1, top="hour-5 error")]
    seen_by_prometheus = _errors(hour=5, pairs=5000, errors=2500, source=PROMETHEUS)
    verdict = judge(
        analysis(max_error_rate=0.05, min_samples_per_segment=100), slices, metric_slices=[seen_by_prometheus]
    )
    assert verdict.result == "Failed", verdict.message
    assert verdict.message.startswith("errorRate failed on all traffic at 05:00-06:00 UTC as Prometheus counted it: ")
    assert verdict.message.endswith("; most common candidate error: hour-5 error (1 times)"), verdict.message
    assert "whole-period error" not in verdict.message


def test_prometheus_failing_where_the_records_have_no_slice_adds_no_error_text():
    slices = [_errors(errors=20, top="whole-period error")]
    seen_by_prometheus = _errors("x=b", pairs=5000, errors=2500, source=PROMETHEUS)
    verdict = judge(analysis(max_error_rate=0.05), slices, metric_slices=[seen_by_prometheus])
    assert verdict.message.startswith("errorRate failed on segment x=b as Prometheus counted it: "), verdict.message
    assert verdict.message.endswith(
        "against maxErrorRate 5%: the whole interval is above the limit; primary 0% (0 of 5000)"
    )


def test_a_records_failure_names_its_error_text_once():
    verdict = judge(analysis(max_error_rate=0.05), [_errors(top="KeyError: 'x'")])
    assert verdict.message.count("most common candidate error") == 1, verdict.message
    assert verdict.message.endswith("; most common candidate error: KeyError: 'x' (2000 times)")


# --- the Passed message: each optional part, singular and plural, after the counts ---


def _passed(spec, slices):
    verdict = judge(spec, slices)
    assert (verdict.result, verdict.reason) == ("Passed", reasons.VERDICT_PASSED), verdict.message
    assert verdict.message.startswith("all "), verdict.message
    return verdict.message


def test_one_thin_hour_window_is_named_in_the_singular_after_the_counts():
    slices = [make_slice(pairs=2000), make_slice(hour=0, pairs=100)]
    message = _passed(analysis(max_error_rate=0.02, min_samples_per_segment=100), slices)
    assert message.startswith("all 1 checks passed on 2 slices over 2000 pairs and 168h (each within its limit")
    assert message.endswith("stays under 5%); 1 hour-window check too thin to confirm a pass, none failing")


def _segments(*pairs: int):
    """All traffic (20,000 pairs, equal latency) and segments x=a, x=b, ... of the given sizes."""
    return [make_slice(pairs=20000), *(make_slice(f"x={chr(97 + i)}", pairs=n) for i, n in enumerate(pairs))]


TAILS = {"latency_ratio": {"p95": 1.2, "p99": 1.2}}


def test_two_thin_tails_are_named_in_the_plural_after_the_counts():
    # 500 requests: 25 beyond the p95 and 5 beyond the p99, both under TAIL_SAMPLES
    message = _passed(analysis(**TAILS, min_samples=1000), _segments(500, 19500))
    assert message.startswith("all 4 checks passed on 3 slices over 20000 pairs"), message
    assert message.endswith(
        "; 2 latency quantiles of thin segments not judged (fewer than 30 requests beyond them): "
        "latencyP95Ratio on x=a, latencyP99Ratio on x=a"
    )


def test_exactly_thirty_requests_beyond_a_p50_are_judged_one_fewer_are_not():
    spec = analysis(latency_ratio={"p50": 1.2}, min_samples=1000, min_samples_per_segment=50)
    judged = judge(spec, _segments(60, 19940))  # 30 beyond the p50: its interval straddles 1.2x, inconclusive
    assert (judged.result, judged.reason) == ("Inconclusive", reasons.INSUFFICIENT_DATA), judged.message
    assert judged.message.startswith("1 of 3 checks inconclusive: latencyP50Ratio on x=a; ")
    message = _passed(spec, _segments(59, 19941))  # 29.5 beyond it: shown, not judged
    assert message.endswith(
        "; 1 latency quantile of thin segments not judged (fewer than 30 requests beyond them): latencyP50Ratio on x=a"
    )


def test_a_p99_with_enough_requests_beyond_it_is_judged_not_excused_as_thin():
    spec = analysis(latency_ratio={"p99": 1.05}, min_samples=1000)
    verdict = judge(spec, _segments(5000, 15000))  # 50 beyond the p99; 0.9x to 1.1x straddles 1.05x
    assert verdict.result == "Inconclusive", verdict.message
    assert "latencyP99Ratio on x=a" in verdict.message and "thin segments" not in verdict.message


def test_one_data_quality_warning_is_named_in_the_singular():
    slices = [make_slice(pairs=2000, feature_missing={"$.x": 0.5})]
    message = _passed(analysis(max_error_rate=0.5, max_feature_missing_rate=0.01), slices)
    assert message == (
        "all 1 checks passed on 1 slice over 2000 pairs and 168h; 1 data-quality warning about the requests, "
        "the same for both models: featureMissing:$.x on all"
    )


def test_slices_short_of_min_samples_per_segment_are_counted_in_the_singular_and_plural():
    spec = analysis(max_error_rate=0.5, min_samples=1000, min_samples_per_segment=100)
    one = _passed(spec, _segments(99, 19901))
    assert one.endswith("; 1 slice with fewer than minSamplesPerSegment 100 pairs not judged: x=a"), one
    two = _passed(spec, _segments(99, 98, 19803))
    assert two.endswith("; 2 slices with fewer than minSamplesPerSegment 100 pairs not judged: x=a, x=b"), two


# --- Prometheus's slices get their own minimum and the family-wise level ---


def test_a_metric_slices_latency_check_uses_its_minimum_and_the_level_given():
    spec = analysis(latency_ratio={"p50": 2.0})
    [short] = v._traffic_checks(spec, make_slice(pairs=2000, source=PROMETHEUS), 5000, 0.999)
    assert (short.segment, short.hour, short.source) == ("all", None, PROMETHEUS)
    assert short.passed is None and "only 2000 requests on one side, fewer than the 5000 needed" in short.message
    [judged] = v._traffic_checks(spec, make_slice(pairs=2000, source=PROMETHEUS), 1000, 0.999)
    assert judged.passed is True and "(99.9% interval" in judged.message, judged.message


# --- with a noise baseline: each slice is judged against the baseline's same slice ---


def test_agreement_judged_against_the_baselines_same_slice_passes():
    candidate = [make_slice(pairs=4000, agreement=0.8)]
    noise = [make_slice(pairs=4000, agreement=0.8)]
    spec = analysis(min_agreement=0.95)
    verdict = decide(spec, "classification", candidate, coverage(candidate), [], True, NOW, baseline_slices=noise)
    assert (verdict.result, verdict.reason) == ("Passed", reasons.VERDICT_PASSED), verdict.message
    [check] = verdict.checks
    assert check.primary == 0.8 and "two primaries agree on 80%" in check.message


def test_an_absolute_difference_judged_against_the_baselines_same_slice_passes():
    candidate = [make_slice(pairs=4000, abs_diff_mean=1.5)]
    noise = [make_slice(pairs=4000, abs_diff_mean=1.0)]
    spec = analysis(max_abs_diff={"mean": 0.5})
    verdict = decide(spec, "regression", candidate, coverage(candidate), [], True, NOW, baseline_slices=noise)
    assert (verdict.result, verdict.reason) == ("Passed", reasons.VERDICT_PASSED), verdict.message
    [check] = verdict.checks
    assert (check.name, check.primary, check.passed) == ("absDiffMean", 1.0, True)
