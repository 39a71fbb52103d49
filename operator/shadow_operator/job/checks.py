"""Threshold checks on one slice of traffic (the intervals they rest on are in intervals.py).

Pure functions: a SliceStats and a limit in, an API `Check` out, no I/O. A rate check
(error rate, error-rate increase, agreement) and a latency ratio judge a confidence
interval, not the point estimate: it fails only when the whole interval lies beyond the
limit, passes only when the whole interval lies within it, and is inconclusive
(`passed=None`) while the interval straddles the limit. Failing needs no minimum sample
count (an interval wholly beyond the limit is decisive at any size); passing needs
`min_samples`. Absolute differences are judged on the measured value once enough samples
back it. Feature-missing checks describe the traffic, not the candidate: they pass or
warn (`passed=None`), never fail.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..api.v1alpha1 import Check, CheckSource
from ..api.v1alpha1.analysis import AbsDiff
from ..contract.metric_names import ALL_SEGMENTS
from ..contract.report import SideStats, SliceStats
from .intervals import (
    UNBOUNDED_MS,
    difference_interval,
    exact_rate_beyond,
    histogram_quantile_bounds,
    ratio_interval,
    wilson_interval,
    z_value,
)
from .thresholds import threshold_problems

# re-exported: the checks' interval vocabulary, and the limits' consistency they are judged against
__all__ = ["difference_interval", "threshold_problems", "wilson_interval", "z_value"]

ERROR_RATE = "errorRate"
ERROR_RATE_INCREASE = "errorRateIncrease"
LATENCY_RATIO_NAMES = {"p50": "latencyP50Ratio", "p95": "latencyP95Ratio", "p99": "latencyP99Ratio"}
AGREEMENT = "agreement"
ABS_DIFF_MEAN = "absDiffMean"
ABS_DIFF_P95 = "absDiffP95"
FEATURE_MISSING_PREFIX = "featureMissing:"
OVERALL = ALL_SEGMENTS

_SOURCE_WORDS = {CheckSource.RECORDS: "", CheckSource.PROMETHEUS: " as Prometheus counted it"}


# --- wording ---------------------------------------------------------------------------


def describe_where(check: Check) -> str:
    """Where a check was measured, in words: `all traffic`, `segment history=<1 at 14:00-15:00 UTC`,
    `all traffic as Prometheus counted it`."""
    where = "all traffic" if check.segment == OVERALL else f"segment {check.segment}"
    if check.hour is not None:
        where += f" at {check.hour:02d}:00-{(check.hour + 1) % 24:02d}:00 UTC"
    return where + _SOURCE_WORDS[check.source]


def _on(stats: SliceStats, name: str, **values: Any) -> dict[str, Any]:
    """The fields of a check named `name` on `stats`: where it was measured (the slice's segment, hour
    and source, always together) and its values; each builder adds `passed` and `message`."""
    return dict(name=name, segment=stats.segment, hour=stats.hour, source=stats.source, **values)


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


def most_common_error(side: SideStats) -> str:
    """`; most common candidate error: KeyError: 'x' (638 times)`: what the failing answers said."""
    if not side.top_errors:
        return ""
    top = side.top_errors[0]
    return f"; most common candidate error: {top.text} ({top.count} times)"


def _too_few(count: int, what: str, minimum: int) -> str:
    return f"only {count} {what}, fewer than the {minimum} needed to judge"


# --- checks ----------------------------------------------------------------------------


def _exact_guard(
    passed: bool | None, words: str, successes: int, n: int, limit: float, confidence: float, above: bool
) -> tuple[bool | None, str]:
    """A Wilson interval wholly beyond the limit fails only if the exact (Clopper-Pearson) bound agrees.

    Wilson undercovers on a handful of samples at extreme rates (1 error in 1 request: its lower
    bound is 1/(1+z^2)); now that thin slices can fail, the exact binomial test decides.
    """
    if passed is False and not exact_rate_beyond(successes, n, limit, confidence, above):
        return None, "the interval is beyond the limit, but the exact binomial bound is not: more samples are needed"
    return passed, words


def _gate(passed: bool | None, words: str, n: int, what: str, min_samples: int) -> tuple[bool | None, str]:
    """Passing needs min_samples; failing does not (an interval wholly beyond the limit is decisive at any size)."""
    if n >= min_samples:
        return passed, words
    if passed is False:
        return False, f"{words}, decisive even with {n} {what} (fewer than the {min_samples} needed to pass)"
    return (
        None,
        f"{_too_few(n, what, min_samples)} (a pass needs {min_samples}; failing needs only a decisive interval)",
    )


def error_rate_check(stats: SliceStats, threshold: float, confidence: float, min_samples: int) -> Check:
    """The candidate's error rate against maxErrorRate (Wilson interval on errors/requests)."""
    candidate, primary = stats.candidate, stats.primary
    n, errors = candidate.requests, min(candidate.errors, candidate.requests)
    rate = errors / n if n else None
    primary_rate = min(primary.errors, primary.requests) / primary.requests if primary.requests else None
    base = _on(stats, ERROR_RATE, primary=primary_rate, candidate=rate, threshold=threshold, samples=n)
    primary_text = (
        f"primary {_pct(primary_rate)} ({primary.errors} of {primary.requests})"
        if primary_rate is not None
        else "primary: no requests"
    )
    if rate is None:
        message = f"candidate errors: {_too_few(n, 'requests', min_samples)} ({errors} errors); {primary_text}"
        return Check(**base, passed=None, message=message)
    low, high = wilson_interval(errors, n, confidence)
    verdict = _exact_guard(*_upper_limit_verdict(low, high, threshold), errors, n, threshold, confidence, above=True)
    passed, words = _gate(*verdict, n, "requests", min_samples)
    message = (
        f"candidate error rate {_pct(rate)} ({errors} of {n} requests, {_interval(low, high, confidence)}) "
        f"against maxErrorRate {_pct(threshold)}: {words}; {primary_text}"
    )
    return _judged_errors(base, passed, message, candidate)


