"""Numbers and labels as every format writes them, and the two plain-text formats: table and Markdown.

The formatters here are shared with `svg` and `html`: a rate is a percentage with two decimals,
a latency milliseconds with one decimal, a missing value an em dash. So are the orderings:
failing checks and segments first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ...api.v1alpha1 import Check
from ...contract.metric_names import ALL_SEGMENTS
from ...contract.report import Report, SideStats, SliceStats

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


_HOUR_SUFFIX = re.compile(r"@([01]?[0-9]|2[0-3])h$")
_RANK = {False: 0, None: 1, True: 2}  # failing, inconclusive, passing

HOUR_ROWS_SHOWN = 6  # hour-of-day checks listed per check and segment, of those that did not pass


def split_label(label: str) -> tuple[str, int | None]:
    """(segment, hour of day) of a Check.segment: checks on one hour of day are labelled `history=<1@14h`."""
    match = _HOUR_SUFFIX.search(label)
    return (label, None) if match is None else (label[: match.start()], int(match.group(1)))


def base_segment(label: str) -> str:
    """The segment of a Check.segment, without its hour of day."""
    return split_label(label)[0]


def result_text(passed: bool | None) -> str:
    return DASH if passed is None else ("PASS" if passed else "FAIL")


def _rank(check: Check) -> int:
    return _RANK[check.passed]


@dataclass(frozen=True)
class HourWindows:
    """One check on one segment in every hour of day, counted: what stands for its hour rows."""

    name: str
    segment: str
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
        where = code(self.name) + words(" on ") + code(self.segment)
        plural = "" if self.windows == 1 else "s"
        return where + words(f", {self.windows} hour window{plural}: ") + counts


def listed_checks(report: Report) -> tuple[list[Check], list[HourWindows]]:
    """The checks to list, worst first, and one count per check and segment of its hour-of-day checks.

    Every whole-period check is listed: failing first, then inconclusive, then passing, report order
    within each. A week has 24 hour-of-day checks (`all@14h`) per check and segment, so of those
    only the ones that did not pass are listed, after the whole-period ones of the same result:
    failing before inconclusive, in hour order, at most HOUR_ROWS_SHOWN per check and segment.
    The HourWindows, worst first, count them all.
    """
    listed: list[Check] = []
    by_hour: dict[tuple[str, str], list[tuple[int, Check]]] = {}
    for check in report.verdict.checks:
        segment, hour = split_label(check.segment)
        if hour is None:
            listed.append(check)
        else:
            by_hour.setdefault((check.name, segment), []).append((hour, check))
    summaries = []
    for (name, segment), windows in by_hour.items():
        windows.sort(key=lambda window: window[0])
        failed = tuple(hour for hour, check in windows if check.passed is False)
        inconclusive = sum(1 for _hour, check in windows if check.passed is None)
        not_passed = sorted((check for _hour, check in windows if check.passed is not True), key=_rank)
        listed += not_passed[:HOUR_ROWS_SHOWN]
        summaries.append(
            HourWindows(
                name=name,
                segment=segment,
                windows=len(windows),
                passed=len(windows) - len(failed) - inconclusive,
                failed_hours=failed,
                inconclusive=inconclusive,
                unlisted_inconclusive=min(inconclusive, max(0, len(not_passed) - HOUR_ROWS_SHOWN)),
            )
        )
    listed.sort(key=lambda check: (_rank(check), split_label(check.segment)[1] is not None))
    return listed, sorted(summaries, key=lambda summary: summary.rank)


def segments_in_order(report: Report) -> list[SliceStats]:
    """Whole-period slices: `all` first, then segments with failing checks, inconclusive, the rest."""
    failing = {base_segment(c.segment) for c in report.verdict.checks if c.passed is False}
    unsure = {base_segment(c.segment) for c in report.verdict.checks if c.passed is None}

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


# --- table -----------------------------------------------------------------------------------


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    right = set(right)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]


def _check_row(check: Check) -> list[str]:
    primary, candidate, threshold = check_values(check)
    return [
        check.name,
        check.segment,
        primary,
        candidate,
        threshold,
        result_text(check.passed),
        fmt_count(check.samples),
    ]


CHECK_HEADERS = ("check", "segment", "primary", "candidate", "threshold", "result", "samples")


def render_table(report: Report) -> str:
    return _render_text(report, brief=False)


def render_summary(report: Report) -> str:
    """The table for a terminal: whole-period checks that decided the verdict (every one when it
    passed), hour windows as counts, top errors and coverage; no per-check notes or queries."""
    return _render_text(report, brief=True)


def _render_text(report: Report, brief: bool) -> str:
    verdict = report.verdict
    head = f"VERDICT  {verdict.result} ({verdict.reason})"
    if verdict.message:
        head += f": {one_line(verdict.message)}"
    context = [f"shadow {report.shadow}"]
    if report.candidate:
        context.append(f"candidate {report.candidate}")
    context += [f"evaluated {verdict.evaluated_at}", f"report {report.generated_at}"]
    lines = [head, "  ".join(context), ""]

    checks, hour_windows = listed_checks(report)
    if brief:
        whole_period = [c for c in checks if split_label(c.segment)[1] is None]
        deciding = [c for c in whole_period if c.passed is not True]
        checks = deciding if any(c.passed is False for c in deciding) else whole_period
    lines.append("CHECKS")
    if checks:
        lines += _text_table(CHECK_HEADERS, [_check_row(c) for c in checks], right=(2, 3, 4, 6))
    lines += [f"  {windows.describe()}" for windows in hour_windows]
    notes = [] if brief else [c for c in checks if c.passed is not True and c.message]
    lines += [f"  {result_text(c.passed)} {c.name} [{c.segment}]: {one_line(c.message or '')}" for c in notes]
    if not checks and not hour_windows:
        lines.append("  none")

    errors = top_errors(report)
    if errors:
        lines += ["", "TOP ERRORS"]
        rows = [[seg, side, fmt_count(n), one_line(text)] for seg, side, n, text in errors]
        lines += _text_table(("segment", "side", "count", "error"), rows, right=(2,))

    cov = report.coverage
    if brief:
        lines += [
            "",
            f"COVERAGE  {cov.percent}%: {time_covered(cov)}, {hours_covered(cov)}"
            f"{fmt_count(cov.samples)} of {fmt_count(cov.required_samples)} samples, records "
            f"{fmt_timestamp(cov.first_ts)} to {fmt_timestamp(cov.last_ts)}",
            f"DATA PROBLEMS  {', '.join(f'{p.code} ({fmt_count(p.count)})' for p in report.problems) or 'none'}",
        ]
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"COVERAGE  {cov.percent}% (the lowest of time, samples and hours of the cycle)",
        f"  time     {time_covered(cov)}",
        *([f"  hours    {hours_covered(cov).rstrip(', ')}"] if cov.cycle_hours else []),
        f"  samples  {fmt_count(cov.samples)} of {fmt_count(cov.required_samples)}",
        f"  records  {fmt_timestamp(cov.first_ts)} to {fmt_timestamp(cov.last_ts)}",
        "",
        "DATA PROBLEMS",
    ]
    if report.problems:
        rows = [[p.code, fmt_count(p.count), one_line(p.message)] for p in report.problems]
        lines += _text_table(("code", "count", "message"), rows, right=(1,))
    else:
        lines.append("  none")

    if report.queries:
        lines += ["", "QUERIES"]
        lines += [f"  {fmt_number(value):>10}  {one_line(query)}" for query, value in report.queries.items()]
    return "\n".join(lines) + "\n"


# --- markdown --------------------------------------------------------------------------------

_MD_SPECIAL = set("\\`*_[]<>|#~")
_MD_ICON = {"Passed": "\u2705", "Failed": "\u274c", "Inconclusive": "\u26a0\ufe0f"}


def _md_text(text: str) -> str:
    """Plain text safe in a paragraph or a table cell: Markdown punctuation and HTML escaped."""
    text = one_line(text).replace("&", "&amp;")
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def _md_code(text: str) -> str:
    """A code span holding any text, pipes escaped so it stays inside its table cell."""
    text = one_line(text)
    longest = run = 0
    for ch in text:  # the longest run of backticks inside decides the fence
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    marks = {"l": "---", "r": "--:", "c": ":-:"}
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(marks[a] for a in align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def render_markdown(report: Report) -> str:
    verdict = report.verdict
    icon = _MD_ICON.get(verdict.result, "")
    lines = [f"### {icon} Shadow verdict: {verdict.result} \u2014 {_md_code(verdict.reason)}", ""]
    if verdict.message:
        lines += [_md_text(verdict.message), ""]
    context = [_md_code(report.shadow)]
    if report.candidate:
        context.append(f"candidate {_md_code(report.candidate)}")
    context += [f"evaluated {_md_text(verdict.evaluated_at)}", f"coverage {report.coverage.percent}%"]
    lines += [" \u00b7 ".join(context), "", "#### Checks", ""]

    checks, hour_windows = listed_checks(report)
    if checks:
        rows = []
        for check in checks:
            primary, candidate, threshold = check_values(check)
            result = {"PASS": "PASS", "FAIL": "**FAIL**"}.get(result_text(check.passed), DASH)
            rows.append(
                [
                    _md_code(check.name),
                    _md_code(check.segment),
                    primary,
                    candidate,
                    _md_text(threshold),
                    result,
                    fmt_count(check.samples),
                ]
            )
        headers = [h.capitalize() for h in CHECK_HEADERS]
        lines += _md_table(headers, rows, "llrrrcr")
    if hour_windows:
        # `*` bullets: a list of its own, not run together with the `-` notes below
        lines += [""] if checks else []
        lines += [f"* {w.describe(code=_md_code, failed=lambda text: f'**{text}**')}" for w in hour_windows]
    notes = [c for c in checks if c.passed is not True and c.message]
    if notes:
        lines.append("")
        lines += [
            f"- **{result_text(c.passed)}** {_md_code(c.name)} on {_md_code(c.segment)}: {_md_text(c.message or '')}"
            for c in notes
        ]
    if not checks and not hour_windows:
        lines.append("No checks were evaluated.")

    errors = top_errors(report)
    if errors:
        lines += ["", "#### Top errors", ""]
        rows = [[_md_code(seg), side, fmt_count(n), _md_code(text)] for seg, side, n, text in errors]
        lines += _md_table(["Segment", "Side", "Count", "Error"], rows, "llrl")

    cov = report.coverage
    lines += ["", "#### Coverage", ""]
    lines += _md_table(
        ["", "Seen", "Required"],
        [
            ["Time", fmt_duration(cov.elapsed_seconds), fmt_duration(cov.required_seconds)],
            ["Samples", fmt_count(cov.samples), fmt_count(cov.required_samples)],
            ["**Coverage**", f"**{cov.percent}%**", ""],
        ],
        "lrr",
    )
    lines += [
        "",
        f"Records from {fmt_timestamp(cov.first_ts)} to {fmt_timestamp(cov.last_ts)}.",
        "",
        "#### Data problems",
        "",
    ]
    if report.problems:
        rows = [[_md_code(p.code), fmt_count(p.count), _md_text(p.message)] for p in report.problems]
        lines += _md_table(["Code", "Count", "Message"], rows, "lrl")
    else:
        lines.append("None.")

    if report.queries:
        lines += ["", "<details><summary>Prometheus queries</summary>", ""]
        rows = [[_md_code(q), fmt_number(v)] for q, v in report.queries.items()]
        lines += _md_table(["Query", "Value"], rows, "lr")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


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
