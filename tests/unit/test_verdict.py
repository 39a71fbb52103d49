"""The verdict drawn from whole sets of slices: exact results, reasons and the evidence named."""

from __future__ import annotations

import pytest

from shadow_operator.api.v1alpha1 import CheckSource
from shadow_operator.contract import reasons
from shadow_operator.contract.report import CLOCK_SKEW, CORRUPT_RECORD, UNPAIRED_RECORD
from shadow_operator.controller.progress import MAX_CHECKS_IN_STATUS, verdict_for_status
from shadow_operator.job.verdict import decide, failure_reason

from .slices_factory import DAY, WEEK, Cell, analysis, build_slices, coverage, make_slice, problem

NOW = "2025-06-01T12:00:00Z"
NO_HISTORY, HISTORY = "history=<1", "history=>=1"
SLOW = (500.0, 900.0, 1200.0)  # ten times the factory's default latency


def full_thresholds(**overrides):
    limits = dict(
        latency_ratio={"p50": 1.2, "p95": 1.3, "p99": 1.5},
        max_error_rate=0.01,
        max_error_rate_increase=0.01,
        min_agreement=0.95,
        max_feature_missing_rate=0.05,
    )
    return analysis(**{**limits, **overrides})


def equivalent_day(**no_history):
    """A day of traffic where the candidate behaves like the primary: 500 + 1200 pairs an hour."""
    cells = []
    for hour in range(24):
        cells.append(Cell(NO_HISTORY, hour, 500, agreeing=495, feature_missing={"$.f": 5}, **no_history))
        cells.append(Cell(HISTORY, hour, 1200, agreeing=1188, feature_missing={"$.f": 12}))
    return build_slices(cells)


def judge(spec, slices, cov=None, problems=(), metrics_available=True, prediction_type="classification"):
    return decide(
        spec,
        prediction_type,
        slices,
        cov if cov is not None else coverage(slices),
        list(problems),
        metrics_available,
        NOW,
    )


# --- Passed ------------------------------------------------------------------------------


def test_equivalent_candidate_with_full_coverage_passes():
    verdict = judge(full_thresholds(), equivalent_day())
    assert (verdict.result, verdict.reason) == ("Passed", "Passed")
    # 3 whole-period slices x 7 checks + 72 hour windows x (errorRate, errorRateIncrease, agreement)
    assert len(verdict.checks) == 3 * 7 + 72 * 3
    assert all(check.passed is True for check in verdict.checks)
    # 234 checks can fail (the 3 feature checks cannot): a failure needs 1 - 5%/234 = 99.9786%; a pass
    # needs each check within its limit at 95% (an intersection-union test needs no adjustment)
    assert verdict.message == (
        "all 237 checks passed on 75 slices over 40800 pairs and 168h (each within its limit at 95%; a failure "
        "needs 99.9786%, so that a false failure among the 234 checks that could fail stays under 5%)"
    )
    assert verdict.evaluated_at == NOW


def test_checks_are_sorted_all_then_segments_then_hours():
    verdict = judge(full_thresholds(), equivalent_day())
    slices = list(dict.fromkeys((check.segment, check.hour) for check in verdict.checks))
    assert slices[:5] == [("all", None), (NO_HISTORY, None), (HISTORY, None), ("all", 0), ("all", 1)]
    assert slices[26:29] == [("all", 23), (NO_HISTORY, 0), (NO_HISTORY, 1)]
    assert slices[-1] == (HISTORY, 23)
    assert [check.name for check in verdict.checks[:7]] == [
        "errorRate",
        "errorRateIncrease",
        "latencyP50Ratio",
        "latencyP95Ratio",
        "latencyP99Ratio",
        "agreement",
        "featureMissing:$.f",
    ]
    hour_names = {check.name for check in verdict.checks if check.hour is not None}
    assert hour_names == {"errorRate", "errorRateIncrease", "agreement"}


def test_small_segments_are_not_judged_and_said_so():
    # thin and clean: their checks are counted in the family (they could fail) but not listed
    cells = [Cell("history=missing", hour, 2) for hour in range(24)]
    slices = equivalent_day() + [s for s in build_slices(cells) if s.segment != "all"]
    verdict = judge(full_thresholds(), slices)
    assert verdict.result == "Passed"
    assert not any(check.segment.startswith("history=missing") for check in verdict.checks)
    assert verdict.message.endswith(
        "; 25 slices with fewer than minSamplesPerSegment 100 pairs not judged: history=missing, "
        "history=missing @0h, history=missing @1h, history=missing @2h, history=missing @3h and 20 more"
    )