def error_rate_increase_check(stats: SliceStats, threshold: float, confidence: float, min_samples: int) -> Check:
    """The rise of the candidate's error rate over the primary's against maxErrorRateIncrease (Newcombe)."""
    candidate, primary = stats.candidate, stats.primary
    c_errors, p_errors = min(candidate.errors, candidate.requests), min(primary.errors, primary.requests)
    c_rate = c_errors / candidate.requests if candidate.requests else None
    p_rate = p_errors / primary.requests if primary.requests else None
    n = min(candidate.requests, primary.requests)
    base = _on(stats, ERROR_RATE_INCREASE, primary=p_rate, candidate=c_rate, threshold=threshold, samples=n)
    counts = f"candidate {c_errors} errors of {candidate.requests} requests, primary {p_errors} of {primary.requests}"
    if c_rate is None or p_rate is None:
        message = f"error-rate increase: {counts}; {min_samples} requests are needed on both sides to judge"
        return Check(**base, passed=None, message=message)
    low, high = difference_interval(p_errors, primary.requests, c_errors, candidate.requests, confidence)
    passed, words = _gate(*_upper_limit_verdict(low, high, threshold), n, "requests on one side", min_samples)
    message = (
        f"candidate error rate {_pct(c_rate)} minus primary {_pct(p_rate)} is {_pct(c_rate - p_rate)} "
        f"({counts}; {_interval(low, high, confidence)}) against maxErrorRateIncrease {_pct(threshold)}: {words}"
    )
    return _judged_errors(base, passed, message, candidate)


def _judged_errors(base: dict[str, Any], passed: bool | None, message: str, candidate: SideStats) -> Check:
    """An error check as judged: a failing one also names what the candidate's failing answers said."""
    if passed is False:
        message += most_common_error(candidate)
    return Check(**base, passed=passed, message=message)


