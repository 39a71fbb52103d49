"""Numbers and labels as every format writes them (a rate a percentage with two decimals, a
latency milliseconds with one decimal, a missing value an em dash), and the orderings every
format shares: failing checks and segments first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ...api.v1alpha1 import Check, CheckSource
from ...contract.metric_names import ALL_SEGMENTS
from ...contract.report import Report, SideStats, SliceStats, slice_label

DASH = "\u2014"  # em dash: a value that is not there
MIDDOT = " \u00b7 "
ALL = ALL_SEGMENTS
TOP_ERRORS_SHOWN = 5


# --- numbers ---------------------------------------------------------------------------------


def fmt_rate(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.2f}%"


def fmt_ms(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} ms"


def fmt_count(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def fmt_number(value: float | None) -> str:
    return DASH if value is None else f"{value:.4g}"


def fmt_ratio(value: float | None) -> str:
    return DASH if value is None else f"\u00d7{value:.2f}"


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    hours, minutes = divmod(seconds // 60, 60)
    if hours == 0:
        return f"{minutes}m"
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def fmt_timestamp(ts: float | None) -> str:
    if ts is None:
        return DASH
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def error_rate(side: SideStats) -> float | None:
    if side.error_rate is not None:
        return side.error_rate
    return side.errors / side.requests if side.requests else None


def _check_kind(name: str) -> str:
    """How a check's values read, from its name: errorRate, latencyP99Ratio, agreement, absDiffMean..."""
    lowered = name.lower()
    if lowered.startswith("featuremissing:"):  # featureMissing:<feature path>: the path may say anything
        return "rate"
    if "ratio" in lowered:
        return "ratio"  # primary and candidate are latencies; the threshold is their allowed ratio
    if "latency" in lowered:
        return "ms"
    if any(word in lowered for word in ("rate", "agreement", "missing", "share", "fraction")):
        return "rate"
    return "number"


def check_values(check: Check) -> tuple[str, str, str]:
    """(primary, candidate, threshold) of a check, formatted for its kind."""
    kind = _check_kind(check.name)
    value = {"ratio": fmt_ms, "ms": fmt_ms, "rate": fmt_rate, "number": fmt_number}[kind]
    threshold = fmt_ratio(check.threshold) if kind == "ratio" else value(check.threshold)
    if check.threshold is not None:
        # Only agreement is a lower bound (minAgreement); every other limit is a maximum.
        threshold = ("\u2265 " if "agreement" in check.name.lower() else "\u2264 ") + threshold
    return value(check.primary), value(check.candidate), threshold


_RANK = {False: 0, None: 1, True: 2}  # failing, inconclusive, passing

HOUR_ROWS_SHOWN = 6  # hour-of-day checks listed per check and segment, of those that did not pass


def check_label(check: Check) -> str:
    """Where a check was measured, as every format shows it: `history=<1 @14h`, `all (prometheus)`."""
    return slice_label(check.segment, check.hour, check.source)


def result_text(passed: bool | None) -> str:
    return DASH if passed is None else ("PASS" if passed else "FAIL")


def _rank(check: Check) -> int:
    return _RANK[check.passed]


@dataclass(frozen=True)
class HourWindows:
    """One check on one segment in every hour of day, counted: what stands for its hour rows."""

    name: str
    segment: str
    source: CheckSource
    windows: int
    passed: int
    failed_hours: tuple[int, ...]  # in hour order; the first HOUR_ROWS_SHOWN are listed
    inconclusive: int
    unlisted_inconclusive: int

    @property
    def rank(self) -> int:
        return 0 if self.failed_hours else 1 if self.inconclusive else 2

    def parts(self) -> list[tuple[bool | None, str]]:
        """(result, words) for each result that occurred: `20 passed`, `3 FAILED (2h, 3h, 4h)`, `1 inconclusive`."""
        parts: list[tuple[bool | None, str]] = []
        if self.passed:
            parts.append((True, f"{self.passed} passed"))
        if self.failed_hours:
            hours = ", ".join(f"{h}h" for h in self.failed_hours[:HOUR_ROWS_SHOWN])
            more = len(self.failed_hours) - HOUR_ROWS_SHOWN
            if more > 0:
                hours += f" and {more} more not listed"
            parts.append((False, f"{len(self.failed_hours)} FAILED ({hours})"))
        if self.inconclusive:
            unlisted = f" ({self.unlisted_inconclusive} not listed)" if self.unlisted_inconclusive else ""
            parts.append((None, f"{self.inconclusive} inconclusive{unlisted}"))
        return parts

    def describe(
        self,
        code: Callable[[str], str] = str,
        words: Callable[[str], str] = str,
        failed: Callable[[str], str] | None = None,
    ) -> str:
        """`errorRate on all, 24 hour windows: 20 passed, 3 FAILED (2h, 3h, 4h), 1 inconclusive`, marked up
        by the caller: `code` for the check and segment names, `words` for the rest, `failed` for the FAILED part."""
        failed = failed or words
        counts = words(", ").join(failed(text) if result is False else words(text) for result, text in self.parts())
        where = code(self.name) + words(" on ") + code(slice_label(self.segment, source=self.source))
        plural = "" if self.windows == 1 else "s"
        return where + words(f", {self.windows} hour window{plural}: ") + counts


