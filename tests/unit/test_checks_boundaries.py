"""Exact boundaries of the checks: at the limit, at the minimum sample count, and what each check reports.

Written against the mutants `make mutants` found surviving (docs/mutants.md): every test pins a
behaviour a one-token change in checks.py would alter (`<` for `<=`, a dropped field, a word).
"""

from __future__ import annotations

import pytest

from shadow_operator.api.v1alpha1 import Check
from shadow_operator.api.v1alpha1.analysis import AbsDiff
from shadow_operator.contract.report import HistogramBucket
from shadow_operator.job import checks
from shadow_operator.job.checks import (
    abs_diff_checks,
    agreement_check,
    error_rate_check,
    error_rate_increase_check,
    feature_missing_checks,
    latency_ratio_check,
)
from shadow_operator.job.intervals import UNBOUNDED_MS, histogram_quantile_bounds

from .slices_factory import make_slice, side

WITHIN = "the whole interval is within the limit"
STRADDLES = "the interval straddles the limit, so more samples are needed"


def _no_bounds(stats):
    """The slice without order-statistic bounds or histograms: latency is a point estimate."""
    strip = {"latency_bounds": [], "latency_histogram": []}
    return stats.model_copy(
        update={
            "primary": stats.primary.model_copy(update=strip),
            "candidate": stats.candidate.model_copy(update=strip),
        }
    )


# --- the verdict of an interval against a limit: exactly at the limit ----------------------


def test_an_upper_limit_is_met_by_an_interval_ending_exactly_at_it():
    assert checks._upper_limit_verdict(0.01, 0.02, 0.02) == (True, WITHIN)
    assert checks._upper_limit_verdict(0.01, 0.0200001, 0.02) == (None, STRADDLES)


def test_an_upper_limit_is_failed_only_by_an_interval_starting_above_it():
    assert checks._upper_limit_verdict(0.02, 0.03, 0.02) == (None, STRADDLES)
    assert checks._upper_limit_verdict(0.0200001, 0.03, 0.02) == (False, "the whole interval is above the limit")


def test_a_lower_limit_is_met_by_an_interval_starting_exactly_at_it():
    assert checks._lower_limit_verdict(0.95, 0.99, 0.95) == (True, WITHIN)
    assert checks._lower_limit_verdict(0.9499999, 0.99, 0.95) == (None, STRADDLES)


def test_a_lower_limit_is_failed_only_by_an_interval_ending_below_it():
    assert checks._lower_limit_verdict(0.90, 0.95, 0.95) == (None, STRADDLES)
    assert checks._lower_limit_verdict(0.90, 0.9499999, 0.95) == (False, "the whole interval is below the limit")


def test_a_pass_needs_exactly_min_samples_and_a_failure_none():
    assert checks._gate(True, WITHIN, 100, "requests", 100) == (True, WITHIN)
    assert checks._gate(None, STRADDLES, 100, "requests", 100) == (None, STRADDLES)
    short = checks._gate(True, WITHIN, 99, "requests", 100)
    assert short == (
        None,
        "only 99 requests, fewer than the 100 needed to judge (a pass needs 100; failing needs only a decisive interval)",
    )
    assert checks._gate(False, "above", 1, "requests", 100) == (
        False,
        "above, decisive even with 1 requests (fewer than the 100 needed to pass)",
    )


def test_the_exact_binomial_bound_keeps_one_error_in_one_request_from_failing():
    # Wilson's lower bound of 1/1 is 1/(1 + 1.96^2) = 20.7%, above a 10% limit; the exact test:
    # P(X >= 1 | p = 0.1, n = 1) = 10% > 2.5%, not decisive.
    check = error_rate_check(make_slice(pairs=1, candidate_errors=1), 0.1, 0.95, 1)
    assert check.passed is None
    assert (
        ": the interval is beyond the limit, but the exact binomial bound is not: more samples are needed; "
        in check.message
    )


# --- error rate ------------------------------------------------------------------------------


