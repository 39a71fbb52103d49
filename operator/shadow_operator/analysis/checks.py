"""Threshold checks on one slice of traffic, and the confidence intervals they rest on.

Pure functions: a SliceStats and a limit in, an API `Check` out, no I/O. A rate check
(error rate, error-rate increase, agreement, feature missing rate) judges the confidence
interval, not the point estimate: it fails only when the whole interval lies beyond the
limit, passes only when the whole interval lies within it, and is inconclusive
(`passed=None`) while the interval straddles the limit. Latency ratios and absolute
differences are judged on the measured value once enough samples back it.
"""

from __future__ import annotations

import math
import re
from statistics import NormalDist

from ..api.durations import parse_duration
from ..api.v1alpha1 import AnalysisSpec, Check
from ..api.v1alpha1.spec import AbsDiff
from .report import SideStats, SliceStats

ERROR_RATE = "errorRate"
ERROR_RATE_INCREASE = "errorRateIncrease"
LATENCY_RATIO_NAMES = {"p50": "latencyP50Ratio", "p95": "latencyP95Ratio", "p99": "latencyP99Ratio"}
AGREEMENT = "agreement"
ABS_DIFF_MEAN = "absDiffMean"
ABS_DIFF_P95 = "absDiffP95"
FEATURE_MISSING_PREFIX = "featureMissing:"
OVERALL = "all"

_THRESHOLDS = "spec.analysis.thresholds"
_HOUR_LABEL = re.compile(r"(.+)@([0-9]{1,2})h")


# --- intervals -------------------------------------------------------------------------


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile for a confidence level, e.g. 0.95 -> 1.95996."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of the proportion successes/n; (0, 1) when there is nothing to go on."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie between 0 and n={n}, not {successes}")
    z = z_value(confidence)
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def difference_interval(x1: int, n1: int, x2: int, n2: int, confidence: float) -> tuple[float, float]:
    """Interval of p2 - p1 (p1 = x1/n1, p2 = x2/n2) by Newcombe's hybrid score method (1998, method 10).

    Built on the two Wilson intervals; (-1, 1) when either side has no samples.
    """
    if n1 <= 0 or n2 <= 0:
        return -1.0, 1.0
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return max(-1.0, low), min(1.0, high)


# --- wording ---------------------------------------------------------------------------


def slice_label(stats: SliceStats) -> str:
    """The Check.segment of a slice: `all`, `history=<1`, or with an hour of day `all@14h`."""
    return stats.segment if stats.hour is None else f"{stats.segment}@{stats.hour}h"


def describe_label(label: str) -> str:
    """A Check.segment in words: `all traffic`, `segment history=<1`, `segment history=<1 at 14:00-15:00 UTC (history=<1@14h)`."""
    match = _HOUR_LABEL.fullmatch(label)
    segment = match.group(1) if match else label
    where = "all traffic" if segment == OVERALL else f"segment {segment}"
    if not match:
        return where
    hour = int(match.group(2))
    return f"{where} at {hour:02d}:00-{(hour + 1) % 24:02d}:00 UTC ({label})"


def _pct(value: float) -> str:
    """A fraction as a percentage with up to three significant digits: 0.00383 -> 0.383%."""
    return f"{value * 100:.3g}%"


def _num(value: float) -> str:
    return f"{value:.4g}"


def _level(confidence: float) -> str:
    return f"{confidence * 100:g}%"


def _interval(low: float, high: float, confidence: float) -> str:
    return f"{_level(confidence)} interval {_pct(low)} to {_pct(high)}"


def _upper_limit_verdict(low: float, high: float, limit: float) -> tuple[bool | None, str]:
    """A rate that must stay at or below `limit`."""
    if low > limit:
        return False, "the whole interval is above the limit"
    if high <= limit:
        return True, "the whole interval is within the limit"
    return None, "the interval straddles the limit, so more samples are needed"


def _lower_limit_verdict(low: float, high: float, limit: float) -> tuple[bool | None, str]:
    """A rate that must stay at or above `limit`."""
    if high < limit:
        return False, "the whole interval is below the limit"
    if low >= limit:
        return True, "the whole interval is within the limit"
    return None, "the interval straddles the limit, so more samples are needed"


def _most_common_error(side: SideStats) -> str:
    """`; most common candidate error: KeyError: 'x' (638 times)`: what the failing answers said."""
    if not side.top_errors:
        return ""
    top = side.top_errors[0]
    return f"; most common candidate error: {top.text} ({top.count} times)"


def _too_few(count: int, what: str, minimum: int) -> str:
    return f"only {count} {what}, fewer than the {minimum} needed to judge"


# --- checks ----------------------------------------------------------------------------