def listed_checks(report: Report) -> tuple[list[Check], list[HourWindows]]:
    """The checks to list, worst first, and one count per check and segment of its hour-of-day checks.

    Every whole-period check is listed: failing first, then inconclusive, then passing, report order
    within each. A week has 24 hour-of-day checks (`all @14h`) per check and segment, so of those
    only the ones that did not pass are listed, after the whole-period ones of the same result:
    failing before inconclusive, in hour order, at most HOUR_ROWS_SHOWN per check and segment.
    The HourWindows, worst first, count them all.
    """
    listed: list[Check] = []
    by_hour: dict[tuple[str, str, CheckSource], list[Check]] = {}
    for check in report.verdict.checks:
        if check.hour is None:
            listed.append(check)
        else:
            by_hour.setdefault((check.name, check.segment, check.source), []).append(check)
    summaries = []
    for (name, segment, source), windows in by_hour.items():
        windows.sort(key=lambda check: check.hour)
        failed = tuple(check.hour for check in windows if check.passed is False)
        inconclusive = sum(1 for check in windows if check.passed is None)
        not_passed = sorted((check for check in windows if check.passed is not True), key=_rank)
        listed += not_passed[:HOUR_ROWS_SHOWN]
        summaries.append(
            HourWindows(
                name=name,
                segment=segment,
                source=source,
                windows=len(windows),
                passed=len(windows) - len(failed) - inconclusive,
                failed_hours=failed,
                inconclusive=inconclusive,
                unlisted_inconclusive=min(inconclusive, max(0, len(not_passed) - HOUR_ROWS_SHOWN)),
            )
        )
    listed.sort(key=lambda check: (_rank(check), check.hour is not None))
    return listed, sorted(summaries, key=lambda summary: summary.rank)


def segments_in_order(report: Report) -> list[SliceStats]:
    """Whole-period slices: `all` first, then segments with failing checks, inconclusive, the rest."""
    failing = {c.segment for c in report.verdict.checks if c.passed is False}
    unsure = {c.segment for c in report.verdict.checks if c.passed is None}

    def rank(s: SliceStats) -> int:
        if s.segment == ALL:
            return 0
        return 1 if s.segment in failing else 2 if s.segment in unsure else 3

    return sorted((s for s in report.slices if s.hour is None), key=rank)


def top_errors(report: Report) -> list[tuple[str, str, int, str]]:
    """(segment, side, count, text): the candidate's in every segment, the primary's in `all` for reference."""
    rows = []
    for stats in segments_in_order(report):
        sides = [("candidate", stats.candidate)] + ([("primary", stats.primary)] if stats.segment == ALL else [])
        for side_name, side in sides:
            rows.extend((stats.segment, side_name, e.count, e.text) for e in side.top_errors[:TOP_ERRORS_SHOWN])
    return rows


def one_line(text: str) -> str:
    return " ".join(text.split())


def time_covered(cov) -> str:
    """ "168h of 168h (shadowing for 326h55m)": the time covered never reads more than the cycle."""
    covered = min(cov.elapsed_seconds, cov.required_seconds)
    text = f"{fmt_duration(covered)} of {fmt_duration(cov.required_seconds)}"
    if cov.elapsed_seconds > cov.required_seconds:
        text += f" (shadowing for {fmt_duration(cov.elapsed_seconds)})"
    return text


def hours_covered(cov) -> str:
    """ "160 of 168 hours seen (none in Sat 01:00-05:00 UTC), " or "" when the cycle is judged by time."""
    if not cov.cycle_hours:
        return ""
    text = f"{cov.hours_seen} of {cov.cycle_hours} hours seen"
    if cov.gaps:
        text += f" (none in {', '.join(cov.gaps)} UTC)"
    return text + ", "