def test_an_error_rate_without_candidate_requests_is_inconclusive_and_says_so():
    stats = make_slice(pairs=100, primary_errors=1).model_copy(update={"candidate": side(0)})
    assert error_rate_check(stats, 0.05, 0.95, 100) == Check(
        name="errorRate",
        segment="all",
        primary=0.01,
        candidate=None,
        threshold=0.05,
        samples=0,
        passed=None,
        message="candidate errors: only 0 requests, fewer than the 100 needed to judge (0 errors); primary 1% (1 of 100)",
    )


def test_an_error_rate_without_primary_requests_is_still_judged():
    stats = make_slice(pairs=2000, candidate_errors=1).model_copy(update={"primary": side(0)})
    check = error_rate_check(stats, 0.01, 0.95, 1000)
    assert (check.primary, check.passed) == (None, True)
    assert check.message.endswith(
        "against maxErrorRate 1%: the whole interval is within the limit; primary: no requests"
    )


def test_the_primary_error_rate_is_errors_over_requests():
    check = error_rate_check(make_slice(pairs=400, primary_errors=3, candidate_errors=1), 0.05, 0.95, 100)
    assert check.primary == pytest.approx(0.0075)
    assert check.message.endswith("; primary 0.75% (3 of 400)")


# --- error-rate increase -----------------------------------------------------------------------


@pytest.mark.parametrize("empty", ["candidate", "primary"])
def test_an_increase_needs_requests_on_both_sides(empty):
    stats = make_slice(pairs=100, primary_errors=1, candidate_errors=2).model_copy(update={empty: side(0)})
    check = error_rate_increase_check(stats, 0.01, 0.95, 100)
    counts = {
        "candidate": "candidate 0 errors of 0 requests, primary 1 of 100",
        "primary": "candidate 2 errors of 100 requests, primary 0 of 0",
    }[empty]
    assert check == Check(
        name="errorRateIncrease",
        segment="all",
        primary=None if empty == "primary" else 0.01,
        candidate=None if empty == "candidate" else 0.02,
        threshold=0.01,
        samples=0,
        passed=None,
        message=f"error-rate increase: {counts}; 100 requests are needed on both sides to judge",
    )


def test_an_increase_reports_the_difference_and_fails_thin_slices_on_decisive_evidence():
    check = error_rate_increase_check(make_slice(pairs=50, candidate_errors=50), 0.01, 0.95, 100)
    assert check.passed is False
    assert "candidate error rate 100% minus primary 0% is 100% " in check.message
    assert "decisive even with 50 requests on one side (fewer than the 100 needed to pass)" in check.message
    rise = error_rate_increase_check(make_slice(pairs=1000, primary_errors=1, candidate_errors=10), 0.5, 0.95, 100)
    assert "candidate error rate 1% minus primary 0.1% is 0.9% " in rise.message


# --- latency ---------------------------------------------------------------------------------


def test_a_point_estimate_exactly_at_the_limit_passes_with_exactly_min_samples():
    stats = _no_bounds(
        make_slice(pairs=100, primary_latency=(100.0, 200.0, 400.0), candidate_latency=(150.0, 200.0, 600.0))
    )
    check = latency_ratio_check(stats, "p50", 1.5, 100)
    assert check.passed is True
    assert check.message == (
        "candidate p50 latency 150 ms is 1.50x the primary's 100 ms against latencyRatio.p50 1.5x: "
        "within the limit, a point estimate (100 candidate and 100 primary requests)"
    )
    assert latency_ratio_check(stats, "p50", 1.5, 101).passed is None


def test_one_side_without_bounds_makes_the_ratio_a_point_estimate():
    stats = make_slice(pairs=1000, candidate_latency=(500.0, 900.0, 1200.0))
    stats = stats.model_copy(
        update={"primary": stats.primary.model_copy(update={"latency_bounds": [], "latency_histogram": []})}
    )
    check = latency_ratio_check(stats, "p50", 1.2, 100)
    assert check.passed is None  # 10x, but a point estimate can never fail
    assert "without an interval a point estimate cannot fail the candidate" in check.message


