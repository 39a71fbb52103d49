"""Intervals against published values, and each check's pass / fail / inconclusive boundary."""

from __future__ import annotations

import pytest

from shadow_operator.api.v1alpha1 import CheckSource
from shadow_operator.api.v1alpha1.analysis import AbsDiff
from shadow_operator.contract.report import ErrorText
from shadow_operator.job import checks
from shadow_operator.job.checks import (
    abs_diff_checks,
    agreement_check,
    difference_interval,
    error_rate_check,
    error_rate_increase_check,
    feature_missing_checks,
    latency_ratio_check,
    threshold_problems,
    wilson_interval,
)

from .slices_factory import analysis, make_slice

# --- intervals: Newcombe (1998) worked examples and well-known values --------------------


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (0, 1000, (0.0, 0.00383)),
        (8, 100, (0.0411, 0.1500)),
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
        (29, 29, (0.8830, 1.0)),
    ],
)
def test_wilson_interval_matches_published_values(successes, n, expected):
    low, high = wilson_interval(successes, n, 0.95)
    assert low == pytest.approx(expected[0], abs=5e-5)
    assert high == pytest.approx(expected[1], abs=5e-5)


def test_wilson_interval_without_samples_is_everything():
    assert wilson_interval(0, 0, 0.95) == (0.0, 1.0)


def test_wilson_interval_widens_with_confidence():
    low95, high95 = wilson_interval(8, 100, 0.95)
    low99, high99 = wilson_interval(8, 100, 0.99)
    assert low99 < low95 and high99 > high95
    assert checks.z_value(0.95) == pytest.approx(1.959964, abs=1e-6)


def test_wilson_interval_refuses_impossible_counts():
    with pytest.raises(ValueError, match="between 0 and n=10"):
        wilson_interval(11, 10, 0.95)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "expected"),
    [
        (48, 80, 56, 70, (0.0524, 0.3339)),  # Newcombe 1998, table II, method 10
        (3, 10, 9, 10, (0.1705, 0.8090)),
        (0, 10, 0, 20, (-0.2775, 0.1611)),
    ],
)
def test_difference_interval_is_newcombes_hybrid_score(x1, n1, x2, n2, expected):
    low, high = difference_interval(x1, n1, x2, n2, 0.95)
    assert low == pytest.approx(expected[0], abs=5e-5)
    assert high == pytest.approx(expected[1], abs=5e-5)


def test_difference_interval_is_antisymmetric_and_open_without_samples():
    low, high = difference_interval(48, 80, 56, 70, 0.95)
    assert difference_interval(56, 70, 48, 80, 0.95) == (pytest.approx(-high), pytest.approx(-low))
    assert difference_interval(0, 0, 5, 10, 0.95) == (-1.0, 1.0)


# --- error rate --------------------------------------------------------------------------


def test_error_rate_fails_when_the_whole_interval_is_above_the_limit():
    check = error_rate_check(make_slice("history=<1", pairs=100, candidate_errors=8), 0.001, 0.95, 100)
    assert check.name == "errorRate"
    assert check.segment == "history=<1"
    assert check.passed is False
    assert check.candidate == pytest.approx(0.08)
    assert check.primary == 0.0
    assert check.threshold == 0.001
    assert check.samples == 100
    assert "8 of 100 requests" in check.message
    assert "95% interval 4.11% to 15%" in check.message
    assert "maxErrorRate 0.1%" in check.message


def test_a_failing_error_rate_names_what_the_candidate_answered():
    stats = make_slice("history=<1", pairs=100, candidate_errors=8)
    stats.candidate.top_errors[:] = [ErrorText(text="KeyError: 'purchase_history'", count=8)]
    failing = error_rate_check(stats, 0.001, 0.95, 100)
    assert failing.message.endswith("most common candidate error: KeyError: 'purchase_history' (8 times)")
    increase = error_rate_increase_check(stats, 0.001, 0.95, 100)
    assert increase.passed is False and "KeyError: 'purchase_history' (8 times)" in increase.message
    passing = error_rate_check(stats, 0.5, 0.95, 100)
    assert passing.passed is True and "KeyError" not in passing.message


def test_error_rate_passes_when_the_whole_interval_is_within_the_limit():
    check = error_rate_check(make_slice(pairs=5000, candidate_errors=1), 0.002, 0.95, 1000)
    assert check.passed is True
    assert "within the limit" in check.message


