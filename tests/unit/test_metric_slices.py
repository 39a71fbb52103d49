"""Prometheus's answers become slices, and those slices can fail (or pass) the candidate."""

from __future__ import annotations

from shadow_operator.api.v1alpha1 import CheckSource
from shadow_operator.contract import reasons
from shadow_operator.job.metrics.collect import slices_from_queries
from shadow_operator.job.metrics.promql import queries_for, window_for
from shadow_operator.job.verdict import decide

from .test_verdict import coverage, equivalent_day, full_thresholds

WINDOW = 7 * 86400


def answers(segment: str, primary: tuple, candidate: tuple) -> dict[str, float | None]:
    """(requests, error rate, p50 s, p95 s, p99 s) per role, keyed by the exact queries collect issues."""
    result = {}
    for role, values in (("primary", primary), ("candidate", candidate)):
        result.update(zip(queries_for(role, segment, window_for(WINDOW)), values, strict=True))
    return result


def test_answers_become_a_slice_per_segment_in_milliseconds():
    queries = {
        **answers("all", (100000, 0.001, 0.010, 0.020, 0.030), (100000, 0.002, 0.011, 0.022, 0.300)),
        **answers("history=<1", (8000, 0.0, 0.010, 0.02, 0.03), (8000, 0.08, 0.002, 0.003, 0.004)),
    }
    overall, segment = slices_from_queries(queries, ["history=<1"], WINDOW)
    assert (overall.segment, overall.hour, overall.source) == ("all", None, CheckSource.PROMETHEUS)
    assert (overall.pairs, overall.candidate.requests, overall.candidate.errors) == (100000, 100000, 200)
    assert overall.candidate.latency_ms.p99 == 300.0
    assert (segment.segment, segment.source) == ("history=<1", CheckSource.PROMETHEUS)
    assert segment.candidate.error_rate == 0.08


def test_a_segment_with_a_missing_answer_is_left_out():
    queries = answers("all", (1000, 0.0, 0.01, 0.02, 0.03), (1000, 0.0, 0.01, 0.02, None))
    assert slices_from_queries(queries, [], WINDOW) == []


def test_a_tail_regression_only_prometheus_sees_holds_back_a_pass():
    # The records (sampled) look equivalent; Prometheus, over all traffic, sees p99 10x. Its
    # quantiles come without bucket counts, so no interval: a point estimate cannot fail the
    # candidate (issue 10: an equivalent candidate is never Failed), but it keeps Passed away.
    metric_slices = slices_from_queries(
        answers("all", (200000, 0.0, 0.010, 0.020, 0.030), (200000, 0.0, 0.010, 0.021, 0.300)), [], WINDOW
    )
    slices = equivalent_day()
    verdict = decide(
        full_thresholds(), "classification", slices, coverage(slices), [], True, "2025-11-25T00:00:00Z", metric_slices
    )
    assert (verdict.result, verdict.reason) == ("Inconclusive", reasons.INSUFFICIENT_DATA)
    assert "latencyP99Ratio on all (prometheus)" in verdict.message
    assert "without an interval a point estimate cannot fail the candidate" in verdict.message


def test_agreeing_metrics_keep_a_passing_verdict():
    metric_slices = slices_from_queries(
        answers("all", (200000, 0.0, 0.010, 0.020, 0.030), (200000, 0.0, 0.010, 0.021, 0.031)), [], WINDOW
    )
    slices = equivalent_day()
    verdict = decide(
        full_thresholds(), "classification", slices, coverage(slices), [], True, "2025-11-25T00:00:00Z", metric_slices
    )
    assert verdict.result == "Passed"
    [seen] = [k for k in verdict.checks if k.source == CheckSource.PROMETHEUS and k.name == "errorRate"]
    assert (seen.segment, seen.hour, seen.passed) == ("all", None, True)
    assert all(k.source == CheckSource.RECORDS for k in verdict.checks if k.name == "agreement")