@pytest.mark.parametrize("p_ms", [0.0, 0.5])
def test_a_ratio_needs_a_positive_primary_latency(p_ms):
    stats = make_slice(pairs=1000, primary_latency=(p_ms, 90.0, 120.0))
    check = latency_ratio_check(stats, "p50", 1.2, 100)
    if p_ms == 0.0:
        assert check == Check(
            name="latencyP50Ratio",
            segment="all",
            primary=0.0,
            candidate=50.0,
            threshold=1.2,
            samples=1000,
            passed=None,
            message="p50 latency: the primary's is 0 ms, so no ratio can be formed (1000 candidate and 1000 primary requests)",
        )
    else:
        assert check.passed is False  # 100x a half-millisecond primary
        assert "is 100.00x the primary's 0.5 ms" in check.message


def test_latency_missing_on_the_primary_or_both_is_named():
    primary_only = latency_ratio_check(make_slice(pairs=1000, primary_latency=None), "p95", 1.2, 100)
    assert primary_only.passed is None
    assert (
        primary_only.message
        == "p95 latency: no latency measured for the primary (1000 candidate and 1000 primary requests)"
    )
    both = latency_ratio_check(make_slice(pairs=10, primary_latency=None, candidate_latency=None), "p99", 1.2, 100)
    assert (
        both.message
        == "p99 latency: no latency measured for the candidate and primary (10 candidate and 10 primary requests)"
    )


def test_histogram_bounds_are_read_at_the_checks_own_percentile():
    # 100 buckets of 10 requests: p99's ranks (about 984 to 997) lie in other buckets than p98's
    bounds = [float(i + 1) for i in range(99)] + [UNBOUNDED_MS]
    histogram = [HistogramBucket(le_ms=b, count=10) for b in bounds]
    stats = side(1000).model_copy(update={"latency_bounds": [], "latency_histogram": histogram})
    expected = histogram_quantile_bounds([(b, 10) for b in bounds], 0.99, 0.975)
    assert checks._latency_bounds(stats, "p99", 0.975) == (0.975, *expected)
    assert checks._latency_bounds(stats.model_copy(update={"latency_histogram": []}), "p99", 0.975) is None


def test_an_upper_bound_at_the_sentinel_is_unbounded():
    assert checks._ms(UNBOUNDED_MS) == "unbounded"
    assert checks._ms(1e307) == "1e+307 ms"
    assert checks._ms(12.5) == "12.5 ms"


def test_the_last_hour_of_the_day_ends_at_midnight():
    last = Check(name="errorRate", segment="all", hour=23)
    assert checks.describe_where(last) == "all traffic at 23:00-00:00 UTC"
    first = Check(name="errorRate", segment="country=de", hour=0)
    assert checks.describe_where(first) == "segment country=de at 00:00-01:00 UTC"


# --- agreement -------------------------------------------------------------------------------


def test_agreement_without_comparable_pairs_reports_its_limit():
    assert agreement_check(make_slice(pairs=30, agreement=None, comparable=0), 0.9, 0.95, 10) == Check(
        name="agreement",
        segment="all",
        candidate=None,
        threshold=0.9,
        samples=0,
        passed=None,
        message="agreement: no comparable pairs (both sides answering with a prediction) among 30",
    )


def test_agreement_on_a_single_comparable_pair_is_judged():
    check = agreement_check(make_slice(pairs=5, agreement=1.0, comparable=1), 0.01, 0.95, 1)
    assert check.passed is True  # 1 of 1: Wilson 20.7% to 100%, above a 1% minimum
    assert (check.candidate, check.threshold, check.samples) == (1.0, 0.01, 1)


def test_agreement_counts_no_agreeing_pair_as_zero_and_fails_thin_slices_decisively():
    check = agreement_check(make_slice(pairs=50, agreement=0.0), 0.95, 0.95, 100)
    assert check.passed is False
    assert "(0 of 50, 95% interval 0% to 7.13%)" in check.message
    assert "decisive even with 50 comparable pairs (fewer than the 100 needed to pass)" in check.message