def test_regression_candidate_passes_on_absolute_difference():
    cells = [Cell("all-users=x", hour, 1000, abs_diff_mean=0.01, abs_diff_p95=0.05) for hour in range(24)]
    spec = analysis(max_abs_diff={"mean": 0.02, "p95": 0.1})
    verdict = judge(spec, build_slices(cells, regression=True), prediction_type="regression")
    assert (verdict.result, verdict.reason) == ("Passed", "Passed")
    assert {check.name for check in verdict.checks} == {"absDiffMean", "absDiffP95"}


# --- Failed ------------------------------------------------------------------------------


def test_a_segment_with_8_percent_candidate_errors_fails_naming_it():
    cells = [Cell(NO_HISTORY, h, 500, candidate_errors=40) for h in range(24)]
    cells += [Cell(HISTORY, h, 1200) for h in range(24)]
    verdict = judge(analysis(max_error_rate=0.001), build_slices(cells))
    assert (verdict.result, verdict.reason) == ("Failed", reasons.CANDIDATE_ERRORS)
    # 75 errorRate checks: each at 1 - 5%/75 = 99.9333%; all traffic without history=<1 is clean, so
    # the segment explains every other failure
    assert verdict.message == (
        "errorRate failed on segment history=<1: candidate error rate 8% (960 of 12000 requests, "
        "99.9333% interval 7.2% to 8.88%) against maxErrorRate 0.1%: the whole interval is above the limit; "
        "primary 0% (0 of 12000); explains 49 other failing checks: errorRate on all, errorRate on all @0h, "
        "errorRate on all @1h, errorRate on all @2h, errorRate on all @3h and 44 more"
    )
    failing = {check.segment for check in verdict.checks if check.passed is False}
    assert HISTORY not in failing and "all" in failing
    assert not any(check.passed is False for check in verdict.checks if check.segment == HISTORY)
    # The cause comes first, so the status (which keeps the first 40 of these 50 failing checks) names it.
    assert (verdict.checks[0].name, verdict.checks[0].segment) == ("errorRate", NO_HISTORY)
    kept = verdict_for_status(verdict).checks
    assert len(kept) == MAX_CHECKS_IN_STATUS and (kept[0].name, kept[0].segment) == ("errorRate", NO_HISTORY)


def test_a_segment_ten_times_slower_fails_on_latency_naming_it_with_the_ratio():
    cells = [Cell(NO_HISTORY, h, 500, candidate_latency=SLOW) for h in range(24)]
    cells += [Cell(HISTORY, h, 1200) for h in range(24)]
    spec = analysis(latency_ratio={"p50": 1.2, "p95": 1.3, "p99": 1.5}, max_error_rate=0.01)
    verdict = judge(spec, build_slices(cells))
    assert (verdict.result, verdict.reason) == ("Failed", reasons.LATENCY_REGRESSION)
    assert verdict.message.startswith(
        "latencyP50Ratio failed on segment history=<1: candidate p50 latency 500 ms is 10.00x the primary's "
        "50 ms against latencyRatio.p50 1.2x (99.98% interval 9.31x to 10.74x; candidate 482.2 to 517.8 ms, "
        "primary 48.22 to 51.78 ms): the whole interval is above the limit (12000 candidate and 12000 primary "
        "requests); explains 1 other failing check: latencyP50Ratio on all; 4 other checks failed too"
    )
    # hour windows are not judged on latency
    assert all(check.passed is not False for check in verdict.checks if check.hour is not None)


def test_divergence_confined_to_night_hours_fails_naming_the_hour():
    cells = []
    for hour in range(24):
        night = 2 <= hour <= 4
        a, b = (200, 500) if night else (400, 1200 - 400)
        rate = 0.6 if night else 0.99
        cells.append(Cell(NO_HISTORY, hour, a, agreeing=round(a * rate)))
        cells.append(Cell(HISTORY, hour, b, agreeing=round(b * rate)))
    slices = build_slices(cells)
    overall = slices[0]
    assert overall.agreement == pytest.approx(0.96)
    verdict = judge(analysis(min_agreement=0.95), slices)
    assert (verdict.result, verdict.reason) == ("Failed", reasons.PREDICTION_DIVERGENCE)
    assert verdict.message.startswith(
        "agreement failed on all traffic at 02:00-03:00 UTC: the models agree on 60% of comparable pairs (420 of 700,"
    )
    assert "8 other checks failed too: agreement on all @3h, agreement on all @4h, " in verdict.message
    by_slice = {(check.segment, check.hour): check.passed for check in verdict.checks}
    assert by_slice["all", None] is True  # 96% overall hides it; only the hour windows show it
    assert [s for s, passed in by_slice.items() if passed is False] == [
        (segment, hour) for segment in ("all", NO_HISTORY, HISTORY) for hour in (2, 3, 4)
    ]