def latency_ratio_check(
    stats: SliceStats,
    percentile: str,
    threshold: float,
    min_samples: int,
    confidence: float = 0.95,
    reference: str = "primary",
) -> Check:
    """Candidate/primary latency at one percentile ("p50", "p95", "p99") against latencyRatio.<percentile>.

    The interval of the ratio is [candidate low / primary high, candidate high / primary low] from
    each side's order-statistic bounds at level 1 - (1 - confidence)/2 (both hold at once with
    `confidence`). Without them, bounds from the latency histogram's buckets (coarser, as valid);
    without either (Prometheus's slices today) the ratio is a point estimate: it can pass once
    min_samples back it, never fail. `reference` names what stands in `stats.primary`: "noise
    baseline" when the candidate is timed against the baseline's copies (same path, same clock).
    """
    if percentile not in LATENCY_RATIO_NAMES:
        raise ValueError(f"percentile must be one of {', '.join(LATENCY_RATIO_NAMES)}, not {percentile!r}")
    candidate, primary = stats.candidate, stats.primary
    c_ms = getattr(candidate.latency_ms, percentile) if candidate.latency_ms else None
    p_ms = getattr(primary.latency_ms, percentile) if primary.latency_ms else None
    n = min(candidate.requests, primary.requests)
    base = _on(stats, LATENCY_RATIO_NAMES[percentile], primary=p_ms, candidate=c_ms, threshold=threshold, samples=n)
    counts = f"{candidate.requests} candidate and {primary.requests} primary requests"
    if c_ms is None or p_ms is None:
        missing = " and ".join(role for role, ms in (("candidate", c_ms), ("primary", p_ms)) if ms is None)
        message = f"{percentile} latency: no latency measured for the {missing} ({counts})"
        return Check(**base, passed=None, message=message)
    if p_ms <= 0:
        message = f"{percentile} latency: the primary's is {_num(p_ms)} ms, so no ratio can be formed ({counts})"
        return Check(**base, passed=None, message=message)
    ratio = c_ms / p_ms
    side_level = 1 - (1 - confidence) / 2
    c_bounds, p_bounds = (_latency_bounds(side, percentile, side_level) for side in (candidate, primary))
    head = (
        f"candidate {percentile} latency {_num(c_ms)} ms is {ratio:.2f}x the {reference}'s {_num(p_ms)} ms "
        f"against latencyRatio.{percentile} {_num(threshold)}x"
    )
    if c_bounds is None or p_bounds is None:
        if n < min_samples:
            return Check(**base, passed=None, message=f"{head}: {_too_few(n, 'requests', min_samples)} ({counts})")
        if ratio <= threshold:
            return Check(**base, passed=True, message=f"{head}: within the limit, a point estimate ({counts})")
        message = (
            f"{head}: above the limit, but without an interval a point estimate cannot fail the candidate ({counts})"
        )
        return Check(**base, passed=None, message=message)
    low, high = ratio_interval(c_bounds[1], c_bounds[2], p_bounds[1], p_bounds[2])
    passed, words = _gate(*_upper_limit_verdict(low, high, threshold), n, "requests on one side", min_samples)
    level = 1 - (1 - c_bounds[0]) - (1 - p_bounds[0])  # both sides' bounds hold at once
    upper = "unbounded" if math.isinf(high) else f"{high:.2f}x"
    message = (
        f"{head} ({_level(level)} interval {low:.2f}x to {upper}; candidate {_num(c_bounds[1])} to "
        f"{_ms(c_bounds[2])}, {reference} {_num(p_bounds[1])} to {_ms(p_bounds[2])}): {words} ({counts})"
    )
    return Check(**base, passed=passed, message=message)


def _latency_bounds(side: SideStats, percentile: str, level: float) -> tuple[float, float, float] | None:
    """(level, low, high) of one side's percentile: its order statistics, else its histogram, else None."""
    bounds = side.latency_interval(percentile, level)
    if bounds is not None:
        return bounds
    if side.latency_histogram:
        buckets = [(b.le_ms, b.count) for b in side.latency_histogram]
        found = histogram_quantile_bounds(buckets, int(percentile[1:]) / 100, level)
        if found is not None:
            return level, *found
    return None


def _ms(value: float) -> str:
    return "unbounded" if value >= UNBOUNDED_MS else f"{_num(value)} ms"


def agreement_check(stats: SliceStats, min_agreement: float, confidence: float, min_samples: int) -> Check:
    """Share of comparable pairs where both models predict the same, against minAgreement (Wilson)."""
    n = stats.comparable
    base = _on(stats, AGREEMENT, candidate=stats.agreement, threshold=min_agreement, samples=n)
    if stats.agreement is None or n <= 0:
        message = f"agreement: no comparable pairs (both sides answering with a prediction) among {stats.pairs}"
        return Check(**base, passed=None, message=message)
    agreeing = min(n, max(0, round(stats.agreement * n)))
    low, high = wilson_interval(agreeing, n, confidence)
    verdict = _lower_limit_verdict(low, high, min_agreement)
    verdict = _exact_guard(*verdict, agreeing, n, min_agreement, confidence, above=False)
    passed, words = _gate(*verdict, n, "comparable pairs", min_samples)
    message = (
        f"the models agree on {_pct(stats.agreement)} of comparable pairs ({agreeing} of {n}, "
        f"{_interval(low, high, confidence)}) against minAgreement {_pct(min_agreement)}: {words}"
    )
    return Check(**base, passed=passed, message=message)