# --- absolute difference -----------------------------------------------------------------------


def test_an_absolute_difference_exactly_at_the_limit_passes():
    stats = make_slice(pairs=10, abs_diff_mean=0.05, abs_diff_p95=0.2)
    mean, p95 = abs_diff_checks(stats, AbsDiff(mean=0.05, p95=0.2), 10)
    assert mean == Check(
        name="absDiffMean",
        segment="all",
        candidate=0.05,
        threshold=0.05,
        samples=10,
        passed=True,
        message="mean absolute difference 0.05 over 10 comparable pairs against maxAbsDiff.mean 0.05: within the limit",
    )
    assert p95.passed is True
    assert p95.message == (
        "95th percentile of the absolute difference 0.2 over 10 comparable pairs against maxAbsDiff.p95 0.2: "
        "within the limit"
    )


def test_an_absolute_difference_needs_min_samples_and_one_comparable_pair():
    one = make_slice(pairs=3, abs_diff_mean=0.01, comparable=1)
    assert [k.passed for k in abs_diff_checks(one, AbsDiff(mean=0.05), 1)] == [True]
    short = abs_diff_checks(make_slice(pairs=9, abs_diff_p95=0.01), AbsDiff(p95=0.05), 10)
    assert short == [
        Check(
            name="absDiffP95",
            segment="all",
            candidate=0.01,
            threshold=0.05,
            samples=9,
            passed=None,
            message="95th percentile of the absolute difference 0.01: only 9 comparable pairs, fewer than the 10 "
            "needed to judge",
        )
    ]
    none = abs_diff_checks(make_slice(pairs=9, abs_diff_mean=0.01, comparable=0), AbsDiff(mean=0.05), 1)
    assert none == [
        Check(
            name="absDiffMean",
            segment="all",
            candidate=0.01,
            threshold=0.05,
            samples=0,
            passed=None,
            message="mean absolute difference: no comparable pairs (both sides answering with a prediction) among 9",
        )
    ]
    unmeasured = abs_diff_checks(make_slice(pairs=9, comparable=9), AbsDiff(mean=0.05), 1)
    assert [(k.passed, k.candidate) for k in unmeasured] == [(None, None)]


# --- feature missing -----------------------------------------------------------------------------


def test_a_feature_check_is_judged_at_exactly_min_samples():
    stats = make_slice(pairs=1000, feature_missing={"$.x": 0.0})
    (check,) = feature_missing_checks(stats, 0.01, 0.95, 1000)
    assert check == Check(
        name="featureMissing:$.x",
        segment="all",
        candidate=0.0,
        threshold=0.01,
        samples=1000,
        passed=True,
        message="$.x is missing in 0% of requests (0 of 1000, 95% interval 0% to 0.383%) against "
        "maxFeatureMissingRate 1%: the whole interval is within the limit",
    )


def test_a_feature_check_on_too_few_requests_says_so():
    stats = make_slice(pairs=999, feature_missing={"$.x": 0.5})
    assert feature_missing_checks(stats, 0.01, 0.95, 1000) == [
        Check(
            name="featureMissing:$.x",
            segment="all",
            candidate=0.5,
            threshold=0.01,
            samples=999,
            passed=None,
            message="$.x missing in 50%: only 999 requests, fewer than the 1000 needed to judge",
        )
    ]


def test_agreement_with_a_rate_but_no_comparable_pair_is_not_judged():
    check = agreement_check(make_slice(pairs=30, agreement=0.9, comparable=0), 0.5, 0.95, 0)
    assert check.passed is None
    assert check.message == "agreement: no comparable pairs (both sides answering with a prediction) among 30"