def test_candidate_errors_outrank_latency_and_divergence():
    cells = [Cell(NO_HISTORY, h, 500, candidate_errors=40, candidate_latency=SLOW, agreeing=300) for h in range(24)]
    verdict = judge(full_thresholds(), build_slices(cells))
    assert verdict.reason == reasons.CANDIDATE_ERRORS
    cells = [Cell(NO_HISTORY, h, 500, candidate_latency=SLOW, agreeing=300) for h in range(24)]
    assert judge(full_thresholds(), build_slices(cells)).reason == reasons.LATENCY_REGRESSION


def test_a_missing_feature_warns_and_never_fails():
    # The feature is read from the request both models get: its missing rate says nothing about the candidate.
    cells = [
        Cell(NO_HISTORY, h, 500, agreeing=495, feature_missing={"$.features.purchase_count": 150}) for h in range(24)
    ]
    verdict = judge(full_thresholds(), build_slices(cells))
    assert (verdict.result, verdict.reason) == ("Passed", reasons.VERDICT_PASSED)
    assert verdict.message.endswith(
        "; 2 data-quality warnings about the requests, the same for both models: "
        "featureMissing:$.features.purchase_count on all, featureMissing:$.features.purchase_count on history=<1"
    )
    warning = next(check for check in verdict.checks if check.name.startswith("featureMissing:"))
    assert warning.passed is None
    assert warning.message.startswith("$.features.purchase_count is missing in 30% of requests (3600 of 12000")
    assert "cannot fail the candidate" in warning.message


def test_a_segment_on_a_feature_path_gets_no_feature_check_on_that_path():
    # history is bucketed on $.features.purchase_count: its `missing` bucket misses it in 100% by definition
    path = "$.features.purchase_count"
    cells = [
        Cell("history=missing", h, 500, agreeing=495, feature_missing={path: 500, "$.other": 0}) for h in range(24)
    ]
    cells += [Cell(HISTORY, h, 1200, agreeing=1188, feature_missing={path: 0, "$.other": 0}) for h in range(24)]
    slices = build_slices(cells)
    verdict = decide(
        full_thresholds(), "classification", slices, coverage(slices), [], True, NOW, segment_paths={"history": path}
    )
    assert verdict.result == "Passed"
    features = {(k.name, k.segment) for k in verdict.checks if k.name.startswith("featureMissing:")}
    assert (f"featureMissing:{path}", "all") in features  # 29% of all requests: a warning, reported
    assert not any(name == f"featureMissing:{path}" and seg.startswith("history=") for name, seg in features)
    assert ("featureMissing:$.other", "history=missing") in features


def test_regression_divergence_fails_on_absolute_difference():
    cells = [Cell("region=eu", hour, 1000, abs_diff_mean=0.01, abs_diff_p95=0.05) for hour in range(24)]
    cells[5] = Cell("region=eu", 5, 1000, abs_diff_mean=0.5, abs_diff_p95=2.0)
    spec = analysis(max_abs_diff={"mean": 0.02, "p95": 0.1})
    verdict = judge(spec, build_slices(cells, regression=True), prediction_type="regression")
    assert (verdict.result, verdict.reason) == ("Failed", reasons.PREDICTION_DIVERGENCE)
    # the mean is 25 times its limit there, the p95 20 times: the worst excess is named, on the
    # segment's hour window rather than all traffic's identical one (the more specific slice)
    assert verdict.message == (
        "absDiffMean failed on segment region=eu at 05:00-06:00 UTC: mean absolute difference 0.5 "
        "over 1000 comparable pairs against maxAbsDiff.mean 0.02: above the limit; explains 3 other failing checks: "
        "absDiffMean on all, absDiffMean on region=eu, absDiffMean on all @5h; 4 other checks failed too: "
        "absDiffP95 on all, absDiffP95 on region=eu, absDiffP95 on all @5h, absDiffP95 on region=eu @5h"
    )


