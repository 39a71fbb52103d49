"""Threshold limits that make no sense together or can never be met: each problem names the field.

Checked before Passed (verdict.py): such a spec can only ever be Inconclusive, with this as the reason.
"""

from __future__ import annotations

from ..api.durations import parse_duration
from ..api.v1alpha1 import AnalysisSpec

LATENCY_PERCENTILES = ("p50", "p95", "p99")
_THRESHOLDS = "spec.analysis.thresholds"


def _num(value: float) -> str:
    return f"{value:.4g}"


def threshold_problems(analysis: AnalysisSpec, prediction_type: str) -> list[str]:
    """Limits that make no sense together, or can never be met; each message names the field."""
    t = analysis.thresholds
    problems: list[str] = []
    latency = {p: getattr(t.latency_ratio, p) for p in LATENCY_PERCENTILES} if t.latency_ratio else {}
    latency = {p: v for p, v in latency.items() if v is not None}
    abs_diff = {}
    if t.max_abs_diff:
        abs_diff = {f: v for f, v in (("mean", t.max_abs_diff.mean), ("p95", t.max_abs_diff.p95)) if v is not None}

    applicable = bool(latency) or any(
        v is not None for v in (t.max_error_rate, t.max_error_rate_increase, t.max_feature_missing_rate)
    )
    nothing_set = not applicable and t.min_agreement is None and not abs_diff
    if t.min_agreement is not None:
        if prediction_type == "regression":
            problems.append(
                f"{_THRESHOLDS}.minAgreement: set, but spec.recording.predictionType is regression and agreement "
                "is measured for classification only; use maxAbsDiff"
            )
        else:
            applicable = True
    if abs_diff:
        if prediction_type == "classification":
            problems.append(
                f"{_THRESHOLDS}.maxAbsDiff: set, but spec.recording.predictionType is classification and absolute "
                "differences are measured for regression only; use minAgreement"
            )
        else:
            applicable = True
    if nothing_set:
        problems.append(f"{_THRESHOLDS}: no threshold is set, so there is nothing to judge the candidate by")
    elif not applicable:
        problems.append(f"{_THRESHOLDS}: no threshold that applies to {prediction_type} predictions is set")

    increase, ceiling = t.max_error_rate_increase, t.max_error_rate
    if increase is not None and ceiling is not None and increase > ceiling:
        problems.append(
            f"{_THRESHOLDS}.maxErrorRateIncrease: {_num(increase)} is above maxErrorRate {_num(ceiling)}, so it "
            "can never be the limit that fails (a candidate whose error rate rose that much is already above "
            "maxErrorRate)"
        )

    # Interval checks can never pass these limits: Passed would be unreachable.
    for field, value in (
        ("maxErrorRate", t.max_error_rate),
        ("maxErrorRateIncrease", t.max_error_rate_increase),
        ("maxFeatureMissingRate", t.max_feature_missing_rate),
    ):
        if value == 0:
            problems.append(
                f"{_THRESHOLDS}.{field}: 0 can never be confirmed by a confidence interval, so the check could "
                "only fail or stay inconclusive; set a small positive rate"
            )
    if t.min_agreement == 1 and prediction_type != "regression":
        problems.append(
            f"{_THRESHOLDS}.minAgreement: 1 can never be confirmed by a confidence interval, so the check could "
            "only fail or stay inconclusive; set a rate below 1"
        )

    if analysis.min_samples_per_segment > analysis.min_samples:
        problems.append(
            f"spec.analysis.minSamplesPerSegment: {analysis.min_samples_per_segment} is above minSamples "
            f"{analysis.min_samples}; a segment is part of all traffic and cannot need more pairs than the whole"
        )

    try:
        min_duration = parse_duration(analysis.min_duration)
        interval = parse_duration(analysis.interval)
    except ValueError as error:
        problems.append(f"spec.analysis: {error}")
    else:
        if min_duration < interval:
            problems.append(
                f"spec.analysis.minDuration: {analysis.min_duration} is shorter than spec.analysis.interval "
                f"{analysis.interval}, the time between two comparison runs"
            )
    return problems