def test_a_latency_interval_uses_half_the_miss_rate_on_each_side():
    # 99% for the ratio: 99.5% per side, a recorded level, so the ratio's interval holds with exactly 99%
    stats = make_slice(pairs=1000)
    assert "(99% interval " in latency_ratio_check(stats, "p50", 1.5, 100, confidence=0.99).message


def test_a_point_estimate_on_too_few_requests_says_so():
    stats = _no_bounds(make_slice(pairs=99))
    assert latency_ratio_check(stats, "p95", 1.2, 100) == Check(
        name="latencyP95Ratio",
        segment="all",
        primary=90.0,
        candidate=90.0,
        threshold=1.2,
        samples=99,
        passed=None,
        message="candidate p95 latency 90 ms is 1.00x the primary's 90 ms against latencyRatio.p95 1.2x: only 99 "
        "requests, fewer than the 100 needed to judge (99 candidate and 99 primary requests)",
    )


# --- judged against the noise baseline: absolute differences ----------------------------------


def test_each_absolute_difference_is_judged_beyond_the_baselines_own():
    candidate = make_slice(pairs=500, abs_diff_mean=1.5, abs_diff_p95=3.4)
    noise = make_slice(pairs=500, abs_diff_mean=1.0, abs_diff_p95=3.0)
    mean, p95 = abs_diff_checks(candidate, AbsDiff(mean=0.5, p95=0.5), 100, noise)
    assert mean == Check(
        name="absDiffMean",
        segment="all",
        primary=1.0,
        candidate=1.5,
        threshold=0.5,
        samples=500,
        passed=True,
        message="mean absolute difference minus the noise baseline's 1: 0.5 over 500 comparable pairs against "
        "maxAbsDiff.mean 0.5: within the limit",
    )
    # the p95 against the baseline's p95 (3.0), not its mean: 0.4 beyond it
    assert (p95.primary, p95.passed) == (3.0, True), p95.message
    assert p95.message.startswith("95th percentile of the absolute difference minus the noise baseline's 3: 0.4 over")


def test_a_baseline_with_exactly_min_samples_comparable_pairs_is_judged_against():
    candidate = make_slice(pairs=500, abs_diff_mean=1.5)
    [at_minimum] = abs_diff_checks(candidate, AbsDiff(mean=0.5), 100, make_slice(pairs=100, abs_diff_mean=1.0))
    assert at_minimum.passed is True, at_minimum.message
    [short] = abs_diff_checks(candidate, AbsDiff(mean=0.5), 100, make_slice(pairs=99, abs_diff_mean=1.0))
    assert short.passed is None


def test_a_thin_baseline_leaves_both_absolute_differences_unjudged_and_says_so():
    candidate = make_slice(pairs=500, abs_diff_mean=1.5, abs_diff_p95=3.4)
    thin = make_slice(pairs=99, abs_diff_mean=1.0, abs_diff_p95=3.0)
    found = abs_diff_checks(candidate, AbsDiff(mean=0.5, p95=0.5), 100, thin)
    assert [(k.name, k.passed, k.primary) for k in found] == [("absDiffMean", None, None), ("absDiffP95", None, None)]
    assert [k.message for k in found] == [
        "mean absolute difference: the noise baseline has too few comparable pairs on this slice to judge against",
        "95th percentile of the absolute difference: the noise baseline has too few comparable pairs on this slice "
        "to judge against",
    ]
    unmeasured = make_slice(pairs=500, abs_diff_mean=1.0)  # no p95 in the baseline
    _, p95 = abs_diff_checks(candidate, AbsDiff(mean=0.5, p95=0.5), 100, unmeasured)
    assert p95.passed is None and "too few comparable pairs" in p95.message


def test_an_unmeasured_absolute_difference_against_a_baseline_is_not_judged():
    candidate = make_slice(pairs=500, comparable=500)  # no abs_diff_mean
    [check] = abs_diff_checks(candidate, AbsDiff(mean=0.5), 100, make_slice(pairs=500, abs_diff_mean=1.0))
    assert (check.passed, check.candidate, check.primary) == (None, None, 1.0)
    assert check.message == (
        "mean absolute difference minus the noise baseline's 1:: no comparable pairs (both sides answering with a "
        "prediction) among 500"
    )


