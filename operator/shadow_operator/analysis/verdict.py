"""The verdict: every check on every slice, and the one conclusion drawn from them.

Failed needs decisive evidence only: any check that fails on a slice with enough pairs
fails the candidate, even before the business cycle is covered. Passed needs everything:
consistent thresholds, metrics, enough pairs, the full minDuration, clean records, and
every check passed. Anything in between is Inconclusive, with the first reason that
stands in the way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta

from .. import reasons
from ..api.durations import format_duration
from ..api.v1alpha1 import AnalysisSpec, Check, Verdict
from . import checks as c
from .report import CLOCK_SKEW, CORRUPT_RECORD, DataProblem, ReportCoverage, SliceStats

# More than this share of corrupt or clock-skewed records (relative to the pairs analysed)
# and the data is not trusted for a Passed verdict.
MAX_BAD_RECORD_SHARE = 0.01
BAD_RECORD_CODES = {CORRUPT_RECORD: "corrupt", CLOCK_SKEW: "clock-skewed"}

# Verdict reasons of failing checks, the most serious first.
FAILURE_PRIORITY = (
    reasons.CANDIDATE_ERRORS,
    reasons.LATENCY_REGRESSION,
    reasons.PREDICTION_DIVERGENCE,
    reasons.FEATURE_UNAVAILABLE,
)
_NAMES_LISTED = 5  # checks named in a verdict message before "and N more"


def failure_reason(check_name: str) -> str:
    """The verdict reason a failing check of this name leads to."""
    if check_name in (c.ERROR_RATE, c.ERROR_RATE_INCREASE):
        return reasons.CANDIDATE_ERRORS
    if check_name in c.LATENCY_RATIO_NAMES.values():
        return reasons.LATENCY_REGRESSION
    if check_name in (c.AGREEMENT, c.ABS_DIFF_MEAN, c.ABS_DIFF_P95):
        return reasons.PREDICTION_DIVERGENCE
    if check_name.startswith(c.FEATURE_MISSING_PREFIX):
        return reasons.FEATURE_UNAVAILABLE
    raise ValueError(f"unknown check {check_name!r}")


def slice_checks(analysis: AnalysisSpec, prediction_type: str, stats: SliceStats, min_samples: int) -> list[Check]:
    """Every configured check on one slice. Hour-of-day windows get the error-rate and
    prediction checks only (how divergence confined to certain hours is caught), not latency
    or feature checks."""
    t = analysis.thresholds
    confidence = analysis.confidence
    whole_period = stats.hour is None
    found: list[Check] = []
    if t.max_error_rate is not None:
        found.append(c.error_rate_check(stats, t.max_error_rate, confidence, min_samples))
    if t.max_error_rate_increase is not None:
        found.append(c.error_rate_increase_check(stats, t.max_error_rate_increase, confidence, min_samples))
    if whole_period and t.latency_ratio is not None:
        for percentile in c.LATENCY_RATIO_NAMES:
            limit = getattr(t.latency_ratio, percentile)
            if limit is not None:
                found.append(c.latency_ratio_check(stats, percentile, limit, min_samples))
    if prediction_type == "regression":
        if t.max_abs_diff is not None:
            found.extend(c.abs_diff_checks(stats, t.max_abs_diff, min_samples))
    elif t.min_agreement is not None:
        found.append(c.agreement_check(stats, t.min_agreement, confidence, min_samples))
    if whole_period and t.max_feature_missing_rate is not None:
        found.extend(c.feature_missing_checks(stats, t.max_feature_missing_rate, confidence, min_samples))
    return found


def _traffic_checks(analysis: AnalysisSpec, stats: SliceStats, minimum: int) -> list[Check]:
    """The checks a metrics slice can support: errors and latency, no predictions or features."""
    t = analysis.thresholds
    found = []
    if t.max_error_rate is not None:
        found.append(c.error_rate_check(stats, t.max_error_rate, analysis.confidence, minimum))
    if t.max_error_rate_increase is not None:
        found.append(c.error_rate_increase_check(stats, t.max_error_rate_increase, analysis.confidence, minimum))
    if t.latency_ratio is not None:
        for percentile in c.LATENCY_RATIO_NAMES:
            limit = getattr(t.latency_ratio, percentile)
            if limit is not None:
                found.append(c.latency_ratio_check(stats, percentile, limit, minimum))
    return found


def decide(
    analysis: AnalysisSpec,
    prediction_type: str,
    slices: list[SliceStats],
    coverage: ReportCoverage,
    problems: list[DataProblem],
    metrics_available: bool,
    now: str,
    metric_slices: Iterable[SliceStats] = (),
) -> Verdict:
    """The verdict on the candidate from the slices measured so far.

    `metric_slices` are Prometheus's view of all traffic (records may be sampled): they add
    error-rate and latency checks, with the same minimum samples as the records' slices.
    """
    overall = next((s for s in slices if s.segment == c.OVERALL and s.hour is None), None)
    total = overall.pairs if overall else 0
    checks: list[Check] = []
    judged, not_judged = 0, []
    for stats in _ordered(slices):
        is_overall = stats is overall
        minimum = analysis.min_samples if is_overall else analysis.min_samples_per_segment
        if stats.pairs < minimum and not is_overall:
            not_judged.append(c.slice_label(stats))
            continue
        found = slice_checks(analysis, prediction_type, stats, minimum)
        if stats.pairs < minimum:  # all traffic is always reported, never decisive while short
            found = [_not_judged(check, stats.pairs, minimum) for check in found]
        else:
            judged += 1
        checks.extend(found)

    for stats in metric_slices:
        minimum = analysis.min_samples if stats.segment.endswith(f":{c.OVERALL}") else analysis.min_samples_per_segment
        if stats.pairs >= minimum:
            checks.extend(_traffic_checks(analysis, stats, minimum))

    def verdict(result: str, reason: str, message: str) -> Verdict:
        return Verdict(result=result, reason=reason, message=message, evaluated_at=now, checks=checks)

    failed = [check for check in checks if check.passed is False]
    if failed:
        order = {id(check): i for i, check in enumerate(checks)}
        worst = min(
            failed,
            key=lambda k: (FAILURE_PRIORITY.index(failure_reason(k.name)), -_severity(k), order[id(k)]),
        )
        # Whole-period failures first: "errorRate on all" says more than "errorRate on all@3h".
        others = sorted((k for k in failed if k is not worst), key=lambda k: "@" in k.segment)
        message = f"{worst.name} failed on {c.describe_label(worst.segment)}: {worst.message}"
        if others:
            message += f"; {len(others)} other check{'s' if len(others) != 1 else ''} failed too: {_names(others)}"
        return verdict("Failed", failure_reason(worst.name), message)

    # Hour-of-day windows are there to catch a failure the whole period hides (divergence at
    # night); a window too thin to confirm a pass must not hold back a verdict the whole
    # period and every segment support.
    inconclusive = [check for check in checks if check.passed is None and "@" not in check.segment]
    tally = _tally(checks)
    threshold_issues = c.threshold_problems(analysis, prediction_type)
    if threshold_issues:
        if len(threshold_issues) == 1:
            message = threshold_issues[0]
        else:
            message = " ".join(f"({i}) {issue};" for i, issue in enumerate(threshold_issues, 1))[:-1]
        return verdict("Inconclusive", reasons.THRESHOLDS_INCONSISTENT, message)
    if not metrics_available:
        return verdict(
            "Inconclusive",
            reasons.METRICS_UNAVAILABLE,
            f"Prometheus could not be queried, so the candidate cannot pass yet ({tally}); see the report's problems",
        )
    if total <= 0:
        return verdict(
            "Inconclusive",
            reasons.INSUFFICIENT_DATA,
            "no records: no mirrored pairs have been analysed yet" + (f" ({problems[0].message})" if problems else ""),
        )
    if total < analysis.min_samples:
        return verdict(
            "Inconclusive",
            reasons.INSUFFICIENT_DATA,
            f"{total} mirrored pairs so far, fewer than minSamples {analysis.min_samples} ({tally})",
        )
    if coverage.elapsed_seconds < coverage.required_seconds:
        percent = int(coverage.elapsed_seconds * 100 // coverage.required_seconds)
        return verdict(
            "Inconclusive",
            reasons.COVERAGE_INCOMPLETE,
            f"shadowed for {_duration(coverage.elapsed_seconds)} of the {_duration(coverage.required_seconds)} "
            f"minDuration ({percent}%); a Passed verdict needs the full business cycle ({tally})",
        )
    bad = _bad_records(problems)
    bad_total = sum(bad.values())
    if bad_total and bad_total > MAX_BAD_RECORD_SHARE * coverage.samples:
        named = " and ".join(f"{count} {BAD_RECORD_CODES[code]} records ({code})" for code, count in bad.items())
        share = bad_total / coverage.samples if coverage.samples else 1.0
        return verdict(
            "Inconclusive",
            reasons.INSUFFICIENT_DATA,
            f"{named}: {share * 100:.3g}% of the {coverage.samples} pairs analysed, above the "
            f"{MAX_BAD_RECORD_SHARE * 100:g}% a verdict tolerates; see the report's problems",
        )
    if inconclusive:
        first = inconclusive[0]
        return verdict(
            "Inconclusive",
            reasons.INSUFFICIENT_DATA,
            f"{len(inconclusive)} of {len(checks)} checks inconclusive: {_names(inconclusive)}; "
            f"first, {first.name} on {c.describe_label(first.segment)}: {first.message}",
        )
    if not checks:
        return verdict(
            "Inconclusive",
            reasons.INSUFFICIENT_DATA,
            "no check could be computed from the slices measured (no recorded feature or prediction to judge)",
        )
    message = (
        f"all {len(checks)} checks passed on {judged} slice{'s' if judged != 1 else ''} "
        f"over {total} pairs and {_duration(coverage.elapsed_seconds)}"
    )
    if not_judged:
        message += (
            f"; {len(not_judged)} slice{'s' if len(not_judged) != 1 else ''} with fewer than "
            f"minSamplesPerSegment {analysis.min_samples_per_segment} pairs not judged: {_listed(not_judged)}"
        )
    return verdict("Passed", reasons.VERDICT_PASSED, message)


def _ordered(slices: Iterable[SliceStats]) -> list[SliceStats]:
    """All traffic first, then the segments, then the hour windows (all's, then each segment's, by hour)."""
    slices = list(slices)
    rank: dict[str, int] = {c.OVERALL: -1}
    for stats in slices:
        rank.setdefault(stats.segment, len(rank))
    return sorted(
        slices,
        key=lambda s: (
            s.hour is not None,
            s.segment != c.OVERALL,
            rank[s.segment],
            -1 if s.hour is None else s.hour,
        ),
    )


def _not_judged(check: Check, pairs: int, minimum: int) -> Check:
    return check.model_copy(
        update={
            "passed": None,
            "message": f"not judged, only {pairs} of the minSamples {minimum} pairs so far: {check.message}",
        }
    )


def _severity(check: Check) -> float:
    """How far a failing check is beyond its limit, as a multiple of the limit (ties go to list order)."""
    value, limit = check.candidate, check.threshold
    if value is None or limit is None:
        return 0.0
    if check.name == c.ERROR_RATE_INCREASE:
        value -= check.primary or 0.0
    elif check.name in c.LATENCY_RATIO_NAMES.values():
        if not check.primary:
            return 0.0
        value /= check.primary
    elif check.name == c.AGREEMENT:
        value, limit = 1 - value, 1 - limit  # disagreement against allowed disagreement
    if limit <= 0:
        return math.inf if value > 0 else 0.0
    return value / limit


def _bad_records(problems: Iterable[DataProblem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for problem in problems:
        if problem.code in BAD_RECORD_CODES and problem.count > 0:
            counts[problem.code] = counts.get(problem.code, 0) + problem.count
    return counts


def _tally(checks: list[Check]) -> str:
    passed = sum(1 for check in checks if check.passed)
    return f"{passed} of {len(checks)} checks passed so far"


def _names(found: list[Check]) -> str:
    return _listed([f"{check.name} on {check.segment}" for check in found])


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_NAMES_LISTED])
    return shown + (f" and {len(items) - _NAMES_LISTED} more" if len(items) > _NAMES_LISTED else "")


def _duration(seconds: float) -> str:
    return format_duration(timedelta(seconds=int(seconds)))
