"""Properties of the verdict engine over generated specs and traffic (issue 10).

An equivalent candidate (the same answers as the primary; latency drawn from the same
distribution) is never Failed, whatever the spec: segments by bounds and by values, a
segment on a recorded feature's own path, classification or regression, hour windows,
limits at the boundary of what the traffic shows. And a clear fault in one segment is
Failed, the headline naming that segment. Everything runs the real pipeline
(dataset.load -> stats.compute_slices -> verdict.decide) on generated record files.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadow_operator.contract import reasons

from .traffic_world import (
    COUNTRY_PATH,
    HISTORY_PATH,
    OTHER_FEATURE,
    SEGMENT_PATHS,
    Fault,
    World,
    default_thresholds,
    judge,
    records,
)

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible, never flaky
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def equivalent_worlds(draw) -> tuple[World, int, int]:
    regression = draw(st.booleans())
    max_error_rate = draw(st.sampled_from([0.01, 0.05, 0.2]))
    thresholds: dict = {
        "max_error_rate": max_error_rate,
        "max_feature_missing_rate": draw(st.sampled_from([None, 0.001, 0.01, 0.1])),
    }
    increase = draw(st.sampled_from([None, 0.002, 0.01]))
    if increase is not None:
        thresholds["max_error_rate_increase"] = min(increase, max_error_rate)
    ratios = {p: draw(st.one_of(st.none(), st.floats(1.0, 2.0))) for p in ("p50", "p95", "p99")}
    if any(v is not None for v in ratios.values()):
        thresholds["latency_ratio"] = {p: v for p, v in ratios.items() if v is not None}
    if regression:
        thresholds["max_abs_diff"] = {"mean": draw(st.sampled_from([0.001, 0.05])), "p95": 0.1}
    else:
        thresholds["min_agreement"] = draw(st.sampled_from([0.5, 0.95, 0.999]))
    min_samples = draw(st.sampled_from([50, 200, 1000]))
    world = World(
        regression=regression,
        segments=draw(st.sampled_from([("history",), ("country",), ("history", "country")])),
        features=draw(
            st.sampled_from([(HISTORY_PATH,), (HISTORY_PATH, OTHER_FEATURE), (COUNTRY_PATH, HISTORY_PATH), ()])
        ),
        hours=draw(st.sampled_from([tuple(range(24)), (3,), (1, 2, 3, 4), (0, 6, 12, 18)])),
        # the true error rate of both models: anywhere up to maxErrorRate, the boundary included
        error_rate=draw(st.sampled_from([0.0, max_error_rate / 2, max_error_rate])),
        feature_missing=draw(st.sampled_from([0.0, 0.02, 0.5])),
        latency_sigma=draw(st.sampled_from([0.1, 0.5, 1.5])),
        thresholds=thresholds,
        min_samples=min_samples,
        min_samples_per_segment=draw(st.sampled_from([10, 50])),
        confidence=draw(st.sampled_from([0.9, 0.95, 0.99])),
    )
    return world, draw(st.integers(100, 2500)), draw(st.integers(0, 2**31))


@PROPERTY
@given(equivalent_worlds())
def test_an_equivalent_candidate_is_never_failed(case):
    world, n, seed = case
    verdict = judge(world, records(world, n, seed))
    failed = [f"{k.name} on {k.segment}: {k.message}" for k in verdict.checks if k.passed is False]
    assert verdict.result in ("Passed", "Inconclusive"), (verdict.message, failed)
    assert not failed
    # a segment on a feature's own path is never judged on that feature
    for check in verdict.checks:
        if check.name.startswith("featureMissing:") and check.segment != "all":
            own_path = SEGMENT_PATHS[check.segment.partition("=")[0]]
            assert check.name != f"featureMissing:{own_path}"


def test_the_issue_spec_is_not_failed_on_its_own_feature_path():
    # history bucketed on $.features.purchase_count, the same path recorded with maxFeatureMissingRate:
    # its `missing` bucket misses the feature in 100% of requests by definition
    world = World(
        segments=("history",),
        features=(HISTORY_PATH,),
        thresholds={"max_error_rate": 0.05, "max_feature_missing_rate": 0.01, "min_agreement": 0.9},
    )
    verdict = judge(world, records(world, 3000, 7))
    assert verdict.result == "Passed", verdict.message
    features = [(k.segment, k.passed) for k in verdict.checks if k.name == f"featureMissing:{HISTORY_PATH}"]
    assert features == [("all", None)]  # 15% of all requests: reported as a warning, never a failure
    assert "data-quality warning" in verdict.message


# --- faults are found ----------------------------------------------------------------------

FAULTS = [
    (Fault("errors", "history", "<1", 0.5), reasons.CANDIDATE_ERRORS, "history=<1"),
    (Fault("errors", "country", "de", 1.0), reasons.CANDIDATE_ERRORS, "country=de"),
    (Fault("latency", "country", "us", 3.0), reasons.LATENCY_REGRESSION, "country=us"),
    (Fault("latency", "history", ">=200", 2.0), reasons.LATENCY_REGRESSION, "history=>=200"),
    (Fault("disagree", "history", "1-200", 0.3), reasons.PREDICTION_DIVERGENCE, "history=1-200"),
]


@pytest.mark.parametrize(("fault", "reason", "segment"), FAULTS, ids=lambda v: getattr(v, "kind", None))
@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), regression=st.booleans())
def test_a_clear_fault_in_one_segment_is_failed_and_named(fault, reason, segment, seed, regression):
    world = World(regression=regression, thresholds=default_thresholds(regression), error_rate=0.005)
    verdict = judge(world, records(world, 4000, seed, fault))
    assert (verdict.result, verdict.reason) == ("Failed", reason), verdict.message
    named = verdict.message.split(" failed on ", 1)[1]
    assert named.startswith(f"segment {segment}"), verdict.message


def test_a_thin_segment_failing_completely_is_failed_below_min_samples_per_segment():
    # history=missing gets about 150 of 1000 requests, all failing on the candidate: decisive below the floor
    world = World(
        segments=("history",), thresholds={"max_error_rate": 0.05}, min_samples=500, min_samples_per_segment=1000
    )
    verdict = judge(world, records(world, 1000, 3, Fault("errors", "history", "missing", 1.0)))
    assert (verdict.result, verdict.reason) == ("Failed", reasons.CANDIDATE_ERRORS)
    assert verdict.message.startswith("errorRate failed on segment history=missing: candidate error rate 100%")
    assert "decisive even with" in verdict.message
    assert "explains" in verdict.message  # all traffic fails only through it


def test_latency_intervals_widen_with_fewer_samples():
    # the same 1.5x slowdown: decisive with many requests, not with few
    world = World(segments=("country",), thresholds={"latency_ratio": {"p50": 1.2}}, min_samples=20)
    fault = Fault("latency", "country", "us", 1.5)
    many = judge(world, records(world, 4000, 11, fault))
    few = judge(world, records(world, 60, 11, fault))
    assert many.result == "Failed"
    assert few.result != "Failed"
    ratio = next(k for k in few.checks if k.name == "latencyP50Ratio" and k.segment == "all")
    assert "interval" in ratio.message and not math.isnan(ratio.candidate)


def test_an_equivalent_candidate_with_enough_traffic_passes():
    # the other side of the promise: with enough pairs the family-wise intervals confirm every limit
    world = World(
        segments=("history",),
        features=(HISTORY_PATH,),
        hours=(0, 6, 12, 18),
        thresholds=default_thresholds(False),
        error_rate=0.005,
    )
    verdict = judge(world, records(world, 20000, 5))  # the thinnest segment (15%) gets 3000 pairs
    assert verdict.result == "Passed", verdict.message
    assert "each within its limit at 95%; a failure needs" in verdict.message
