"""The HTML report: one self-contained page (inline CSS, inline SVG charts), its tables and sections."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ...contract.report import Report, SideStats, SliceStats
from .fields import (
    DASH,
    MIDDOT,
    TOP_ERRORS_SHOWN,
    check_label,
    check_values,
    error_rate,
    fmt_count,
    fmt_number,
    fmt_rate,
    fmt_timestamp,
    hours_covered,
    listed_checks,
    result_text,
    segments_in_order,
    time_covered,
)
from .svg import error_rate_svg, esc, hourly_svg, latency_svg
from .text import CHECK_HEADERS

# --- page ------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #111827;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 24px 40px; }
.banner { border-radius: 8px; padding: 16px 20px; margin-bottom: 16px; border-left: 8px solid; }
.banner.passed { background: #dcfce7; border-color: #15803d; }
.banner.failed { background: #fee2e2; border-color: #b91c1c; }
.banner.inconclusive { background: #fef3c7; border-color: #b45309; }
.banner .result { font-size: 28px; font-weight: 700; margin: 0; }
.banner.passed .result { color: #166534; }
.banner.failed .result { color: #991b1b; }
.banner.inconclusive .result { color: #92400e; }
.banner .reason { font-size: 16px; font-weight: 600; margin-left: 10px; color: #374151; }
.banner .message { font-size: 15px; margin: 6px 0 10px; }
.meta { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 0; font-size: 13px; color: #374151; }
.meta div { display: flex; gap: 6px; }
.meta dt { font-weight: 600; }
.meta dd { margin: 0; }
nav { font-size: 13px; margin-bottom: 16px; }
nav a { color: #1d4ed8; margin-right: 12px; }
section { background: #fff; border-radius: 8px; padding: 14px 20px 18px; margin-bottom: 16px;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }
h2 { font-size: 18px; margin: 0 0 10px; }
h3 { font-size: 16px; margin: 18px 0 8px; padding-top: 12px; border-top: 1px solid #e5e7eb; }
h3:first-of-type { border-top: 0; padding-top: 0; }
h4 { font-size: 13px; margin: 14px 0 6px; color: #374151; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
th { background: #f9fafb; font-weight: 600; color: #374151; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.fail td { background: #fef2f2; }
tr.hours td { color: #6b7280; background: #f9fafb; font-size: 12px; }
tr.hours code { padding: 0 2px; }
.failtext { color: #b91c1c; }
.badge { display: inline-block; min-width: 44px; text-align: center; border-radius: 4px; padding: 0 6px;
  font-size: 12px; font-weight: 700; }
.badge.pass { background: #dcfce7; color: #166534; }
.badge.fail { background: #b91c1c; color: #fff; }
.badge.none { background: #e5e7eb; color: #374151; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px;
  background: #f3f4f6; padding: 1px 4px; border-radius: 3px; word-break: break-word; }
code.nw { white-space: nowrap; word-break: normal; }
.muted { color: #6b7280; }
.note { font-size: 13px; margin: 4px 0; }
.chart { display: block; max-width: 100%; height: auto; margin: 8px 0; }
.stats { max-width: 720px; }
.bar { height: 14px; background: #e5e7eb; border-radius: 7px; overflow: hidden; max-width: 480px; margin: 6px 0 10px; }
.bar span { display: block; height: 100%; background: #2563eb; }
.flag { color: #b91c1c; font-weight: 700; font-size: 13px; margin-left: 8px; }
details { margin-top: 8px; }
footer { color: #6b7280; font-size: 12px; text-align: center; }
"""


def _td(text: str, num: bool = False, raw: bool = False) -> str:
    content = text if raw else esc(text)
    return f'<td class="num">{content}</td>' if num else f"<td>{content}</td>"


def _html_table(headers: Sequence[str], rows: Iterable[str], num_columns: Iterable[int] = (), cls: str = "") -> str:
    num = set(num_columns)
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if i in num else f"<th>{esc(h)}</th>" for i, h in enumerate(headers)
    )
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _badge(passed: bool | None) -> str:
    cls = "none" if passed is None else ("pass" if passed else "fail")
    return f'<span class="badge {cls}">{esc(result_text(passed))}</span>'