def test_decisive_failure_on_a_segment_fails_before_min_samples_overall():
    cells = [Cell(NO_HISTORY, h, 20, candidate_errors=10) for h in range(24)]  # 480 pairs
    verdict = judge(analysis(max_error_rate=0.001), build_slices(cells))
    assert (verdict.result, verdict.reason) == ("Failed", reasons.CANDIDATE_ERRORS)
    assert verdict.message.startswith("errorRate failed on segment history=<1: candidate error rate 50%")
    # decisive evidence counts at any size, all traffic's too (issue 10, item 5)
    overall = [check for check in verdict.checks if (check.segment, check.hour) == ("all", None)]
    assert [check.passed for check in overall] == [False]
    assert "decisive even with 480 requests (fewer than the 1000 needed to pass)" in overall[0].message


def test_a_thin_segment_failing_completely_fails_and_is_named():
    # 150 requests, all failing (interval ~95%-100%), beside a big segment with a few errors
    cells = [Cell(NO_HISTORY, h, 6, candidate_errors=6) for h in range(24)]  # 144 pairs, under 100 an hour
    cells += [Cell(HISTORY, h, 1200, candidate_errors=1) for h in range(24)]
    verdict = judge(analysis(max_error_rate=0.01), build_slices(cells))
    assert (verdict.result, verdict.reason) == ("Failed", reasons.CANDIDATE_ERRORS)
    assert verdict.message.startswith(
        "errorRate failed on segment history=<1: candidate error rate 100% (144 of 144 requests, "
    )
    assert "decisive even with 144 requests (fewer than the 100 needed" not in verdict.message
    assert not any(check.passed is False for check in verdict.checks if check.segment == HISTORY)


def test_thin_clean_overall_is_shown_not_judged():
    cells = [Cell(NO_HISTORY, h, 20) for h in range(24)]  # 480 pairs
    verdict = judge(analysis(max_error_rate=0.5), build_slices(cells))
    overall = [check for check in verdict.checks if (check.segment, check.hour) == ("all", None)]
    assert [check.passed for check in overall] == [None]
    assert overall[0].message.startswith("not judged, only 480 of the minSamples 1000 pairs so far: ")


# --- Inconclusive ------------------------------------------------------------------------


def test_too_few_samples_is_insufficient_data():
    cells = [Cell(NO_HISTORY, h, 30, agreeing=30) for h in range(24)]
    verdict = judge(full_thresholds(), build_slices(cells))
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.INSUFFICIENT_DATA)
    assert verdict.message.startswith("720 mirrored pairs so far, fewer than minSamples 1000 (")
    assert all(check.passed is None for check in verdict.checks if check.segment == "all")


def test_no_records_at_all():
    verdict = judge(full_thresholds(), [], cov=coverage([], elapsed=WEEK))
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.INSUFFICIENT_DATA)
    assert verdict.message == "no records: no mirrored pairs have been analysed yet"
    assert verdict.checks == []


def test_incomplete_coverage_is_inconclusive_even_when_every_check_passes():
    slices = equivalent_day()
    verdict = judge(full_thresholds(), slices, cov=coverage(slices, elapsed=3 * DAY))
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.COVERAGE_INCOMPLETE)
    assert verdict.message == (
        "shadowed for 72h of the 168h minDuration (42%); a Passed verdict needs the full business cycle "
        "(237 of 237 checks passed so far)"
    )


def test_failure_is_decided_even_with_incomplete_coverage():
    cells = [Cell(NO_HISTORY, h, 500, candidate_errors=40) for h in range(24)]
    slices = build_slices(cells)
    verdict = judge(analysis(max_error_rate=0.001), slices, cov=coverage(slices, elapsed=DAY))
    assert (verdict.result, verdict.reason) == ("Failed", reasons.CANDIDATE_ERRORS)


def test_metrics_unavailable_prevents_passed_but_not_failed():
    verdict = judge(full_thresholds(), equivalent_day(), metrics_available=False)
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.METRICS_UNAVAILABLE)
    assert not any(check.passed is False for check in verdict.checks)
    assert "237 of 237 checks passed so far" in verdict.message

    failing = equivalent_day(candidate_errors=40)
    verdict = judge(full_thresholds(), failing, metrics_available=False)
    assert (verdict.result, verdict.reason) == ("Failed", reasons.CANDIDATE_ERRORS)
    assert verdict.message.startswith("errorRate failed on segment history=<1")