def excess_disagreement_check(
    stats: SliceStats, baseline: SliceStats | None, min_agreement: float, confidence: float, min_samples: int
) -> Check:
    """With a noise baseline: the candidate's disagreement beyond two primaries' own, against 1 - minAgreement.

    The candidate disagrees with the primary on d_c of its comparable pairs, the baseline (a copy
    of the primary fed the same copies) on d_b; d_c - d_b is what the candidate changes beyond
    the primary's own non-determinism. Newcombe's interval of that difference decides, as for
    error-rate increases; with no baseline pairs the interval is wide and the check inconclusive.
    """
    n = stats.comparable
    base = _on(stats, AGREEMENT, candidate=stats.agreement, threshold=min_agreement, samples=n)
    b_n = baseline.comparable if baseline is not None and baseline.agreement is not None else 0
    if stats.agreement is None or n <= 0:
        message = f"agreement: no comparable pairs (both sides answering with a prediction) among {stats.pairs}"
        return Check(**base, passed=None, message=message)
    c_disagree = n - min(n, max(0, round(stats.agreement * n)))
    b_disagree = b_n - min(b_n, max(0, round(baseline.agreement * b_n))) if b_n else 0
    allowed = 1 - min_agreement
    if b_n <= 0:
        message = (
            f"the models agree on {_pct(stats.agreement)} of {n} comparable pairs; the noise baseline has no "
            f"comparable pairs on this slice yet, so the candidate's disagreement cannot be told from the "
            f"primary's own: not judged"
        )
        return Check(**base, primary=None, passed=None, message=message)
    low, high = difference_interval(b_disagree, b_n, c_disagree, n, confidence)
    passed, words = _gate(*_upper_limit_verdict(low, high, allowed), min(n, b_n), "comparable pairs", min_samples)
    b_agreement = 1 - b_disagree / b_n
    message = (
        f"the models agree on {_pct(stats.agreement)} of comparable pairs ({n - c_disagree} of {n}); two primaries "
        f"agree on {_pct(b_agreement)} ({b_n - b_disagree} of {b_n}, the noise baseline); the candidate's "
        f"disagreement beyond that is {_pct((c_disagree / n) - (b_disagree / b_n))} "
        f"({_interval(low, high, confidence)}) against 1 - minAgreement {_pct(allowed)}: {words}"
    )
    return Check(**base, primary=b_agreement, passed=passed, message=message)


def abs_diff_checks(
    stats: SliceStats, max_abs_diff: AbsDiff, min_samples: int, baseline: SliceStats | None = None
) -> list[Check]:
    """Mean and 95th percentile of |candidate - primary| against maxAbsDiff.mean / .p95 (regression)."""
    checks = []
    n = stats.comparable
    for name, field, value, limit in (
        (ABS_DIFF_MEAN, "mean", stats.abs_diff_mean, max_abs_diff.mean),
        (ABS_DIFF_P95, "p95", stats.abs_diff_p95, max_abs_diff.p95),
    ):
        if limit is None:
            continue
        base = _on(stats, name, candidate=value, threshold=limit, samples=n)
        what = "mean absolute difference" if field == "mean" else "95th percentile of the absolute difference"
        if baseline is not None:
            noise = baseline.abs_diff_mean if field == "mean" else baseline.abs_diff_p95
            if noise is None or baseline.comparable < min_samples:
                message = f"{what}: the noise baseline has too few comparable pairs on this slice to judge against"
                checks.append(Check(**base, passed=None, message=message))
                continue
            base["primary"] = noise
            what += f" minus the noise baseline's {_num(noise)}:"
            value = None if value is None else max(0.0, value - noise)
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


def is_advisory(check: Check) -> bool:
    """A check about the traffic rather than the candidate (a feature missing from requests): never fails."""
    return check.name.startswith(FEATURE_MISSING_PREFIX)


def feature_missing_checks(
    stats: SliceStats, max_rate: float, confidence: float, min_samples: int, skip_paths: Iterable[str] = ()
) -> list[Check]:
    """One data-quality check per recorded feature path: Wilson on missing/requests against maxFeatureMissingRate.

    The feature is read from the request, the one both models get, so its missing rate is a
    property of the traffic: the check passes when the whole interval is within the limit and
    otherwise warns (passed=None), never fails. `skip_paths`: features this slice is defined by
    (a segment bucketed on the same path is missing in 0% or 100% of its requests by definition).
    """
    checks = []
    n = stats.pairs
    skip = set(skip_paths)
    for path, rate in sorted(stats.feature_missing.items()):
        if path in skip:
            continue
        missing = min(n, max(0, round(rate * n)))
        base = _on(stats, f"{FEATURE_MISSING_PREFIX}{path}", candidate=rate, threshold=max_rate, samples=n)
        if n < min_samples:
            message = f"{path} missing in {_pct(rate)}: {_too_few(n, 'requests', min_samples)}"
            checks.append(Check(**base, passed=None, message=message))
            continue
        low, high = wilson_interval(missing, n, confidence)
        passed, words = _upper_limit_verdict(low, high, max_rate)
        if passed is False:
            passed, words = None, "the whole interval is above the limit"
        if passed is None:
            words += (
                "; a data-quality warning about the requests, the same for both models, so it cannot fail the candidate"
            )
        message = (
            f"{path} is missing in {_pct(rate)} of requests ({missing} of {n}, {_interval(low, high, confidence)}) "
            f"against maxFeatureMissingRate {_pct(max_rate)}: {words}"
        )
        checks.append(Check(**base, passed=passed, message=message))
    return checks