def test_error_rate_straddling_the_limit_is_inconclusive():
    # 2 of 1000 = 0.2%, interval about 0.055% to 0.73%: the limit 0.3% lies inside it.
    check = error_rate_check(make_slice(pairs=1000, candidate_errors=2), 0.003, 0.95, 1000)
    assert check.passed is None
    assert "straddles" in check.message


def test_zero_errors_in_1000_cannot_prove_a_limit_of_one_in_a_thousand():
    check = error_rate_check(make_slice(pairs=1000), 0.001, 0.95, 1000)
    assert check.passed is None
    assert "0.383%" in check.message


def test_error_rate_with_too_few_requests_fails_only_on_decisive_evidence():
    # 50 of 50 failing: interval 92.9% to 100%, wholly above 0.1% at any size (issue 10, item 5)
    check = error_rate_check(make_slice(pairs=50, candidate_errors=50), 0.001, 0.95, 100)
    assert check.passed is False
    assert "decisive even with 50 requests (fewer than the 100 needed to pass)" in check.message
    # 0 of 50: within the limit? cannot be shown, and too few to pass anyway
    clean = error_rate_check(make_slice(pairs=50), 0.5, 0.95, 100)
    assert clean.passed is None
    assert "only 50 requests, fewer than the 100 needed to judge (a pass needs 100" in clean.message
    # 1 of 50 against 1%: straddles, too few: inconclusive, never failed
    assert error_rate_check(make_slice(pairs=50, candidate_errors=1), 0.01, 0.95, 100).passed is None


def test_an_hour_window_check_carries_its_segment_and_hour_apart():
    check = error_rate_check(make_slice("history=<1", hour=14, pairs=500), 0.01, 0.95, 100)
    assert (check.segment, check.hour, check.source) == ("history=<1", 14, CheckSource.RECORDS)
    assert checks.describe_where(check) == "segment history=<1 at 14:00-15:00 UTC"
    assert checks.describe_where(check.model_copy(update={"segment": "all", "hour": 2})) == (
        "all traffic at 02:00-03:00 UTC"
    )


def test_a_whole_period_check_has_no_hour_and_comes_from_the_records():
    check = error_rate_check(make_slice("history=<1", pairs=500), 0.01, 0.95, 100)
    assert (check.segment, check.hour, check.source) == ("history=<1", None, CheckSource.RECORDS)
    assert "hour" not in check.to_wire() and check.to_wire()["source"] == "records"
    assert checks.describe_where(check) == "segment history=<1"


def test_a_prometheus_slice_makes_prometheus_checks():
    stats = make_slice("all", pairs=500, source=CheckSource.PROMETHEUS)
    made = [
        error_rate_check(stats, 0.01, 0.95, 100),
        error_rate_increase_check(stats, 0.01, 0.95, 100),
        latency_ratio_check(stats, "p99", 2.0, 100),
    ]
    assert {(k.segment, k.hour, k.source) for k in made} == {("all", None, CheckSource.PROMETHEUS)}
    assert checks.describe_where(made[0]) == "all traffic as Prometheus counted it"
    at_five = made[0].model_copy(update={"segment": "x=b", "hour": 5})
    assert checks.describe_where(at_five) == "segment x=b at 05:00-06:00 UTC as Prometheus counted it"


@pytest.mark.parametrize("hour", [None, 0, 23])
def test_every_check_builder_keeps_where_its_slice_was_measured(hour):
    stats = make_slice(
        "history=<1",
        hour=hour,
        pairs=500,
        agreement=0.9,
        abs_diff_mean=0.1,
        abs_diff_p95=0.2,
        feature_missing={"$.user.id": 0.0},
    )
    made = [
        error_rate_check(stats, 0.01, 0.95, 100),
        error_rate_increase_check(stats, 0.01, 0.95, 100),
        latency_ratio_check(stats, "p50", 2.0, 100),
        agreement_check(stats, 0.8, 0.95, 100),
        checks.excess_disagreement_check(stats, stats, 0.8, 0.95, 100),
        *abs_diff_checks(stats, AbsDiff(mean=0.5, p95=0.5), 100),
        *feature_missing_checks(stats, 0.1, 0.95, 100),
    ]
    assert len(made) == 8
    assert {(k.segment, k.hour, k.source) for k in made} == {("history=<1", hour, CheckSource.RECORDS)}