def _checks_html(report: Report) -> str:
    checks, hour_windows = listed_checks(report)
    if not checks and not hour_windows:
        return '<p class="muted">No checks were evaluated.</p>'
    rows = []
    for check in checks:
        primary, candidate, threshold = check_values(check)
        cls = ' class="fail"' if check.passed is False else ""
        rows.append(
            f"<tr{cls}>"
            + _td(f'<code class="nw">{esc(check.name)}</code>', raw=True)
            + _td(f'<code class="nw">{esc(check_label(check))}</code>', raw=True)
            + _td(primary, num=True)
            + _td(candidate, num=True)
            + _td(threshold, num=True)
            + _td(_badge(check.passed), raw=True)
            + _td(fmt_count(check.samples), num=True)
            + _td(check.message or "")
            + "</tr>"
        )
    headers = [*CHECK_HEADERS, "evidence"]
    for windows in hour_windows:  # muted: the hours that did not pass are rows above, or named here
        text = windows.describe(
            code=lambda name: f'<code class="nw">{esc(name)}</code>',
            words=esc,
            failed=lambda words: f'<strong class="failtext">{esc(words)}</strong>',
        )
        rows.append(f'<tr class="hours"><td colspan="{len(headers)}">{text}</td></tr>')
    return _html_table(headers, rows, num_columns=(2, 3, 4, 6))


def _side_latency(side: SideStats) -> str:
    lat = side.latency_ms
    if lat is None:
        return DASH
    return f"{lat.p50:.1f} / {lat.p95:.1f} / {lat.p99:.1f} ms"


def _outcomes(side: SideStats) -> str:
    return MIDDOT.join(f"{k} {v:,}" for k, v in sorted(side.outcomes.items(), key=lambda kv: -kv[1])) or DASH


def _segment_html(index: int, stats: SliceStats, report: Report) -> str:
    checks = [c for c in report.verdict.checks if c.segment == stats.segment]
    flag = ""
    if any(c.passed is False for c in checks):
        names = ", ".join(dict.fromkeys(c.name for c in checks if c.passed is False))
        flag = f'<span class="flag">{esc(names)} failed</span>'
    parts = [f'<h3 id="seg-{index}">Segment <code>{esc(stats.segment)}</code>{flag}</h3>']
    rows = [
        ("requests", fmt_count(stats.primary.requests), fmt_count(stats.candidate.requests)),
        (
            "errors",
            f"{stats.primary.errors:,} ({fmt_rate(error_rate(stats.primary))})",
            f"{stats.candidate.errors:,} ({fmt_rate(error_rate(stats.candidate))})",
        ),
        ("latency p50 / p95 / p99", _side_latency(stats.primary), _side_latency(stats.candidate)),
        ("outcomes", _outcomes(stats.primary), _outcomes(stats.candidate)),
    ]
    table_rows = [f"<tr><th>{esc(r[0])}</th>{_td(r[1], num=True)}{_td(r[2], num=True)}</tr>" for r in rows]
    parts.append(_html_table(["", "primary", "candidate"], table_rows, num_columns=(1, 2), cls="stats"))
    compare = [f"pairs {fmt_count(stats.pairs)}", f"comparable {fmt_count(stats.comparable)}"]
    if stats.agreement is not None:
        compare.append(f"agreement {fmt_rate(stats.agreement)}")
    if stats.abs_diff_mean is not None or stats.abs_diff_p95 is not None:
        compare.append(f"|difference| mean {fmt_number(stats.abs_diff_mean)}, p95 {fmt_number(stats.abs_diff_p95)}")
    parts.append(f'<p class="note">{esc(MIDDOT.join(compare))}</p>')
    missing = {k: v for k, v in stats.feature_missing.items() if v}
    if missing:
        text = ", ".join(f"{k} {fmt_rate(v)}" for k, v in sorted(missing.items()))
        parts.append(f'<p class="note">Features missing: {esc(text)}</p>')
    parts.append("<h4>Latency distribution</h4>")
    parts.append(latency_svg(stats))
    hours = [s for s in report.slices if s.segment == stats.segment and s.hour is not None]
    if hours:
        parts.append("<h4>By hour of day</h4>")
        parts.append(hourly_svg(hours, stats.segment, report.verdict.checks))
    errors = [
        (name, e)
        for name, side in (("candidate", stats.candidate), ("primary", stats.primary))
        for e in side.top_errors[:TOP_ERRORS_SHOWN]
    ]
    if errors:
        parts.append("<h4>Top errors</h4>")
        rows = [
            f"<tr>{_td(name)}{_td(fmt_count(e.count), num=True)}{_td(f'<code>{esc(e.text)}</code>', raw=True)}</tr>"
            for name, e in errors
        ]
        parts.append(_html_table(["side", "count", "error"], rows, num_columns=(1,)))
    return "".join(parts)


