"""The report as Markdown, for a pull-request comment."""

from __future__ import annotations

from collections.abc import Sequence

from ...contract.report import Report
from .fields import (
    DASH,
    check_label,
    check_values,
    fmt_count,
    fmt_duration,
    fmt_number,
    fmt_timestamp,
    listed_checks,
    one_line,
    result_text,
    top_errors,
)
from .text import CHECK_HEADERS

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
                    _md_code(check_label(check)),
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
            f"- **{result_text(c.passed)}** {_md_code(c.name)} on {_md_code(check_label(c))}: {_md_text(c.message or '')}"
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