# --- judged against the noise baseline: disagreement beyond two primaries' ---------------------


def test_excess_disagreement_reports_both_agreements_and_the_difference():
    candidate = make_slice(pairs=1000, agreement=0.9)  # 100 disagreeing
    noise = make_slice(pairs=500, agreement=0.96)  # 20 disagreeing
    check = checks.excess_disagreement_check(candidate, noise, 0.95, 0.95, 100)
    assert (check.name, check.segment, check.candidate, check.primary, check.threshold, check.samples) == (
        "agreement", "all", 0.9, pytest.approx(0.96), 0.95, 1000,
    )  # fmt: skip
    assert check.message.startswith(
        "the models agree on 90% of comparable pairs (900 of 1000); two primaries agree on 96% (480 of 500, the "
        "noise baseline); the candidate's disagreement beyond that is 6% (95% interval "
    ), check.message
    assert check.message.endswith(
        "against 1 - minAgreement 5%: the interval straddles the limit, so more samples are needed"
    )


def test_excess_disagreement_counts_no_agreement_as_every_pair_disagreeing():
    candidate = make_slice(pairs=200, agreement=0.0)
    noise = make_slice(pairs=200, agreement=0.0)
    check = checks.excess_disagreement_check(candidate, noise, 0.95, 0.95, 100)
    assert "(0 of 200); two primaries agree on 0% (0 of 200, the noise baseline)" in check.message
    # both wholly disagreeing: nothing beyond the baseline's, a pass on 200 pairs each
    assert "disagreement beyond that is 0% (95% interval -1.88% to 1.88%)" in check.message and check.passed is True


def test_excess_disagreement_without_comparable_pairs_is_not_judged():
    noise = make_slice(pairs=500, agreement=0.96)
    for stats in (make_slice(pairs=100, agreement=None), make_slice(pairs=100, agreement=0.9, comparable=0)):
        check = checks.excess_disagreement_check(stats, noise, 0.95, 0.95, 100)
        assert check == Check(
            name="agreement",
            segment="all",
            candidate=stats.agreement,
            threshold=0.95,
            samples=stats.comparable,
            passed=None,
            message="agreement: no comparable pairs (both sides answering with a prediction) among 100",
        )


def test_excess_disagreement_on_a_single_comparable_pair_on_each_side_is_judged():
    one = make_slice(pairs=1, agreement=1.0)
    check = checks.excess_disagreement_check(one, make_slice(pairs=1, agreement=1.0), 0.95, 0.95, 1)
    assert check.message.startswith("the models agree on 100% of comparable pairs (1 of 1); two primaries agree")
    assert check.passed is None  # one pair each way cannot confirm a 5% limit


def test_excess_disagreement_without_baseline_pairs_names_the_candidates_agreement():
    candidate = make_slice(pairs=400, agreement=0.9)
    for noise in (None, make_slice(pairs=0, agreement=None, comparable=0)):
        check = checks.excess_disagreement_check(candidate, noise, 0.95, 0.95, 100)
        assert (check.passed, check.primary, check.candidate, check.samples) == (None, None, 0.9, 400)
        assert check.message == (
            "the models agree on 90% of 400 comparable pairs; the noise baseline has no comparable pairs on this "
            "slice yet, so the candidate's disagreement cannot be told from the primary's own: not judged"
        )


def test_excess_disagreement_on_too_few_pairs_names_the_smaller_side():
    candidate = make_slice(pairs=400, agreement=0.9)
    check = checks.excess_disagreement_check(candidate, make_slice(pairs=40, agreement=0.9), 0.95, 0.95, 100)
    assert check.passed is None
    assert check.message.endswith(
        "only 40 comparable pairs, fewer than the 100 needed to judge (a pass needs 100; failing needs only a "
        "decisive interval)"
    ), check.message