# --- error-rate increase -----------------------------------------------------------------


def test_error_rate_increase_fails_on_a_clear_rise():
    stats = make_slice(pairs=10000, primary_errors=10, candidate_errors=100)
    check = error_rate_increase_check(stats, 0.002, 0.95, 1000)
    assert check.name == "errorRateIncrease"
    assert check.passed is False
    assert check.primary == pytest.approx(0.001)
    assert check.candidate == pytest.approx(0.01)
    assert "candidate 100 errors of 10000 requests, primary 10 of 10000" in check.message


def test_error_rate_increase_passes_when_rates_match_and_samples_suffice():
    stats = make_slice(pairs=20000, primary_errors=20, candidate_errors=20)
    assert error_rate_increase_check(stats, 0.001, 0.95, 1000).passed is True


def test_error_rate_increase_straddling_is_inconclusive():
    stats = make_slice(pairs=1000, primary_errors=1, candidate_errors=3)
    assert error_rate_increase_check(stats, 0.002, 0.95, 1000).passed is None


# --- latency -----------------------------------------------------------------------------


def test_latency_ratio_fails_above_the_limit_and_reports_the_ratio():
    stats = make_slice("history=<1", pairs=1000, candidate_latency=(500.0, 900.0, 1200.0))
    check = latency_ratio_check(stats, "p95", 1.3, 100)
    assert check.name == "latencyP95Ratio"
    assert check.passed is False
    assert (check.primary, check.candidate, check.threshold) == (90.0, 900.0, 1.3)
    assert "10.00x the primary's 90 ms" in check.message
    assert "latencyRatio.p95 1.3x" in check.message
    # 95% for the ratio needs 97.5% per side; the recorded level at or above is 99%: the factory's
    # bounds 1 -/+ 2.576/sqrt(1000) = 8.15%, so the ratio's interval holds with 98%
    assert "(98% interval 8.49x to 11.77x; candidate 826.7 to 973.3 ms, primary 82.67 to 97.33 ms)" in check.message
    assert "the whole interval is above the limit" in check.message


def test_latency_ratio_is_judged_on_its_interval():
    stats = make_slice(pairs=1000, primary_latency=(100.0, 200.0, 300.0), candidate_latency=(120.0, 200.0, 300.0))
    # 1.2x measured, interval about 1.04x to 1.38x: the limit 1.2 lies inside it
    straddling = latency_ratio_check(stats, "p50", 1.2, 1000)
    assert straddling.passed is None and "straddles" in straddling.message
    assert latency_ratio_check(stats, "p50", 1.5, 1000).passed is True
    assert latency_ratio_check(stats, "p50", 1.0, 1000).passed is False
    # equal latencies are within a 1.2x limit once the interval is narrow enough (12000 requests)
    same = make_slice(pairs=12000, primary_latency=(100.0, 200.0, 300.0), candidate_latency=(100.0, 200.0, 300.0))
    assert latency_ratio_check(same, "p99", 1.2, 1000).passed is True
    # a stricter per-check confidence (a family of checks) widens the interval
    assert latency_ratio_check(same, "p99", 1.05, 1000, confidence=0.95).passed is True
    assert latency_ratio_check(same, "p99", 1.05, 1000, confidence=0.99999).passed is None


def test_latency_ratio_without_an_interval_can_pass_but_never_fail():
    fast, slow = (100.0, 200.0, 300.0), (1000.0, 2000.0, 3000.0)
    no_bounds = make_slice(pairs=5000, primary_latency=fast, candidate_latency=slow)
    no_bounds = no_bounds.model_copy(
        update={
            "primary": no_bounds.primary.model_copy(update={"latency_bounds": []}),
            "candidate": no_bounds.candidate.model_copy(update={"latency_bounds": []}),
        }
    )
    check = latency_ratio_check(no_bounds, "p50", 1.2, 1000)
    assert check.passed is None
    assert "without an interval a point estimate cannot fail the candidate" in check.message
    assert latency_ratio_check(no_bounds, "p50", 20, 1000).passed is True