def test_an_inconclusive_check_prevents_passed_and_is_named():
    # 0 errors in 40800 requests show a rate below 0.02% at 95% (a pass needs no family-wise level);
    # 0 in the 12000 of history=<1 cannot (the inconclusive interval is the family-wise one, 0% to 0.114%)
    verdict = judge(full_thresholds(max_error_rate=0.0002, max_error_rate_increase=0.0002), equivalent_day())
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.INSUFFICIENT_DATA)
    assert verdict.message.startswith(
        "2 of 237 checks inconclusive: errorRate on history=<1, errorRateIncrease on history=<1; first, errorRate "
        "on segment history=<1: candidate error rate 0% (0 of 12000 requests, 99.9786% interval 0% to 0.114%) "
        "against maxErrorRate 0.02%: the interval straddles the limit"
    )


def test_thin_hour_windows_can_fail_but_do_not_hold_back_a_pass():
    # 0 errors in 500 requests an hour cannot confirm a rate below 0.5%: those windows stay
    # inconclusive, while the whole day and every segment confirm it.
    verdict = judge(full_thresholds(max_error_rate=0.005, max_error_rate_increase=0.005), equivalent_day())
    hourly = [check for check in verdict.checks if check.hour is not None and check.name == "errorRate"]
    assert any(check.passed is None for check in hourly)
    assert (verdict.result, verdict.reason) == ("Passed", reasons.VERDICT_PASSED)


def test_inconsistent_thresholds_are_inconclusive():
    verdict = judge(full_thresholds(max_error_rate_increase=0.02), equivalent_day())
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.THRESHOLDS_INCONSISTENT)
    assert reasons.THRESHOLDS_INCONSISTENT == "ThresholdsInconsistent"
    assert verdict.message.startswith(
        "spec.analysis.thresholds.maxErrorRateIncrease: 0.02 is above maxErrorRate 0.01, so it can never be"
    )
    verdict = judge(full_thresholds(max_error_rate_increase=0.02, min_samples_per_segment=2000), equivalent_day())
    assert verdict.reason == reasons.THRESHOLDS_INCONSISTENT
    assert verdict.message.startswith("(1) spec.analysis.thresholds.maxErrorRateIncrease: 0.02 is above")
    assert "; (2) spec.analysis.minSamplesPerSegment: 2000 is above minSamples 1000; a segment is part of all " in (
        verdict.message
    )


def test_no_thresholds_at_all_is_inconclusive():
    verdict = judge(analysis(), equivalent_day())
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.THRESHOLDS_INCONSISTENT)
    assert verdict.checks == []


def test_inconsistent_thresholds_do_not_hide_a_failure():
    verdict = judge(full_thresholds(max_error_rate_increase=0.02), equivalent_day(candidate_errors=40))
    assert (verdict.result, verdict.reason) == ("Failed", reasons.CANDIDATE_ERRORS)


def test_corrupt_records_above_one_percent_prevent_passed():
    slices = equivalent_day()  # 40800 pairs: 1% is 408 records
    verdict = judge(full_thresholds(), slices, problems=[problem(CORRUPT_RECORD, 409)])
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.INSUFFICIENT_DATA)
    assert verdict.message == (
        "409 corrupt records (CorruptRecord): 1% of the 40800 pairs analysed, above the 1% a verdict "
        "tolerates; see the report's problems"
    )
    assert judge(full_thresholds(), slices, problems=[problem(CORRUPT_RECORD, 408)]).result == "Passed"
    assert judge(full_thresholds(), slices, problems=[problem(UNPAIRED_RECORD, 5000)]).result == "Passed"


def test_corrupt_and_skewed_records_add_up():
    problems = [problem(CORRUPT_RECORD, 150), problem(CLOCK_SKEW, 200), problem(CORRUPT_RECORD, 150)]
    verdict = judge(full_thresholds(), equivalent_day(), problems=problems)
    assert verdict.reason == reasons.INSUFFICIENT_DATA
    assert verdict.message.startswith(
        "300 corrupt records (CorruptRecord) and 200 clock-skewed records (ClockSkew): 1.23% of the 40800 pairs"
    )


def test_every_check_name_maps_to_a_reason():
    assert failure_reason("errorRateIncrease") == reasons.CANDIDATE_ERRORS
    assert failure_reason("latencyP99Ratio") == reasons.LATENCY_REGRESSION
    assert failure_reason("absDiffMean") == reasons.PREDICTION_DIVERGENCE
    assert failure_reason("featureMissing:$.x") == reasons.FEATURE_UNAVAILABLE
    with pytest.raises(ValueError):
        failure_reason("bogus")


