"""The verdict's headline: which failing check to name, and which other failures it explains.

Named: the most serious reason, then the furthest beyond its limit by the near end of its
interval (the records' slice rather than Prometheus's view of it when both fail the check) (a
fault is most severe in the smallest slice that holds it: bigger slices dilute it, thinner
slices are less certain); equally far, a segment bucket before all traffic
unless another bucket of its dimension fails the same check at the same time, and the whole
period before an hour window.

Explained: failing checks of the same name on slices that share the named slice's traffic
(the whole period, and the same hour when an hour window is named): all traffic when all
traffic without the named segment does not fail the check (for counted rates; otherwise
when no other bucket of the dimension fails it), the named segment itself, and the slices
of other dimensions (which mix its traffic in).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..api.v1alpha1 import Check, CheckSource
from ..contract import reasons
from ..contract.report import SideStats, SliceStats
from . import checks as c

_ADDITIVE = (c.ERROR_RATE, c.ERROR_RATE_INCREASE, c.AGREEMENT)  # checks whose complement slice can be counted

# Verdict reasons of failing checks, the most serious first.
FAILURE_PRIORITY = (
    reasons.CANDIDATE_ERRORS,
    reasons.LATENCY_REGRESSION,
    reasons.PREDICTION_DIVERGENCE,
    reasons.FEATURE_UNAVAILABLE,
)


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


def headline(
    failed: list[Check], checks: list[Check], slices: list[SliceStats], level: float
) -> tuple[Check, list[Check]]:
    """The failing check to name, and the other failing checks it explains (see the module's docstring)."""
    order = {id(check): i for i, check in enumerate(checks)}
    worst = _worst(failed, order, level)
    if worst.source != CheckSource.RECORDS:
        # The records' view of the same slice, when it fails the same check, names the error
        # text Prometheus cannot (seen on the real node: "100% errors" without the KeyError).
        worst = next(
            (
                k
                for k in failed
                if k.name == worst.name
                and k.source == CheckSource.RECORDS
                and (k.segment, k.hour) == (worst.segment, worst.hour)
            ),
            worst,
        )
    base, named_hour = worst.segment, worst.hour
    if worst.source != CheckSource.RECORDS or base == c.OVERALL or "=" not in base:
        return worst, []
    dimension = _dimension(base)
    siblings_fail = any(
        k.name == worst.name and _dimension(k.segment) == dimension and k.segment != base for k in failed
    )
    stats = {(s.segment, s.hour): s for s in slices}
    overall_explained: dict[int | None, bool] = {}

    def explains_overall(at: int | None) -> bool:
        """Whether all traffic (at hour `at`) without the named slice's traffic there stays clear of the check."""
        if at not in overall_explained:
            found = None
            if worst.name in _ADDITIVE:
                found = _complement_passes(worst, stats.get((c.OVERALL, at)), stats.get((base, at)), level)
            overall_explained[at] = (not siblings_fail) if found is None else found
        return overall_explained[at]

    explained = []
    for k in failed:
        if k is worst or k.name != worst.name:
            continue
        k_base, at = k.segment, k.hour
        if named_hour is not None and at not in (None, named_hour):
            continue  # an hour window names one hour: other hours hold other traffic
        if k_base == c.OVERALL:
            if explains_overall(at):
                explained.append(k)
        elif k_base == base or _dimension(k_base) != dimension:
            explained.append(k)
    return worst, explained


def _dimension(segment: str) -> str:
    """`history=<1` -> `history`; `all` -> `all`."""
    return segment.partition("=")[0]


def _worst(failed: list[Check], order: Mapping[int, int], level: float | None = None) -> Check:
    """Most serious reason, furthest beyond its limit; equally far, a segment bucket before all
    traffic (the more specific) unless another bucket of its dimension fails the same check at
    the same time (then the fault is not the segment's), and the whole period before an hour."""
    failing = {(k.name, k.segment, k.hour) for k in failed}  # either source: both saw the same traffic

    def shared(k: Check) -> bool:
        if k.segment == c.OVERALL or "=" not in k.segment:
            return True
        return any(
            name == k.name and hour == k.hour and other != k.segment and _dimension(other) == _dimension(k.segment)
            for name, other, hour in failing
        )

    return min(
        failed,
        key=lambda k: (
            FAILURE_PRIORITY.index(failure_reason(k.name)),
            -round(severity(k, level), 9),
            shared(k),
            k.hour is not None,
            order[id(k)],
        ),
    )


def _complement_passes(cause: Check, whole: SliceStats | None, part: SliceStats | None, level: float) -> bool | None:
    """Whether `whole` without `part` (the cause's slice) avoids failing the same check; None if not computable."""
    if whole is None or part is None or cause.threshold is None:
        return None
    rest = _without(whole, part)
    if rest.pairs <= 0:
        return True
    if cause.name == c.ERROR_RATE:
        check = c.error_rate_check(rest, cause.threshold, level, 1)
    elif cause.name == c.ERROR_RATE_INCREASE:
        check = c.error_rate_increase_check(rest, cause.threshold, level, 1)
    else:
        check = c.agreement_check(rest, cause.threshold, level, 1)
    return check.passed is not False


def _without(whole: SliceStats, part: SliceStats) -> SliceStats:
    """The counts of `whole` minus those of `part` (a segment bucket inside it): what the rate checks need."""

    def side(a: SideStats, b: SideStats) -> SideStats:
        return SideStats(requests=max(0, a.requests - b.requests), errors=max(0, a.errors - b.errors))

    comparable = max(0, whole.comparable - part.comparable)
    agreement = None
    if whole.agreement is not None and comparable > 0:
        agreeing = whole.agreement * whole.comparable - (part.agreement or 0.0) * part.comparable
        agreement = min(1.0, max(0.0, agreeing / comparable))
    return SliceStats(
        segment=f"{whole.segment} without {part.segment}",
        pairs=max(0, whole.pairs - part.pairs),
        primary=side(whole.primary, part.primary),
        candidate=side(whole.candidate, part.candidate),
        agreement=agreement,
        comparable=comparable,
    )


def severity(check: Check, level: float | None = None) -> float:
    """How far a failing check is beyond its limit, as a multiple of the limit (ties go to list order).

    With `level`, a rate check is measured by the near end of its interval at that level (what
    the data show at least), so a thin slice's noisy rate does not outrank a large slice's steady one.
    """
    value, limit = check.candidate, check.threshold
    if value is None or limit is None:
        return 0.0
    n = check.samples or 0
    if check.name == c.ERROR_RATE_INCREASE:
        value -= check.primary or 0.0
        if level is not None and n > 0 and check.primary is not None and check.candidate is not None:
            value = c.difference_interval(round(check.primary * n), n, round(check.candidate * n), n, level)[0]
    elif check.name == c.ERROR_RATE and level is not None and n > 0:
        value = c.wilson_interval(min(n, round(value * n)), n, level)[0]
    elif check.name in c.LATENCY_RATIO_NAMES.values():
        if not check.primary:
            return 0.0
        value /= check.primary
    elif check.name == c.AGREEMENT:
        if level is not None and n > 0:
            value = c.wilson_interval(min(n, round(value * n)), n, level)[1]
        value, limit = 1 - value, 1 - limit  # disagreement against allowed disagreement
    if limit <= 0:
        return math.inf if value > 0 else 0.0
    return value / limit
