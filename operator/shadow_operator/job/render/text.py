"""The plain-text formats: the terminal table and the one-line summary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ...api.v1alpha1 import Check
from ...contract.report import Report
from .fields import (
    check_label,
    check_values,
    fmt_count,
    fmt_number,
    fmt_timestamp,
    hours_covered,
    listed_checks,
    one_line,
    result_text,
    time_covered,
    top_errors,
)

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
        check_label(check),
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
        whole_period = [c for c in checks if c.hour is None]
        deciding = [c for c in whole_period if c.passed is not True]
        checks = deciding if any(c.passed is False for c in deciding) else whole_period
    lines.append("CHECKS")
    if checks:
        lines += _text_table(CHECK_HEADERS, [_check_row(c) for c in checks], right=(2, 3, 4, 6))
    lines += [f"  {windows.describe()}" for windows in hour_windows]
    notes = [] if brief else [c for c in checks if c.passed is not True and c.message]
    lines += [f"  {result_text(c.passed)} {c.name} [{check_label(c)}]: {one_line(c.message or '')}" for c in notes]
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