def test_the_headline_names_the_records_slice_over_prometheus_view_of_it():
    """Prometheus counts more requests (records may be sampled) but knows no error text."""
    cells = [Cell(NO_HISTORY, h, 10, candidate_errors=10) for h in range(24)]
    cells += [Cell(HISTORY, h, 500) for h in range(24)]
    slices = build_slices(cells)
    seen_by_prometheus = make_slice(NO_HISTORY, pairs=5000, candidate_errors=5000, source=CheckSource.PROMETHEUS)
    verdict = decide(
        analysis(max_error_rate=0.01), "classification", slices, coverage(slices), [], True, NOW,
        metric_slices=[seen_by_prometheus],
    )  # fmt: skip
    assert (verdict.result, verdict.reason) == ("Failed", reasons.CANDIDATE_ERRORS)
    assert verdict.message.startswith(f"errorRate failed on segment {NO_HISTORY}:"), verdict.message
    assert verdict.checks[0].source == CheckSource.RECORDS
    [seen] = [c for c in verdict.checks if c.source == CheckSource.PROMETHEUS]
    assert (seen.segment, seen.hour, seen.passed) == (NO_HISTORY, None, False)


def test_a_prometheus_headline_carries_the_records_error_text():
    """Prometheus can be decisive before the records are (the real node's first run): its counters
    know no error text, so the message names what the records' failing answers said."""
    from shadow_operator.contract.report import ErrorText

    said = [ErrorText(text="KeyError: 'purchase_history'", count=1)]
    slices = [
        s.model_copy(update={"candidate": s.candidate.model_copy(update={"top_errors": said})})
        if (s.segment, s.hour) == ("all", None)
        else s
        for s in build_slices([Cell(HISTORY, 0, 3, candidate_errors=1)])
    ]
    seen_by_prometheus = make_slice("all", pairs=5000, candidate_errors=400, source=CheckSource.PROMETHEUS)
    verdict = decide(
        analysis(max_error_rate=0.01), "classification", slices, coverage(slices), [], True, NOW,
        metric_slices=[seen_by_prometheus],
    )  # fmt: skip
    assert (verdict.result, verdict.reason) == ("Failed", reasons.CANDIDATE_ERRORS), verdict.message
    assert verdict.message.startswith("errorRate failed on all traffic as Prometheus counted it:"), verdict.message
    assert "most common candidate error: KeyError: 'purchase_history' (1 times)" in verdict.message


def test_a_thin_segments_p99_is_shown_not_judged_and_does_not_hold_back_a_pass():
    """960 requests leave 9.6 beyond a p99: its upper bound is one of the slowest few, no interval
    can confirm a pass (v2.1 on a real node: 0.23x to 16x). All traffic's p99 is still judged."""
    from shadow_operator.contract.report import Latency, LatencyBounds
    from shadow_operator.job.verdict import TAIL_SAMPLES

    cells = [Cell(NO_HISTORY, h, 40) for h in range(24)] + [Cell(HISTORY, h, 1200) for h in range(24)]

    def unbounded_p99(side):
        bounds = [
            LatencyBounds(confidence=b.confidence, low=b.low, high=Latency(p50=b.high.p50, p95=b.high.p95, p99=1e308))
            for b in side.latency_bounds
        ]
        return side.model_copy(update={"latency_bounds": bounds})

    slices = [
        s.model_copy(update={"primary": unbounded_p99(s.primary), "candidate": unbounded_p99(s.candidate)})
        if (s.segment, s.hour) == (NO_HISTORY, None)
        else s
        for s in build_slices(cells)
    ]
    verdict = judge(full_thresholds(), slices)
    [p99] = [k for k in verdict.checks if (k.name, k.segment) == ("latencyP99Ratio", NO_HISTORY)]
    assert p99.passed is None and p99.message.startswith(f"not judged, fewer than {TAIL_SAMPLES} requests")
    assert (verdict.result, verdict.reason) == ("Passed", "Passed"), verdict.message
    assert "1 latency quantile of thin segments not judged" in verdict.message
    overall = [k for k in verdict.checks if (k.name, k.segment) == ("latencyP99Ratio", "all")]
    assert [k.passed for k in overall] == [True]
