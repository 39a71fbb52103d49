"""The verdict: every check on every slice, and the one conclusion drawn from them.

Failed needs decisive evidence only: any check whose interval lies wholly beyond its limit
fails the candidate, on a slice of any size and before the business cycle is covered.
Passed needs everything: consistent thresholds, metrics, enough pairs, the full
minDuration, clean records, and every check on a slice with enough pairs passed. Anything
in between is Inconclusive, with the first reason that stands in the way.

Family-wise control (Bonferroni): the m checks that can fail the candidate are each judged
at confidence 1 - (1 - confidence)/m, so an equivalent candidate is Failed with probability
at most 1 - confidence per verdict, however many segments and hour windows there are.
Feature-missing checks describe the requests (the same for both models): they warn, never
fail, and are not counted in m. See docs/verdict.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from ..api.durations import format_duration
from ..api.v1alpha1 import AnalysisSpec, Check, CheckSource, Verdict
from ..contract import reasons
from ..contract.report import (
    CLOCK_SKEW,
    CORRUPT_RECORD,
    DataProblem,
    ReportCoverage,
    SideStats,
    SliceStats,
    slice_label,
)
from . import checks as c
from .headline import FAILURE_PRIORITY, failure_reason, headline
from .intervals import per_check_confidence

__all__ = ["FAILURE_PRIORITY", "decide", "failure_reason", "slice_checks"]

# More than this share of corrupt or clock-skewed records (relative to the pairs analysed)
# and the data is not trusted for a Passed verdict.
MAX_BAD_RECORD_SHARE = 0.01
BAD_RECORD_CODES = {CORRUPT_RECORD: "corrupt", CLOCK_SKEW: "clock-skewed"}
_NAMES_LISTED = 5  # checks named in a verdict message before "and N more"


def slice_checks(
    analysis: AnalysisSpec,
    prediction_type: str,
    stats: SliceStats,
    min_samples: int,
    confidence: float | None = None,
    segment_paths: Mapping[str, str] | None = None,
    baseline: SliceStats | None = None,
    with_baseline: bool = False,
) -> list[Check]:
    """Every configured check on one slice. Hour-of-day windows get the error-rate and
    prediction checks only (how divergence confined to certain hours is caught), not latency
    or feature checks.

    `confidence`: the per-check level (default spec.analysis.confidence; decide passes the
    family-wise one). `segment_paths`: segment name -> JSON path, so that a slice defined by a
    feature's path gets no feature check on that path. `with_baseline` (spec.analysis.baseline):
    agreement, absolute difference and latency are judged against `baseline`, the same slice of
    the noise baseline's comparison (None when it has no pairs there).
    """
    t = analysis.thresholds
    level = analysis.confidence if confidence is None else confidence
    whole_period = stats.hour is None
    found: list[Check] = []
    if t.max_error_rate is not None:
        found.append(c.error_rate_check(stats, t.max_error_rate, level, min_samples))
    if t.max_error_rate_increase is not None:
        found.append(c.error_rate_increase_check(stats, t.max_error_rate_increase, level, min_samples))
    if whole_period and t.latency_ratio is not None:
        for percentile in c.LATENCY_RATIO_NAMES:
            limit = getattr(t.latency_ratio, percentile)
            if limit is not None:
                if not with_baseline:
                    found.append(c.latency_ratio_check(stats, percentile, limit, min_samples, level))
                    continue
                # Both copies travelled the same path from the router: their ratio carries no router bias.
                timed = stats.model_copy(update={"primary": baseline.candidate if baseline else _NO_PAIRS.candidate})
                found.append(c.latency_ratio_check(timed, percentile, limit, min_samples, level, "noise baseline"))
    if prediction_type == "regression":
        if t.max_abs_diff is not None:
            found.extend(
                c.abs_diff_checks(
                    stats, t.max_abs_diff, min_samples, (baseline or _NO_PAIRS) if with_baseline else None
                )
            )
    elif t.min_agreement is not None:
        if with_baseline:
            found.append(c.excess_disagreement_check(stats, baseline, t.min_agreement, level, min_samples))
        else:
            found.append(c.agreement_check(stats, t.min_agreement, level, min_samples))
    if whole_period and t.max_feature_missing_rate is not None:
        name = stats.segment.partition("=")[0] if stats.segment != c.OVERALL else None
        own = (segment_paths or {}).get(name) if name else None
        found.extend(
            c.feature_missing_checks(
                stats, t.max_feature_missing_rate, analysis.confidence, min_samples, skip_paths=[own] if own else []
            )
        )
    return found


# A slice the noise baseline has no pairs in: its checks are inconclusive, never judged against nothing.
_NO_PAIRS = SliceStats(
    segment=c.OVERALL, pairs=0, primary=SideStats(requests=0, errors=0), candidate=SideStats(requests=0, errors=0)
)


def _traffic_checks(analysis: AnalysisSpec, stats: SliceStats, minimum: int, confidence: float) -> list[Check]:
    """The checks a metrics slice can support: errors and latency, no predictions or features."""
    t = analysis.thresholds
    found = []
    if t.max_error_rate is not None:
        found.append(c.error_rate_check(stats, t.max_error_rate, confidence, minimum))
    if t.max_error_rate_increase is not None:
        found.append(c.error_rate_increase_check(stats, t.max_error_rate_increase, confidence, minimum))
    if t.latency_ratio is not None:
        for percentile in c.LATENCY_RATIO_NAMES:
            limit = getattr(t.latency_ratio, percentile)
            if limit is not None:
                found.append(c.latency_ratio_check(stats, percentile, limit, minimum, confidence))
    return found


_Identity = tuple[str, str, int | None, CheckSource]


def _identity(check: Check) -> _Identity:
    """What tells one check from another in a verdict: its name and where it was measured."""
    return check.name, check.segment, check.hour, check.source


@dataclass
class _Evaluation:
    checks: list[Check] = field(default_factory=list)  # what the verdict lists
    family: int = 0  # checks that could fail the candidate, listed or not (thin slices' are counted too)
    judged: int = 0
    not_judged: list[str] = field(default_factory=list)
    thin_tails: set[_Identity] = field(default_factory=set)  # see TAIL_SAMPLES


# A latency quantile of a segment is judged only with this many requests beyond it (3,000 in the
# slice for a p99, 600 for a p95): with fewer, its upper bound is one of the few slowest requests
# and no interval can confirm a pass however alike the models (v2.1's p99 on a real node, 1,092
# requests: 0.23x to 16x). Such a check is shown, not judged, like a slice under
# minSamplesPerSegment: it still fails on decisive evidence, and all traffic's quantile and the
# segment's p50 are judged as usual.
TAIL_SAMPLES = 30
_QUANTILE_OF = {c.LATENCY_RATIO_NAMES[name]: float(name[1:]) / 100 for name in c.LATENCY_RATIO_NAMES}


def _tail_too_thin(check: Check) -> bool:
    quantile = _QUANTILE_OF.get(check.name)
    return quantile is not None and (check.samples or 0) * (1 - quantile) < TAIL_SAMPLES


def _evaluate(
    analysis: AnalysisSpec,
    prediction_type: str,
    slices: list[SliceStats],
    overall: SliceStats | None,
    metric_slices: list[SliceStats],
    segment_paths: Mapping[str, str],
    confidence: float,
    baseline: Mapping[tuple[str, int | None], SliceStats] | None = None,
) -> _Evaluation:
    """Every check at one per-check confidence. A slice under its minimum lists only its failing checks."""
    result = _Evaluation()
    for stats in _ordered(slices):
        is_overall = stats is overall
        minimum = analysis.min_samples if is_overall else analysis.min_samples_per_segment
        found = slice_checks(
            analysis,
            prediction_type,
            stats,
            minimum,
            confidence,
            segment_paths,
            baseline=(baseline or {}).get((stats.segment, stats.hour)),
            with_baseline=baseline is not None,
        )
        result.family += sum(1 for check in found if not c.is_advisory(check))
        if not is_overall:
            for i, check in enumerate(found):
                if check.passed is None and _tail_too_thin(check):
                    result.thin_tails.add(_identity(check))
                    found[i] = check.model_copy(
                        update={
                            "message": f"not judged, fewer than {TAIL_SAMPLES} requests beyond this quantile: "
                            f"{check.message}"
                        }
                    )
        if stats.pairs >= minimum:
            result.judged += 1
            result.checks.extend(found)
        elif is_overall:  # all traffic is always reported; only a decisive failure counts while short
            result.checks.extend(k if k.passed is False else _not_judged(k, stats.pairs, minimum) for k in found)
        else:
            failing = [check for check in found if check.passed is False]
            result.checks.extend(failing)
            if not failing:
                result.not_judged.append(slice_label(stats.segment, stats.hour, stats.source))

    for stats in metric_slices:
        minimum = analysis.min_samples if stats.segment == c.OVERALL else analysis.min_samples_per_segment
        found = _traffic_checks(analysis, stats, minimum, confidence)
        result.family += len(found)
        result.checks.extend(found if stats.pairs >= minimum else [k for k in found if k.passed is False])
    return result


def decide(
    analysis: AnalysisSpec,
    prediction_type: str,
    slices: list[SliceStats],
    coverage: ReportCoverage,
    problems: list[DataProblem],
    metrics_available: bool,
    now: str,
    metric_slices: Iterable[SliceStats] = (),
    segment_paths: Mapping[str, str] | None = None,
    baseline_slices: Iterable[SliceStats] | None = None,
) -> Verdict:
    """The verdict on the candidate from the slices measured so far.

    `metric_slices` are Prometheus's view of all traffic (records may be sampled): they add
    error-rate and latency checks, with the same minimum samples as the records' slices.
    `segment_paths`: spec.recording.segments as name -> path (feature checks skip a segment's own path).
    `baseline_slices`: the noise baseline's comparison with the primary (spec.analysis.baseline),
    slice by slice; None when there is no baseline.
    """
    baseline = None if baseline_slices is None else {(s.segment, s.hour): s for s in baseline_slices}
    overall = next((s for s in slices if s.segment == c.OVERALL and s.hour is None), None)
    total = overall.pairs if overall else 0
    metric_slices = list(metric_slices)
    paths = dict(segment_paths or {})

    def evaluate(confidence: float) -> _Evaluation:
        return _evaluate(analysis, prediction_type, slices, overall, metric_slices, paths, confidence, baseline)

    # Failing needs an interval at the Bonferroni level: a false Failed anywhere in the family is
    # then at most 1 - confidence. Passing needs every check within its limit at `confidence`
    # itself: a Passed verdict is an intersection-union test (each check must pass), whose error
    # is bounded by the largest single check's, so the family needs no adjustment there.
    lenient = evaluate(analysis.confidence)
    family = lenient.family
    level = per_check_confidence(analysis.confidence, family)
    evaluation = evaluate(level)
    checks = _combined(evaluation.checks, lenient.checks)
    judged, not_judged = evaluation.judged, evaluation.not_judged
    thin_tails = [check for check in checks if check.passed is None and _identity(check) in evaluation.thin_tails]

    def verdict(result: str, reason: str, message: str, first: tuple[Check, ...] = ()) -> Verdict:
        """`first`: checks listed before the others (the headline and what it explains), so a
        status that keeps only the first failing checks always keeps the cause."""
        leading = {id(check) for check in first}
        ordered = [*first, *(check for check in checks if id(check) not in leading)]
        return Verdict(result=result, reason=reason, message=message, evaluated_at=now, checks=ordered)

    failed = [check for check in checks if check.passed is False]
    if failed:
        worst, explained = headline(failed, checks, slices, level)
        others = sorted((k for k in failed if k is not worst and k not in explained), key=lambda k: k.hour is not None)
        message = f"{worst.name} failed on {c.describe_where(worst)}: {worst.message}"
        message += _records_error_text(worst, slices)
        if explained:
            message += (
                f"; explains {len(explained)} other failing check{'s' if len(explained) != 1 else ''}: "
                f"{_names(explained)}"
            )
        if others:
            message += f"; {len(others)} other check{'s' if len(others) != 1 else ''} failed too: {_names(others)}"
        return verdict("Failed", failure_reason(worst.name), message, first=(worst, *explained, *others))

    # Hour-of-day windows are there to catch a failure the whole period hides (divergence at
    # night); a window too thin to confirm a pass must not hold back a verdict the whole
    # period and every segment support. Feature checks describe the traffic: they only warn.
    warnings = [check for check in checks if c.is_advisory(check) and check.passed is not True]
    inconclusive = [
        check
        for check in checks
        if check.passed is None
        and check.hour is None
        and not c.is_advisory(check)
        and _identity(check) not in evaluation.thin_tails
    ]
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
    if coverage.hours_seen < coverage.cycle_hours:
        return verdict(
            "Inconclusive",
            reasons.COVERAGE_INCOMPLETE,
            f"pairs in {coverage.hours_seen} of the {coverage.cycle_hours} hours of the business cycle, none in "
            f"{_listed(coverage.gaps)} (UTC); a Passed verdict needs every hour of the cycle observed ({tally})",
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
            f"first, {first.name} on {c.describe_where(first)}: {first.message}",
        )
    decisive = [check for check in checks if not c.is_advisory(check)]
    if not decisive:
        return verdict(
            "Inconclusive",
            reasons.INSUFFICIENT_DATA,
            "no check could be computed from the slices measured (no recorded feature or prediction to judge)",
        )
    passed = [check for check in checks if check.passed is True]
    thin_hours = [check for check in decisive if check.passed is None and check.hour is not None]
    message = (
        f"all {len(passed)} checks passed on {judged} slice{'s' if judged != 1 else ''} "
        f"over {total} pairs and {_duration(coverage.elapsed_seconds)}"
    )
    if family > 1:
        message += (
            f" (each within its limit at {c._level(analysis.confidence)}; a failure needs {c._level(level)}, so "
            f"that a false failure among the {family} checks that could fail stays under "
            f"{c._level(1 - analysis.confidence + 1e-12).rstrip('%')}%)"
        )
    if thin_hours:
        message += (
            f"; {len(thin_hours)} hour-window check{'s' if len(thin_hours) != 1 else ''} too thin to confirm a "
            "pass, none failing"
        )
    if thin_tails:
        message += (
            f"; {len(thin_tails)} latency quantile{'s' if len(thin_tails) != 1 else ''} of thin segments not "
            f"judged (fewer than {TAIL_SAMPLES} requests beyond them): {_names(thin_tails)}"
        )
    if warnings:
        message += (
            f"; {len(warnings)} data-quality warning{'s' if len(warnings) != 1 else ''} about the requests, the "
            f"same for both models: {_names(warnings)}"
        )
    if not_judged:
        message += (
            f"; {len(not_judged)} slice{'s' if len(not_judged) != 1 else ''} with fewer than "
            f"minSamplesPerSegment {analysis.min_samples_per_segment} pairs not judged: {_listed(not_judged)}"
        )
    return verdict("Passed", reasons.VERDICT_PASSED, message)


def _combined(strict: list[Check], lenient: list[Check]) -> list[Check]:
    """Each check as the family-wise evaluation lists it, but passing where it passes at the
    verdict's own confidence (see decide): a failure stays one only at the strict level."""
    passing = {_identity(check): check for check in lenient if check.passed is True}
    return [check if check.passed is False else passing.get(_identity(check), check) for check in strict]


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
    """A check on all traffic while it is short of minSamples: shown, never counted as passed."""
    return check.model_copy(
        update={
            "passed": None,
            "message": f"not judged, only {pairs} of the minSamples {minimum} pairs so far: {check.message}",
        }
    )


def _bad_records(problems: Iterable[DataProblem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for problem in problems:
        if problem.code in BAD_RECORD_CODES and problem.count > 0:
            counts[problem.code] = counts.get(problem.code, 0) + problem.count
    return counts


def _tally(checks: list[Check]) -> str:
    passed = sum(1 for check in checks if check.passed)
    return f"{passed} of {len(checks)} checks passed so far"


def _records_error_text(worst: Check, slices: list[SliceStats]) -> str:
    """What the records' failing answers said, when the headline is Prometheus's view of an error
    check: its counters have no error text, and Prometheus can be decisive before the records are
    (seen on the real node: "100% errors" named without the `KeyError` the records already held)."""
    if worst.source == CheckSource.RECORDS or failure_reason(worst.name) != reasons.CANDIDATE_ERRORS:
        return ""
    same = next((s for s in slices if s.segment == worst.segment and s.hour == worst.hour), None)
    return c.most_common_error(same.candidate) if same is not None else ""


def _names(found: list[Check]) -> str:
    return _listed([f"{check.name} on {slice_label(check.segment, check.hour, check.source)}" for check in found])


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_NAMES_LISTED])
    return shown + (f" and {len(items) - _NAMES_LISTED} more" if len(items) > _NAMES_LISTED else "")


def _duration(seconds: float) -> str:
    return format_duration(timedelta(seconds=int(seconds)))