def _coverage_html(report: Report) -> str:
    cov = report.coverage
    percent = max(0, min(cov.percent, 100))
    rows = [
        ("time", time_covered(cov)),
        *([("hours", hours_covered(cov).rstrip(", "))] if cov.cycle_hours else []),
        ("samples", f"{fmt_count(cov.samples)} of {fmt_count(cov.required_samples)}"),
        ("records", f"{fmt_timestamp(cov.first_ts)} to {fmt_timestamp(cov.last_ts)}"),
    ]
    body = "".join(f"<tr><th>{esc(k)}</th>{_td(v)}</tr>" for k, v in rows)
    return (
        f'<p><strong>{cov.percent}%</strong> <span class="muted">(the lowest of time, sample and hour coverage)</span></p>'
        f'<div class="bar" role="img" aria-label="coverage {cov.percent}%"><span style="width:{percent}%"></span></div>'
        f'<table class="stats"><tbody>{body}</tbody></table>'
    )


def _problems_html(report: Report) -> str:
    if not report.problems:
        return '<p class="muted">None: every record was usable.</p>'
    rows = [
        f"<tr>{_td(f'<code>{esc(p.code)}</code>', raw=True)}{_td(fmt_count(p.count), num=True)}{_td(p.message)}</tr>"
        for p in report.problems
    ]
    return _html_table(["code", "count", "message"], rows, num_columns=(1,))


def render_html(report: Report) -> str:
    verdict = report.verdict
    cls = verdict.result.lower()
    meta = [("shadow", report.shadow)]
    if report.candidate:
        meta.append(("candidate", report.candidate))
    meta += [
        ("evaluated", verdict.evaluated_at),
        ("coverage", f"{report.coverage.percent}% \u00b7 {report.coverage.samples:,} samples"),
    ]
    if report.problems:
        meta.append(("data problems", f"{sum(p.count for p in report.problems):,}"))
    meta_html = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in meta)
    message = f'<p class="message">{esc(verdict.message)}</p>' if verdict.message else ""
    segments = segments_in_order(report)
    nav = "".join(
        f'<a href="#{anchor}">{esc(label)}</a>'
        for anchor, label in (
            ("checks", "Checks"),
            ("errors", "Error rates"),
            ("segments", "Segments"),
            ("coverage", "Coverage"),
            ("problems", "Data problems"),
        )
    )
    segment_html = "".join(_segment_html(i, s, report) for i, s in enumerate(segments)) or (
        '<p class="muted">No segment statistics in this report.</p>'
    )
    queries = ""
    if report.queries:
        rows = [
            f"<tr>{_td(f'<code>{esc(q)}</code>', raw=True)}{_td(fmt_number(v), num=True)}</tr>"
            for q, v in report.queries.items()
        ]
        queries = (
            '<section id="queries"><details><summary>Prometheus queries '
            f"({len(report.queries)})</summary>{_html_table(['query', 'value'], rows, num_columns=(1,))}</details></section>"
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Shadow report {esc(report.shadow)}: {esc(verdict.result)}</title>"
        f"<style>{_CSS}</style></head><body><main>"
        f'<header class="banner {cls}"><p class="result">{esc(verdict.result)}'
        f'<span class="reason">{esc(verdict.reason)}</span></p>{message}<dl class="meta">{meta_html}</dl></header>'
        f"<nav>{nav}</nav>"
        f'<section id="checks"><h2>Checks</h2>{_checks_html(report)}</section>'
        f'<section id="errors"><h2>Error rate by segment</h2>{error_rate_svg(segments, report.verdict.checks)}</section>'
        f'<section id="segments"><h2>Segments</h2>{segment_html}</section>'
        f'<section id="coverage"><h2>Coverage</h2>{_coverage_html(report)}</section>'
        f'<section id="problems"><h2>Data problems</h2>{_problems_html(report)}</section>'
        f"{queries}"
        f"<footer>shadow-operator report v{report.version} \u00b7 generated {esc(report.generated_at)}</footer>"
        "</main></body></html>\n"
    )
