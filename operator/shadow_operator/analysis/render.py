"""A comparison report for people: a terminal table, Markdown for a PR comment, one HTML file, or JSON.

`render(report, fmt)` is the only entry point. The HTML is a single self-contained document:
inline CSS and inline SVG drawn here (no JavaScript, no fonts, stylesheets or images fetched),
so it can be attached to a ticket or opened from a ConfigMap dump years later.

Numbers read the same in every format: rates as percentages with two decimals, latencies in
milliseconds with one decimal, a missing value as an em dash.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone

from ..api.v1alpha1 import Check
from .report import HistogramBucket, Report, SideStats, SliceStats

FORMATS = ("table", "json", "markdown", "html")

DASH = "\u2014"  # em dash: a value that is not there
MIDDOT = " \u00b7 "
ALL = "all"
TOP_ERRORS_SHOWN = 5
INF_MS = 1e300  # histogram bounds at or above this are the +Inf bucket (written as 1e308)

PRIMARY_COLOUR = "#4c78a8"
CANDIDATE_COLOUR = "#e45756"
LIMIT_COLOUR = "#6b7280"
HALO = {"paint_order": "stroke", "stroke": "#fff", "stroke_width": "3", "stroke_linejoin": "round"}


def render(report: Report, fmt: str) -> str:
    """The report in one of FORMATS: "table", "json", "markdown" or "html"."""
    renderers: dict[str, Callable[[Report], str]] = {
        "table": _render_table,
        "json": _render_json,
        "markdown": _render_markdown,
        "html": _render_html,
    }
    renderer = renderers.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    return renderer(report)


# --- numbers ---------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.2f}%"


def _ms(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} ms"


def _count(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def _number(value: float | None) -> str:
    return DASH if value is None else f"{value:.4g}"


def _ratio(value: float | None) -> str:
    return DASH if value is None else f"\u00d7{value:.2f}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    hours, minutes = divmod(seconds // 60, 60)
    if hours == 0:
        return f"{minutes}m"
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def _timestamp(ts: float | None) -> str:
    if ts is None:
        return DASH
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _error_rate(side: SideStats) -> float | None:
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


def _check_values(check: Check) -> tuple[str, str, str]:
    """(primary, candidate, threshold) of a check, formatted for its kind."""
    kind = _check_kind(check.name)
    value = {"ratio": _ms, "ms": _ms, "rate": _rate, "number": _number}[kind]
    threshold = _ratio(check.threshold) if kind == "ratio" else value(check.threshold)
    if check.threshold is not None:
        # Only agreement is a lower bound (minAgreement); every other limit is a maximum.
        threshold = ("\u2265 " if "agreement" in check.name.lower() else "\u2264 ") + threshold
    return value(check.primary), value(check.candidate), threshold


_HOUR_SUFFIX = re.compile(r"@([01]?[0-9]|2[0-3])h$")


def _base_segment(label: str) -> str:
    """The segment of a Check.segment: checks on one hour of day are labelled `history=<1@14h`."""
    return _HOUR_SUFFIX.sub("", label)


def _result(passed: bool | None) -> str:
    return DASH if passed is None else ("PASS" if passed else "FAIL")


def _checks_in_order(report: Report) -> list[Check]:
    """Failing checks first, then inconclusive ones, then passing; report order within each."""
    rank = {False: 0, None: 1, True: 2}
    return sorted(report.verdict.checks, key=lambda check: rank[check.passed])


def _segments_in_order(report: Report) -> list[SliceStats]:
    """Whole-period slices: `all` first, then segments with failing checks, inconclusive, the rest."""
    failing = {_base_segment(c.segment) for c in report.verdict.checks if c.passed is False}
    unsure = {_base_segment(c.segment) for c in report.verdict.checks if c.passed is None}

    def rank(s: SliceStats) -> int:
        if s.segment == ALL:
            return 0
        return 1 if s.segment in failing else 2 if s.segment in unsure else 3

    return sorted((s for s in report.slices if s.hour is None), key=rank)


def _top_errors(report: Report) -> list[tuple[str, str, int, str]]:
    """(segment, side, count, text): the candidate's in every segment, the primary's in `all` for reference."""
    rows = []
    for stats in _segments_in_order(report):
        sides = [("candidate", stats.candidate)] + ([("primary", stats.primary)] if stats.segment == ALL else [])
        for side_name, side in sides:
            rows.extend((stats.segment, side_name, e.count, e.text) for e in side.top_errors[:TOP_ERRORS_SHOWN])
    return rows


def _one_line(text: str) -> str:
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
    primary, candidate, threshold = _check_values(check)
    return [check.name, check.segment, primary, candidate, threshold, _result(check.passed), _count(check.samples)]


CHECK_HEADERS = ("check", "segment", "primary", "candidate", "threshold", "result", "samples")


def _render_table(report: Report) -> str:
    verdict = report.verdict
    head = f"VERDICT  {verdict.result} ({verdict.reason})"
    if verdict.message:
        head += f": {_one_line(verdict.message)}"
    context = [f"shadow {report.shadow}"]
    if report.candidate:
        context.append(f"candidate {report.candidate}")
    context += [f"evaluated {verdict.evaluated_at}", f"report {report.generated_at}"]
    lines = [head, "  ".join(context), ""]

    checks = _checks_in_order(report)
    lines.append("CHECKS")
    if checks:
        lines += _text_table(CHECK_HEADERS, [_check_row(c) for c in checks], right=(2, 3, 4, 6))
        notes = [c for c in checks if c.passed is not True and c.message]
        lines += [f"  {_result(c.passed)} {c.name} [{c.segment}]: {_one_line(c.message or '')}" for c in notes]
    else:
        lines.append("  none")

    errors = _top_errors(report)
    if errors:
        lines += ["", "TOP ERRORS"]
        rows = [[seg, side, _count(n), _one_line(text)] for seg, side, n, text in errors]
        lines += _text_table(("segment", "side", "count", "error"), rows, right=(2,))

    cov = report.coverage
    lines += [
        "",
        f"COVERAGE  {cov.percent}% (the lower of time and samples)",
        f"  time     {_duration(cov.elapsed_seconds)} of {_duration(cov.required_seconds)}",
        f"  samples  {_count(cov.samples)} of {_count(cov.required_samples)}",
        f"  records  {_timestamp(cov.first_ts)} to {_timestamp(cov.last_ts)}",
        "",
        "DATA PROBLEMS",
    ]
    if report.problems:
        rows = [[p.code, _count(p.count), _one_line(p.message)] for p in report.problems]
        lines += _text_table(("code", "count", "message"), rows, right=(1,))
    else:
        lines.append("  none")

    if report.queries:
        lines += ["", "QUERIES"]
        lines += [f"  {_number(value):>10}  {_one_line(query)}" for query, value in report.queries.items()]
    return "\n".join(lines) + "\n"


# --- json ------------------------------------------------------------------------------------


def _render_json(report: Report) -> str:
    return report.model_dump_json(indent=2)


# --- markdown --------------------------------------------------------------------------------

_MD_SPECIAL = set("\\`*_[]<>|#~")
_MD_ICON = {"Passed": "\u2705", "Failed": "\u274c", "Inconclusive": "\u26a0\ufe0f"}


def _md_text(text: str) -> str:
    """Plain text safe in a paragraph or a table cell: Markdown punctuation and HTML escaped."""
    text = _one_line(text).replace("&", "&amp;")
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def _md_code(text: str) -> str:
    """A code span holding any text, pipes escaped so it stays inside its table cell."""
    text = _one_line(text)
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


def _render_markdown(report: Report) -> str:
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

    checks = _checks_in_order(report)
    if checks:
        rows = []
        for check in checks:
            primary, candidate, threshold = _check_values(check)
            result = {"PASS": "PASS", "FAIL": "**FAIL**"}.get(_result(check.passed), DASH)
            rows.append(
                [
                    _md_code(check.name),
                    _md_code(check.segment),
                    primary,
                    candidate,
                    _md_text(threshold),
                    result,
                    _count(check.samples),
                ]
            )
        headers = [h.capitalize() for h in CHECK_HEADERS]
        lines += _md_table(headers, rows, "llrrrcr")
        notes = [c for c in checks if c.passed is not True and c.message]
        if notes:
            lines.append("")
            lines += [
                f"- **{_result(c.passed)}** {_md_code(c.name)} on {_md_code(c.segment)}: {_md_text(c.message or '')}"
                for c in notes
            ]
    else:
        lines.append("No checks were evaluated.")

    errors = _top_errors(report)
    if errors:
        lines += ["", "#### Top errors", ""]
        rows = [[_md_code(seg), side, _count(n), _md_code(text)] for seg, side, n, text in errors]
        lines += _md_table(["Segment", "Side", "Count", "Error"], rows, "llrl")

    cov = report.coverage
    lines += ["", "#### Coverage", ""]
    lines += _md_table(
        ["", "Seen", "Required"],
        [
            ["Time", _duration(cov.elapsed_seconds), _duration(cov.required_seconds)],
            ["Samples", _count(cov.samples), _count(cov.required_samples)],
            ["**Coverage**", f"**{cov.percent}%**", ""],
        ],
        "lrr",
    )
    lines += [
        "",
        f"Records from {_timestamp(cov.first_ts)} to {_timestamp(cov.last_ts)}.",
        "",
        "#### Data problems",
        "",
    ]
    if report.problems:
        rows = [[_md_code(p.code), _count(p.count), _md_text(p.message)] for p in report.problems]
        lines += _md_table(["Code", "Count", "Message"], rows, "lrl")
    else:
        lines.append("None.")

    if report.queries:
        lines += ["", "<details><summary>Prometheus queries</summary>", ""]
        rows = [[_md_code(q), _number(v)] for q, v in report.queries.items()]
        lines += _md_table(["Query", "Value"], rows, "lr")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


# --- html: svg helpers -----------------------------------------------------------------------


def _e(text: object) -> str:
    """Escape text for HTML and SVG; `://` is written as an entity so no text reads as a link target."""
    return html.escape(str(text), quote=True).replace("://", "&#58;//")


def _f(x: float) -> str:
    return f"{x:.1f}"


def _nice_ceiling(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value * (1 - 1e-9):
            return step * magnitude
    return 10 * magnitude


def _pct_tick(value: float, step: float) -> str:
    for decimals in range(5):
        if abs(round(step * 100, decimals) - step * 100) < 1e-9:
            return f"{value * 100:.{decimals}f}%"
    return f"{value * 100:.2f}%"


def _ms_tick(value: float) -> str:
    if value >= INF_MS:
        return "+Inf"
    return str(int(value)) if value == int(value) else f"{value:g}"


def _svg_open(width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{_e(title)}" font-family="system-ui, sans-serif" font-size="11">'
        f"<title>{_e(title)}</title>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{extra}>{_e(text)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<line x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}" stroke="{stroke}"{extra}/>'


def _placeholder_svg(title: str, note: str, width: int = 720, height: int = 70) -> str:
    return (
        _svg_open(width, height, title)
        + f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#f9fafb" stroke="#e5e7eb"/>'
        + _text(width / 2, height / 2 + 4, note, "middle", fill="#6b7280")
        + "</svg>"
    )


def _legend(x: float, y: float, items: Sequence[tuple[str, str, str]]) -> str:
    """Legend entries (label, colour, style) right-aligned to end at x; style: bar, line or dashed."""
    parts = []
    for label, colour, style in reversed(items):
        x -= len(label) * 6.2
        parts.append(_text(x, y + 4, label, fill="#374151"))
        x -= 22
        if style == "bar":
            parts.append(f'<rect x="{_f(x)}" y="{_f(y - 5)}" width="16" height="10" fill="{colour}"/>')
        else:
            dash = {"stroke_dasharray": "4 3"} if style == "dashed" else {}
            parts.append(_line(x, y, x + 16, y, colour, stroke_width="2", **dash))
        x -= 14
    return "".join(parts)


# --- html: latency distribution ---------------------------------------------------------------


def _shares(buckets: list[HistogramBucket], bounds: list[float]) -> list[float]:
    counts = dict.fromkeys(bounds, 0)
    for bucket in buckets:
        counts[bucket.le_ms] += bucket.count
    total = sum(counts.values())
    return [counts[b] / total if total else 0.0 for b in bounds]


def _latency_svg(stats: SliceStats) -> str:
    title = f"Latency distribution, segment {stats.segment}"
    bounds = sorted(
        {b.le_ms for b in stats.primary.latency_histogram} | {b.le_ms for b in stats.candidate.latency_histogram}
    )
    if not bounds:
        return _placeholder_svg(title, "No latency histogram for this segment.")
    width, height = 720, 290
    left, right, top, bottom = 70, 16, 52, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    band = plot_w / len(bounds)
    sides = [
        ("primary", PRIMARY_COLOUR, _shares(stats.primary.latency_histogram, bounds), stats.primary),
        ("candidate", CANDIDATE_COLOUR, _shares(stats.candidate.latency_histogram, bounds), stats.candidate),
    ]
    y_max = _nice_ceiling(max(max(s[2]) for s in sides) or 1.0)

    def y_of(share: float) -> float:
        return top + plot_h - share / y_max * plot_h

    def x_of(ms: float) -> float:
        """Buckets are equally wide (their bounds grow roughly geometrically); log-interpolated inside."""
        previous = 0.0
        for i, bound in enumerate(bounds):
            if ms <= bound:
                if bound >= INF_MS:
                    fraction = 0.5
                elif previous <= 0:
                    fraction = ms / bound if bound > 0 else 0.0
                else:
                    fraction = math.log(max(ms, previous) / previous) / math.log(bound / previous)
                return left + (i + min(max(fraction, 0.0), 1.0)) * band
            previous = bound
        return left + plot_w

    out = [_svg_open(width, height, title)]
    ticks = 4
    for k in range(ticks + 1):  # horizontal grid and y labels
        share = y_max * k / ticks
        y = y_of(share)
        out.append(_line(left, y, left + plot_w, y, "#e5e7eb"))
        out.append(_text(left - 6, y + 4, _pct_tick(share, y_max / ticks), "end", fill="#374151"))
    for i in range(len(bounds)):  # bars, primary left and candidate right in each bucket
        for j, (name, colour, shares, _side) in enumerate(sides):
            share = shares[i]
            if share <= 0:
                continue
            x = left + i * band + band * (0.12 + 0.38 * j)
            y = y_of(share)
            out.append(
                f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(band * 0.36)}" height="{_f(top + plot_h - y)}" '
                f'fill="{colour}" fill-opacity="0.85"><title>{_e(name)}, {_e(_bucket_label(bounds, i))}: '
                f"{_e(_rate(share))}</title></rect>"
            )
    step = max(1, math.ceil(len(bounds) / 16))
    out.append(_text(left, top + plot_h + 16, "0", "middle", fill="#374151"))
    for i, bound in enumerate(bounds):  # x ticks at bucket upper bounds
        x = left + (i + 1) * band
        out.append(_line(x, top + plot_h, x, top + plot_h + 4, "#6b7280"))
        if (i + 1) % step == 0 or i == len(bounds) - 1:
            out.append(_text(x, top + plot_h + 16, _ms_tick(bound), "middle", fill="#374151"))
    out.append(_line(left, top + plot_h, left + plot_w, top + plot_h, "#6b7280"))
    out.append(_line(left, top, left, top + plot_h, "#6b7280"))
    out.append(
        _text(
            left + plot_w / 2,
            height - 12,
            "latency, ms (bucket upper bounds; buckets spaced evenly, roughly log)",
            "middle",
            fill="#111827",
        )
    )
    out.append(
        f'<text x="16" y="{_f(top + plot_h / 2)}" text-anchor="middle" fill="#111827" '
        f'transform="rotate(-90 16 {_f(top + plot_h / 2)})">share of requests</text>'
    )
    for row, (name, colour, _, side) in enumerate(sides):  # p50/p95/p99 marks, one label row per side
        label_y = 16 + row * 16
        out.append(_text(left - 6, label_y, name, "end", fill=colour, font_weight="600"))
        if side.latency_ms is None:
            out.append(_text(left, label_y, "no percentiles", fill="#6b7280"))
            continue
        last_label_x = -1e9
        for quantile in ("p50", "p95", "p99"):
            value = getattr(side.latency_ms, quantile)
            x = x_of(value)
            dash = ' stroke-dasharray="5 3"' if row == 0 else ""
            out.append(
                f'<line x1="{_f(x)}" y1="{top - 4 + row * 2}" x2="{_f(x)}" y2="{_f(top + plot_h)}" stroke="{colour}" '
                f'stroke-width="1.5"{dash}><title>{_e(name)} {quantile}: {_e(_ms(value))}</title></line>'
            )
            label_x = max(x, last_label_x + 92)
            last_label_x = label_x
            out.append(_text(label_x, label_y, f"{quantile} {_ms(value)}", "middle", fill=colour))
    out.append("</svg>")
    return "".join(out)


def _bucket_label(bounds: list[float], i: int) -> str:
    low = 0.0 if i == 0 else bounds[i - 1]
    if bounds[i] >= INF_MS:
        return f"> {_ms_tick(low)} ms"
    return f"{_ms_tick(low)}\u2013{_ms_tick(bounds[i])} ms"


# --- html: error rate by segment ----------------------------------------------------------------


def _error_rate_svg(segments: list[SliceStats], checks: list[Check]) -> str:
    title = "Error rate by segment, primary and candidate"
    if not segments:
        return _placeholder_svg(title, "No segments in this report.")
    failing = {_base_segment(c.segment) for c in checks if c.passed is False}
    limits = {c.segment: c.threshold for c in checks if c.name.lower() == "errorrate" and c.threshold is not None}
    label_w = min(260, max(60, int(max(len(s.segment) for s in segments) * 6.8) + 12))
    width, row_h, top, bottom = 720, 36, 34, 44
    left, right = label_w, 130
    plot_w = width - left - right
    height = top + row_h * len(segments) + bottom
    rates = [r for s in segments for r in (_error_rate(s.primary), _error_rate(s.candidate)) if r is not None]
    x_max = _nice_ceiling(max([*rates, *limits.values(), 0.0]) or 0.01)

    def x_of(rate: float) -> float:
        return left + min(rate / x_max, 1.0) * plot_w

    out = [_svg_open(width, height, title)]
    ticks = 5
    for k in range(ticks + 1):
        rate = x_max * k / ticks
        x = x_of(rate)
        out.append(_line(x, top - 4, x, top + row_h * len(segments), "#e5e7eb"))
        out.append(_text(x, top + row_h * len(segments) + 16, _pct_tick(rate, x_max / ticks), "middle", fill="#374151"))
    for i, stats in enumerate(segments):
        y0 = top + i * row_h
        weight = "700" if stats.segment in failing else "400"
        colour = "#b91c1c" if stats.segment in failing else "#111827"
        out.append(_text(left - 8, y0 + row_h / 2 + 4, stats.segment, "end", fill=colour, font_weight=weight))
        if stats.segment in limits:
            x = x_of(limits[stats.segment])
            out.append(_line(x, y0 + 2, x, y0 + row_h - 6, LIMIT_COLOUR, stroke_width="2", stroke_dasharray="3 2"))
        for j, (name, side, fill) in enumerate(
            (("primary", stats.primary, PRIMARY_COLOUR), ("candidate", stats.candidate, CANDIDATE_COLOUR))
        ):
            rate = _error_rate(side)
            y = y0 + 5 + j * 13
            label = "no requests" if rate is None else f"{_rate(rate)} ({side.errors:,}/{side.requests:,})"
            if rate is not None:
                bar = max(x_of(rate) - left, 0.0)
                out.append(
                    f'<rect x="{left}" y="{_f(y)}" width="{_f(bar)}" height="12" fill="{fill}">'
                    f"<title>{_e(stats.segment)} {name}: {_e(label)}</title></rect>"
                )
            end = x_of(rate or 0.0) + 4
            out.append(_text(end, y + 10, label, fill="#374151", font_size="10", **HALO))
    out.append(_line(left, top - 4, left, top + row_h * len(segments), "#6b7280"))
    out.append(_text(left + plot_w / 2, height - 10, "error rate (errors / requests)", "middle", fill="#111827"))
    items = [("primary", PRIMARY_COLOUR, "bar"), ("candidate", CANDIDATE_COLOUR, "bar")]
    if limits:
        items.append(("limit (errorRate)", LIMIT_COLOUR, "dashed"))
    out.append(_legend(width - 8, 14, items))
    out.append("</svg>")
    return "".join(out)


# --- html: hour of day -----------------------------------------------------------------------


def _hourly_svg(hours: list[SliceStats], segment: str, checks: list[Check]) -> str:
    title = f"By hour of day (UTC), segment {segment}"
    by_hour = {s.hour: s for s in hours if s.hour is not None}
    if any(s.agreement is not None for s in by_hour.values()):
        top_label, top_series = "agreement", {h: s.agreement for h, s in by_hour.items()}
        limit = next((c.threshold for c in checks if c.segment == segment and "agreement" in c.name.lower()), None)
    else:
        top_label, top_series = "mean |difference|", {h: s.abs_diff_mean for h, s in by_hour.items()}
        limit = next(
            (c.threshold for c in checks if c.segment == segment and c.name.lower() in ("absdiffmean", "absdiff")),
            None,
        )
    width, left, right = 720, 70, 16
    panel_h, gap, top = 120, 46, 30
    height = top + 2 * panel_h + gap + 44
    plot_w = width - left - right

    def x_of(hour: float) -> float:
        return left + (hour + 0.5) / 24 * plot_w

    out = [_svg_open(width, height, title)]

    def panel(
        y_top: float,
        label: str,
        series: list[tuple[str, str, bool, dict[int, float | None]]],
        lo: float,
        hi: float,
        is_rate: bool,
        limit_value: float | None,
    ) -> None:
        def y_of(value: float) -> float:
            return y_top + panel_h - (value - lo) / (hi - lo) * panel_h

        ticks = 4
        for k in range(ticks + 1):
            value = lo + (hi - lo) * k / ticks
            y = y_of(value)
            out.append(_line(left, y, left + plot_w, y, "#e5e7eb"))
            tick = _pct_tick(value, (hi - lo) / ticks) if is_rate else f"{value:.3g}"
            out.append(_text(left - 6, y + 4, tick, "end", fill="#374151"))
        out.append(_line(left, y_top, left, y_top + panel_h, "#6b7280"))
        out.append(_line(left, y_top + panel_h, left + plot_w, y_top + panel_h, "#6b7280"))
        out.append(
            f'<text x="14" y="{_f(y_top + panel_h / 2)}" text-anchor="middle" fill="#111827" '
            f'transform="rotate(-90 14 {_f(y_top + panel_h / 2)})">{_e(label)}</text>'
        )
        if limit_value is not None and lo <= limit_value <= hi:
            y = y_of(limit_value)
            out.append(_line(left, y, left + plot_w, y, LIMIT_COLOUR, stroke_width="1.5", stroke_dasharray="3 2"))
        if not any(v is not None for _n, _c, _d, values in series for v in values.values()):
            out.append(_text(left + plot_w / 2, y_top + panel_h / 2, "no data", "middle", fill="#6b7280"))
        for name, colour, dashed, values in series:
            run: list[str] = []
            runs = []
            for hour in range(24):
                value = values.get(hour)
                if value is None:
                    if run:
                        runs.append(run)
                    run = []
                    continue
                run.append(f"{_f(x_of(hour))},{_f(y_of(min(max(value, lo), hi)))}")
            if run:
                runs.append(run)
            dash = ' stroke-dasharray="5 3"' if dashed else ""
            for points in runs:
                if len(points) > 1:
                    out.append(
                        f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
                    )
            for hour in range(24):
                value = values.get(hour)
                if value is not None:
                    shown = _rate(value) if is_rate else _number(value)
                    out.append(
                        f'<circle cx="{_f(x_of(hour))}" cy="{_f(y_of(min(max(value, lo), hi)))}" r="2.5" fill="{colour}">'
                        f"<title>{hour:02d}:00 {_e(name)}: {_e(shown)}</title></circle>"
                    )

    # Top panel: agreement (classification) or mean absolute difference (regression).
    values = [v for v in top_series.values() if v is not None]
    if top_label == "agreement":
        lowest = min([*values, *([limit] if limit is not None else [])], default=0.9)
        span = _nice_ceiling(max(1.0 - lowest, 0.001) * 1.15)
        lo, hi = max(0.0, 1.0 - span), 1.0
    else:
        lo, hi = 0.0, _nice_ceiling(max([*values, *([limit] if limit is not None else [])], default=1.0) or 1.0)
    panel(top, top_label, [(top_label, "#54a24b", False, top_series)], lo, hi, top_label == "agreement", limit)

    # Bottom panel: error rates, candidate solid, primary dashed.
    candidate = {h: _error_rate(s.candidate) for h, s in by_hour.items()}
    primary = {h: _error_rate(s.primary) for h, s in by_hour.items()}
    rates = [v for v in (*candidate.values(), *primary.values()) if v is not None]
    bottom_top = top + panel_h + gap
    series = [
        ("primary error rate", PRIMARY_COLOUR, True, primary),
        ("candidate error rate", CANDIDATE_COLOUR, False, candidate),
    ]
    panel(bottom_top, "error rate", series, 0.0, _nice_ceiling(max(rates, default=0.0) or 0.01), True, None)

    for hour in range(0, 24, 3):  # shared hour axis under both panels
        for y_base in (top + panel_h, bottom_top + panel_h):
            out.append(_text(x_of(hour), y_base + 14, f"{hour:02d}", "middle", fill="#374151"))
    out.append(_text(left + plot_w / 2, height - 8, "hour of day (UTC)", "middle", fill="#111827"))
    top_items = [(top_label, "#54a24b", "line")] + ([("limit", LIMIT_COLOUR, "dashed")] if limit is not None else [])
    out.append(_legend(width - 8, top - 14, top_items))
    out.append(
        _legend(
            width - 8,
            bottom_top - 14,
            [("primary error rate", PRIMARY_COLOUR, "dashed"), ("candidate error rate", CANDIDATE_COLOUR, "line")],
        )
    )
    out.append("</svg>")
    return "".join(out)


# --- html: document --------------------------------------------------------------------------

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
    content = text if raw else _e(text)
    return f'<td class="num">{content}</td>' if num else f"<td>{content}</td>"


def _html_table(headers: Sequence[str], rows: Iterable[str], num_columns: Iterable[int] = (), cls: str = "") -> str:
    num = set(num_columns)
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in num else f"<th>{_e(h)}</th>" for i, h in enumerate(headers))
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _badge(passed: bool | None) -> str:
    cls = "none" if passed is None else ("pass" if passed else "fail")
    return f'<span class="badge {cls}">{_e(_result(passed))}</span>'


def _checks_html(report: Report) -> str:
    checks = _checks_in_order(report)
    if not checks:
        return '<p class="muted">No checks were evaluated.</p>'
    rows = []
    for check in checks:
        primary, candidate, threshold = _check_values(check)
        cls = ' class="fail"' if check.passed is False else ""
        rows.append(
            f"<tr{cls}>"
            + _td(f'<code class="nw">{_e(check.name)}</code>', raw=True)
            + _td(f'<code class="nw">{_e(check.segment)}</code>', raw=True)
            + _td(primary, num=True)
            + _td(candidate, num=True)
            + _td(threshold, num=True)
            + _td(_badge(check.passed), raw=True)
            + _td(_count(check.samples), num=True)
            + _td(check.message or "")
            + "</tr>"
        )
    return _html_table([*CHECK_HEADERS, "evidence"], rows, num_columns=(2, 3, 4, 6))


def _side_latency(side: SideStats) -> str:
    lat = side.latency_ms
    if lat is None:
        return DASH
    return f"{lat.p50:.1f} / {lat.p95:.1f} / {lat.p99:.1f} ms"


def _outcomes(side: SideStats) -> str:
    return MIDDOT.join(f"{k} {v:,}" for k, v in sorted(side.outcomes.items(), key=lambda kv: -kv[1])) or DASH


def _segment_html(index: int, stats: SliceStats, report: Report) -> str:
    checks = [c for c in report.verdict.checks if _base_segment(c.segment) == stats.segment]
    flag = ""
    if any(c.passed is False for c in checks):
        names = ", ".join(dict.fromkeys(c.name for c in checks if c.passed is False))
        flag = f'<span class="flag">{_e(names)} failed</span>'
    parts = [f'<h3 id="seg-{index}">Segment <code>{_e(stats.segment)}</code>{flag}</h3>']
    rows = [
        ("requests", _count(stats.primary.requests), _count(stats.candidate.requests)),
        (
            "errors",
            f"{stats.primary.errors:,} ({_rate(_error_rate(stats.primary))})",
            f"{stats.candidate.errors:,} ({_rate(_error_rate(stats.candidate))})",
        ),
        ("latency p50 / p95 / p99", _side_latency(stats.primary), _side_latency(stats.candidate)),
        ("outcomes", _outcomes(stats.primary), _outcomes(stats.candidate)),
    ]
    table_rows = [f"<tr><th>{_e(r[0])}</th>{_td(r[1], num=True)}{_td(r[2], num=True)}</tr>" for r in rows]
    parts.append(_html_table(["", "primary", "candidate"], table_rows, num_columns=(1, 2), cls="stats"))
    compare = [f"pairs {_count(stats.pairs)}", f"comparable {_count(stats.comparable)}"]
    if stats.agreement is not None:
        compare.append(f"agreement {_rate(stats.agreement)}")
    if stats.abs_diff_mean is not None or stats.abs_diff_p95 is not None:
        compare.append(f"|difference| mean {_number(stats.abs_diff_mean)}, p95 {_number(stats.abs_diff_p95)}")
    parts.append(f'<p class="note">{_e(MIDDOT.join(compare))}</p>')
    missing = {k: v for k, v in stats.feature_missing.items() if v}
    if missing:
        text = ", ".join(f"{k} {_rate(v)}" for k, v in sorted(missing.items()))
        parts.append(f'<p class="note">Features missing: {_e(text)}</p>')
    parts.append("<h4>Latency distribution</h4>")
    parts.append(_latency_svg(stats))
    hours = [s for s in report.slices if s.segment == stats.segment and s.hour is not None]
    if hours:
        parts.append("<h4>By hour of day</h4>")
        parts.append(_hourly_svg(hours, stats.segment, report.verdict.checks))
    errors = [
        (name, e)
        for name, side in (("candidate", stats.candidate), ("primary", stats.primary))
        for e in side.top_errors[:TOP_ERRORS_SHOWN]
    ]
    if errors:
        parts.append("<h4>Top errors</h4>")
        rows = [
            f"<tr>{_td(name)}{_td(_count(e.count), num=True)}{_td(f'<code>{_e(e.text)}</code>', raw=True)}</tr>"
            for name, e in errors
        ]
        parts.append(_html_table(["side", "count", "error"], rows, num_columns=(1,)))
    return "".join(parts)


def _coverage_html(report: Report) -> str:
    cov = report.coverage
    percent = max(0, min(cov.percent, 100))
    rows = [
        ("time", f"{_duration(cov.elapsed_seconds)} of {_duration(cov.required_seconds)}"),
        ("samples", f"{_count(cov.samples)} of {_count(cov.required_samples)}"),
        ("records", f"{_timestamp(cov.first_ts)} to {_timestamp(cov.last_ts)}"),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th>{_td(v)}</tr>" for k, v in rows)
    return (
        f'<p><strong>{cov.percent}%</strong> <span class="muted">(the lower of time and sample coverage)</span></p>'
        f'<div class="bar" role="img" aria-label="coverage {cov.percent}%"><span style="width:{percent}%"></span></div>'
        f'<table class="stats"><tbody>{body}</tbody></table>'
    )


def _problems_html(report: Report) -> str:
    if not report.problems:
        return '<p class="muted">None: every record was usable.</p>'
    rows = [
        f"<tr>{_td(f'<code>{_e(p.code)}</code>', raw=True)}{_td(_count(p.count), num=True)}{_td(p.message)}</tr>"
        for p in report.problems
    ]
    return _html_table(["code", "count", "message"], rows, num_columns=(1,))


def _render_html(report: Report) -> str:
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
    meta_html = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in meta)
    message = f'<p class="message">{_e(verdict.message)}</p>' if verdict.message else ""
    segments = _segments_in_order(report)
    nav = "".join(
        f'<a href="#{anchor}">{_e(label)}</a>'
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
            f"<tr>{_td(f'<code>{_e(q)}</code>', raw=True)}{_td(_number(v), num=True)}</tr>"
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
        f"<title>Shadow report {_e(report.shadow)}: {_e(verdict.result)}</title>"
        f"<style>{_CSS}</style></head><body><main>"
        f'<header class="banner {cls}"><p class="result">{_e(verdict.result)}'
        f'<span class="reason">{_e(verdict.reason)}</span></p>{message}<dl class="meta">{meta_html}</dl></header>'
        f"<nav>{nav}</nav>"
        f'<section id="checks"><h2>Checks</h2>{_checks_html(report)}</section>'
        f'<section id="errors"><h2>Error rate by segment</h2>{_error_rate_svg(segments, report.verdict.checks)}</section>'
        f'<section id="segments"><h2>Segments</h2>{segment_html}</section>'
        f'<section id="coverage"><h2>Coverage</h2>{_coverage_html(report)}</section>'
        f'<section id="problems"><h2>Data problems</h2>{_problems_html(report)}</section>'
        f"{queries}"
        f"<footer>shadow-operator report v{report.version} \u00b7 generated {_e(report.generated_at)}</footer>"
        "</main></body></html>\n"
    )