def test_latency_ratio_falls_back_to_histogram_bounds():
    from shadow_operator.contract.report import HistogramBucket

    def histogram(counts):
        return [
            HistogramBucket(le_ms=b, count=n) for b, n in zip((10.0, 25.0, 50.0, 100.0, 1e308), counts, strict=True)
        ]

    stats = make_slice(pairs=1000)
    primary = stats.primary.model_copy(
        update={"latency_bounds": [], "latency_histogram": histogram([900, 100, 0, 0, 0])}
    )
    candidate = stats.candidate.model_copy(
        update={"latency_bounds": [], "latency_histogram": histogram([0, 0, 0, 900, 100])}
    )
    stats = stats.model_copy(update={"primary": primary, "candidate": candidate})
    # primary p50 within (0, 10] ms, candidate's within (50, 100] ms: at least 5x
    check = latency_ratio_check(stats, "p50", 2.0, 100)
    assert check.passed is False
    assert "interval 5.00x to unbounded" in check.message


def test_latency_ratio_fails_below_min_samples_only_on_decisive_evidence():
    stats = make_slice(pairs=1000, candidate_latency=(500.0, 900.0, 1200.0)).model_copy(
        update={"primary": make_slice(pairs=99).primary}
    )
    check = latency_ratio_check(stats, "p99", 1.5, 100)
    assert check.passed is False  # 10x, interval about 8x to 12x: decisive at 99 requests
    assert "decisive even with 99 requests on one side (fewer than the 100 needed to pass)" in check.message
    assert "1000 candidate and 99 primary requests" in check.message
    equal = make_slice(pairs=1000).model_copy(update={"primary": make_slice(pairs=99).primary})
    check = latency_ratio_check(equal, "p99", 1.5, 100)
    assert check.passed is None
    assert "only 99 requests on one side, fewer than the 100 needed" in check.message


def test_latency_ratio_without_latency_is_inconclusive():
    stats = make_slice(pairs=1000, candidate_latency=None)
    check = latency_ratio_check(stats, "p50", 1.2, 100)
    assert check.passed is None
    assert "no latency measured for the candidate" in check.message
    with pytest.raises(ValueError, match="p50, p95, p99"):
        latency_ratio_check(stats, "p90", 1.2, 100)


# --- agreement and absolute difference ---------------------------------------------------


def test_agreement_fails_when_the_interval_is_below_the_minimum():
    check = agreement_check(make_slice("all", hour=2, pairs=700, agreement=0.6), 0.95, 0.95, 100)
    assert check.name == "agreement"
    assert (check.segment, check.hour) == ("all", 2)
    assert check.passed is False
    assert "420 of 700" in check.message
    assert "minAgreement 95%" in check.message


def test_agreement_passes_when_the_interval_is_above_the_minimum():
    assert agreement_check(make_slice(pairs=2000, agreement=0.99), 0.95, 0.95, 1000).passed is True


def test_agreement_straddling_the_minimum_is_inconclusive():
    assert agreement_check(make_slice(pairs=200, agreement=0.955), 0.95, 0.95, 100).passed is None


def test_agreement_without_comparable_pairs_is_inconclusive():
    check = agreement_check(make_slice(pairs=500, agreement=None, comparable=0), 0.95, 0.95, 100)
    assert check.passed is None
    assert "no comparable pairs" in check.message


def test_abs_diff_checks_mean_and_p95():
    stats = make_slice(pairs=1000, abs_diff_mean=0.02, abs_diff_p95=0.3)
    mean, p95 = abs_diff_checks(stats, AbsDiff(mean=0.05, p95=0.2), 1000)
    assert (mean.name, mean.passed, mean.candidate) == ("absDiffMean", True, 0.02)
    assert (p95.name, p95.passed, p95.candidate) == ("absDiffP95", False, 0.3)
    assert "maxAbsDiff.p95 0.2: above the limit" in p95.message
    assert [k.name for k in abs_diff_checks(stats, AbsDiff(p95=0.5), 1000)] == ["absDiffP95"]
    assert [k.passed for k in abs_diff_checks(stats, AbsDiff(mean=0.05, p95=0.2), 1001)] == [None, None]


# --- features ----------------------------------------------------------------------------