def error_rate_check(stats: SliceStats, threshold: float, confidence: float, min_samples: int) -> Check:
    """The candidate's error rate against maxErrorRate (Wilson interval on errors/requests)."""
    candidate, primary = stats.candidate, stats.primary
    n, errors = candidate.requests, min(candidate.errors, candidate.requests)
    rate = errors / n if n else None
    primary_rate = min(primary.errors, primary.requests) / primary.requests if primary.requests else None
    base = dict(
        name=ERROR_RATE,
        segment=slice_label(stats),
        primary=primary_rate,
        candidate=rate,
        threshold=threshold,
        samples=n,
    )
    primary_text = (
        f"primary {_pct(primary_rate)} ({primary.errors} of {primary.requests})"
        if primary_rate is not None
        else "primary: no requests"
    )
    if n < min_samples or rate is None:
        message = f"candidate errors: {_too_few(n, 'requests', min_samples)} ({errors} errors); {primary_text}"
        return Check(**base, passed=None, message=message)
    low, high = wilson_interval(errors, n, confidence)
    passed, words = _upper_limit_verdict(low, high, threshold)
    message = (
        f"candidate error rate {_pct(rate)} ({errors} of {n} requests, {_interval(low, high, confidence)}) "
        f"against maxErrorRate {_pct(threshold)}: {words}; {primary_text}"
    )
    if passed is False:
        message += _most_common_error(candidate)
    return Check(**base, passed=passed, message=message)


def error_rate_increase_check(stats: SliceStats, threshold: float, confidence: float, min_samples: int) -> Check:
    """The rise of the candidate's error rate over the primary's against maxErrorRateIncrease (Newcombe)."""
    candidate, primary = stats.candidate, stats.primary
    c_errors, p_errors = min(candidate.errors, candidate.requests), min(primary.errors, primary.requests)
    c_rate = c_errors / candidate.requests if candidate.requests else None
    p_rate = p_errors / primary.requests if primary.requests else None
    base = dict(
        name=ERROR_RATE_INCREASE,
        segment=slice_label(stats),
        primary=p_rate,
        candidate=c_rate,
        threshold=threshold,
        samples=min(candidate.requests, primary.requests),
    )
    counts = f"candidate {c_errors} errors of {candidate.requests} requests, primary {p_errors} of {primary.requests}"
    if c_rate is None or p_rate is None or min(candidate.requests, primary.requests) < min_samples:
        message = f"error-rate increase: {counts}; {min_samples} requests are needed on both sides to judge"
        return Check(**base, passed=None, message=message)
    low, high = difference_interval(p_errors, primary.requests, c_errors, candidate.requests, confidence)
    passed, words = _upper_limit_verdict(low, high, threshold)
    message = (
        f"candidate error rate {_pct(c_rate)} minus primary {_pct(p_rate)} is {_pct(c_rate - p_rate)} "
        f"({counts}; {_interval(low, high, confidence)}) against maxErrorRateIncrease {_pct(threshold)}: {words}"
    )
    if passed is False:
        message += _most_common_error(candidate)
    return Check(**base, passed=passed, message=message)


def latency_ratio_check(stats: SliceStats, percentile: str, threshold: float, min_samples: int) -> Check:
    """Candidate/primary latency at one percentile ("p50", "p95", "p99") against latencyRatio.<percentile>.

    Needs min_samples requests on both sides; fails when the ratio is above the limit.
    """
    if percentile not in LATENCY_RATIO_NAMES:
        raise ValueError(f"percentile must be one of {', '.join(LATENCY_RATIO_NAMES)}, not {percentile!r}")
    candidate, primary = stats.candidate, stats.primary
    c_ms = getattr(candidate.latency_ms, percentile) if candidate.latency_ms else None
    p_ms = getattr(primary.latency_ms, percentile) if primary.latency_ms else None
    base = dict(
        name=LATENCY_RATIO_NAMES[percentile],
        segment=slice_label(stats),
        primary=p_ms,
        candidate=c_ms,
        threshold=threshold,
        samples=min(candidate.requests, primary.requests),
    )
    counts = f"{candidate.requests} candidate and {primary.requests} primary requests"
    if min(candidate.requests, primary.requests) < min_samples:
        message = f"{percentile} latency: {counts}; {min_samples} are needed on both sides to judge"
        return Check(**base, passed=None, message=message)
    if c_ms is None or p_ms is None:
        missing = " and ".join(role for role, ms in (("candidate", c_ms), ("primary", p_ms)) if ms is None)
        message = f"{percentile} latency: no latency measured for the {missing} ({counts})"
        return Check(**base, passed=None, message=message)
    if p_ms <= 0:
        message = f"{percentile} latency: the primary's is {_num(p_ms)} ms, so no ratio can be formed ({counts})"
        return Check(**base, passed=None, message=message)
    ratio = c_ms / p_ms
    passed = ratio <= threshold
    words = "within the limit" if passed else "above the limit"
    message = (
        f"candidate {percentile} latency {_num(c_ms)} ms is {ratio:.2f}x the primary's {_num(p_ms)} ms "
        f"against latencyRatio.{percentile} {_num(threshold)}x: {words} ({counts})"
    )
    return Check(**base, passed=passed, message=message)


def agreement_check(stats: SliceStats, min_agreement: float, confidence: float, min_samples: int) -> Check:
    """Share of comparable pairs where both models predict the same, against minAgreement (Wilson)."""
    n = stats.comparable
    base = dict(
        name=AGREEMENT,
        segment=slice_label(stats),
        candidate=stats.agreement,
        threshold=min_agreement,
        samples=n,
    )
    if stats.agreement is None or n <= 0:
        message = f"agreement: no comparable pairs (both sides answering with a prediction) among {stats.pairs}"
        return Check(**base, passed=None, message=message)
    agreeing = min(n, max(0, round(stats.agreement * n)))
    if n < min_samples:
        message = (
            f"agreement {_pct(stats.agreement)} ({agreeing} agree): {_too_few(n, 'comparable pairs', min_samples)}"
        )
        return Check(**base, passed=None, message=message)
    low, high = wilson_interval(agreeing, n, confidence)
    passed, words = _lower_limit_verdict(low, high, min_agreement)
    message = (
        f"the models agree on {_pct(stats.agreement)} of comparable pairs ({agreeing} of {n}, "
        f"{_interval(low, high, confidence)}) against minAgreement {_pct(min_agreement)}: {words}"
    )
    return Check(**base, passed=passed, message=message)


def abs_diff_checks(stats: SliceStats, max_abs_diff: AbsDiff, min_samples: int) -> list[Check]:
    """Mean and 95th percentile of |candidate - primary| against maxAbsDiff.mean / .p95 (regression)."""
    checks = []
    n = stats.comparable
    for name, field, value, limit in (
        (ABS_DIFF_MEAN, "mean", stats.abs_diff_mean, max_abs_diff.mean),
        (ABS_DIFF_P95, "p95", stats.abs_diff_p95, max_abs_diff.p95),
    ):
        if limit is None:
            continue
        base = dict(name=name, segment=slice_label(stats), candidate=value, threshold=limit, samples=n)
        what = "mean absolute difference" if field == "mean" else "95th percentile of the absolute difference"
        if value is None or n <= 0:
            message = f"{what}: no comparable pairs (both sides answering with a prediction) among {stats.pairs}"
            checks.append(Check(**base, passed=None, message=message))
        elif n < min_samples:
            message = f"{what} {_num(value)}: {_too_few(n, 'comparable pairs', min_samples)}"
            checks.append(Check(**base, passed=None, message=message))
        else:
            passed = value <= limit
            words = "within the limit" if passed else "above the limit"
            message = (
                f"{what} {_num(value)} over {n} comparable pairs against maxAbsDiff.{field} {_num(limit)}: {words}"
            )
            checks.append(Check(**base, passed=passed, message=message))
    return checks


def feature_missing_checks(stats: SliceStats, max_rate: float, confidence: float, min_samples: int) -> list[Check]:
    """One check per recorded feature path: Wilson on missing/requests against maxFeatureMissingRate.

    The requests are the slice's pairs (the feature is read from the one request both models get).
    """
    checks = []
    n = stats.pairs
    for path, rate in sorted(stats.feature_missing.items()):
        missing = min(n, max(0, round(rate * n)))
        base = dict(
            name=f"{FEATURE_MISSING_PREFIX}{path}",
            segment=slice_label(stats),
            candidate=rate,
            threshold=max_rate,
            samples=n,
        )
        if n < min_samples:
            message = f"{path} missing in {_pct(rate)}: {_too_few(n, 'requests', min_samples)}"
            checks.append(Check(**base, passed=None, message=message))
            continue
        low, high = wilson_interval(missing, n, confidence)
        passed, words = _upper_limit_verdict(low, high, max_rate)
        message = (
            f"{path} is missing in {_pct(rate)} of requests ({missing} of {n}, {_interval(low, high, confidence)}) "
            f"against maxFeatureMissingRate {_pct(max_rate)}: {words}"
        )
        checks.append(Check(**base, passed=passed, message=message))
    return checks


# --- thresholds ------------------------------------------------------------------------


def threshold_problems(analysis: AnalysisSpec, prediction_type: str) -> list[str]:
    """Limits that make no sense together, or can never be met; each message names the field."""
    t = analysis.thresholds
    problems: list[str] = []
    latency = {p: getattr(t.latency_ratio, p) for p in LATENCY_RATIO_NAMES} if t.latency_ratio else {}
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