def test_feature_missing_one_check_per_path():
    stats = make_slice(
        pairs=2000, feature_missing={"$.features.purchase_count": 0.3, "$.features.last_seen_days": 0.001}
    )
    found = feature_missing_checks(stats, 0.01, 0.95, 1000)
    # 30% missing, far above 1%: a warning (None), never a failure: the requests are the same for both models
    assert [(k.name, k.passed) for k in found] == [
        ("featureMissing:$.features.last_seen_days", True),
        ("featureMissing:$.features.purchase_count", None),
    ]
    assert "600 of 2000" in found[1].message
    assert "the whole interval is above the limit; a data-quality warning" in found[1].message
    assert "cannot fail the candidate" in found[1].message
    assert feature_missing_checks(stats, 0.01, 0.95, 2001)[1].passed is None
    assert all(checks.is_advisory(k) for k in found)


def test_feature_missing_skips_the_path_a_slice_is_defined_by():
    stats = make_slice("history=missing", pairs=2000, feature_missing={"$.a": 1.0, "$.b": 0.0})
    found = feature_missing_checks(stats, 0.01, 0.95, 1000, skip_paths=["$.a"])
    assert [k.name for k in found] == ["featureMissing:$.b"]


def test_feature_missing_straddling_is_inconclusive():
    stats = make_slice(pairs=1000, feature_missing={"$.x": 0.01})
    assert feature_missing_checks(stats, 0.012, 0.95, 100)[0].passed is None


# --- thresholds --------------------------------------------------------------------------


def test_sensible_thresholds_have_no_problems():
    spec = analysis(
        latency_ratio={"p50": 1.2, "p95": 1.3, "p99": 1.5},
        max_error_rate=0.001,
        max_error_rate_increase=0.0005,
        min_agreement=0.95,
        max_feature_missing_rate=0.01,
    )
    assert threshold_problems(spec, "classification") == []
    assert threshold_problems(analysis(max_abs_diff={"mean": 0.1}), "regression") == []


def test_no_threshold_at_all():
    assert threshold_problems(analysis(), "classification") == [
        "spec.analysis.thresholds: no threshold is set, so there is nothing to judge the candidate by"
    ]
    assert threshold_problems(analysis(latency_ratio={}), "classification") == [
        "spec.analysis.thresholds: no threshold is set, so there is nothing to judge the candidate by"
    ]


def test_prediction_thresholds_of_the_other_type():
    problems = threshold_problems(analysis(min_agreement=0.9), "regression")
    assert problems[0].startswith("spec.analysis.thresholds.minAgreement: set, but spec.recording.predictionType")
    assert problems[1] == "spec.analysis.thresholds: no threshold that applies to regression predictions is set"
    problems = threshold_problems(analysis(max_abs_diff={"p95": 0.2}, max_error_rate=0.01), "classification")
    assert len(problems) == 1
    assert problems[0].startswith("spec.analysis.thresholds.maxAbsDiff: set, but")


def test_a_stricter_tail_than_median_is_a_legitimate_choice():
    # Users feel the tail: allowing the median to move more than p99 makes sense.
    assert threshold_problems(analysis(latency_ratio={"p50": 1.5, "p95": 1.3, "p99": 1.2}), "classification") == []


def test_error_rate_increase_above_the_error_rate():
    problems = threshold_problems(analysis(max_error_rate=0.001, max_error_rate_increase=0.01), "classification")
    assert len(problems) == 1
    assert problems[0].startswith("spec.analysis.thresholds.maxErrorRateIncrease: 0.01 is above maxErrorRate 0.001")


def test_limits_no_interval_can_confirm():
    problems = threshold_problems(analysis(max_error_rate=0, min_agreement=1), "classification")
    assert [p.split(":")[0] for p in problems] == [
        "spec.analysis.thresholds.maxErrorRate",
        "spec.analysis.thresholds.minAgreement",
    ]


def test_sample_and_duration_limits():
    spec = analysis(max_error_rate=0.01, min_samples=100, min_samples_per_segment=500, min_duration="5m")
    assert threshold_problems(spec, "classification") == [
        "spec.analysis.minSamplesPerSegment: 500 is above minSamples 100; a segment is part of all traffic "
        "and cannot need more pairs than the whole",
        "spec.analysis.minDuration: 5m is shorter than spec.analysis.interval 10m, the time between two "
        "comparison runs",
    ]
