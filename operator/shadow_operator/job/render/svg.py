"""Inline SVG: the plot primitives, and the latency, error-rate and hour-of-day charts.

Every chart is a self-contained `<svg>` string with a title and labelled axes; text is escaped
with `esc`, which the HTML page uses too.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from ...api.v1alpha1 import Check
from ...contract.report import HistogramBucket, SliceStats
from .fields import error_rate, fmt_ms, fmt_number, fmt_rate

INF_MS = 1e300  # histogram bounds at or above this are the +Inf bucket (written as 1e308)

PRIMARY_COLOUR = "#4c78a8"
CANDIDATE_COLOUR = "#e45756"
LIMIT_COLOUR = "#6b7280"
HALO = {"paint_order": "stroke", "stroke": "#fff", "stroke_width": "3", "stroke_linejoin": "round"}


# --- primitives ------------------------------------------------------------------------------


def esc(text: object) -> str:
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
        f'role="img" aria-label="{esc(title)}" font-family="system-ui, sans-serif" font-size="11">'
        f"<title>{esc(title)}</title>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{extra}>{esc(text)}</text>'


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


# --- latency distribution --------------------------------------------------------------------


def _shares(buckets: list[HistogramBucket], bounds: list[float]) -> list[float]:
    counts = dict.fromkeys(bounds, 0)
    for bucket in buckets:
        counts[bucket.le_ms] += bucket.count
    total = sum(counts.values())
    return [counts[b] / total if total else 0.0 for b in bounds]


def latency_svg(stats: SliceStats) -> str:
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
                f'fill="{colour}" fill-opacity="0.85"><title>{esc(name)}, {esc(_bucket_label(bounds, i))}: '
                f"{esc(fmt_rate(share))}</title></rect>"
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
                f'stroke-width="1.5"{dash}><title>{esc(name)} {quantile}: {esc(fmt_ms(value))}</title></line>'
            )
            label_x = max(x, last_label_x + 92)
            last_label_x = label_x
            out.append(_text(label_x, label_y, f"{quantile} {fmt_ms(value)}", "middle", fill=colour))
    out.append("</svg>")
    return "".join(out)


def _bucket_label(bounds: list[float], i: int) -> str:
    low = 0.0 if i == 0 else bounds[i - 1]
    if bounds[i] >= INF_MS:
        return f"> {_ms_tick(low)} ms"
    return f"{_ms_tick(low)}\u2013{_ms_tick(bounds[i])} ms"


# --- error rate by segment ---------------------------------------------------------------------


def error_rate_svg(segments: list[SliceStats], checks: list[Check]) -> str:
    title = "Error rate by segment, primary and candidate"
    if not segments:
        return _placeholder_svg(title, "No segments in this report.")
    failing = {c.segment for c in checks if c.passed is False}
    limits = {c.segment: c.threshold for c in checks if c.name.lower() == "errorrate" and c.threshold is not None}
    label_w = min(260, max(60, int(max(len(s.segment) for s in segments) * 6.8) + 12))
    width, row_h, top, bottom = 720, 36, 34, 44
    left, right = label_w, 130
    plot_w = width - left - right
    height = top + row_h * len(segments) + bottom
    rates = [r for s in segments for r in (error_rate(s.primary), error_rate(s.candidate)) if r is not None]
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
            rate = error_rate(side)
            y = y0 + 5 + j * 13
            label = "no requests" if rate is None else f"{fmt_rate(rate)} ({side.errors:,}/{side.requests:,})"
            if rate is not None:
                bar = max(x_of(rate) - left, 0.0)
                out.append(
                    f'<rect x="{left}" y="{_f(y)}" width="{_f(bar)}" height="12" fill="{fill}">'
                    f"<title>{esc(stats.segment)} {name}: {esc(label)}</title></rect>"
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


# --- hour of day -----------------------------------------------------------------------------


def hourly_svg(hours: list[SliceStats], segment: str, checks: list[Check]) -> str:
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
            f'transform="rotate(-90 14 {_f(y_top + panel_h / 2)})">{esc(label)}</text>'
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
                    shown = fmt_rate(value) if is_rate else fmt_number(value)
                    out.append(
                        f'<circle cx="{_f(x_of(hour))}" cy="{_f(y_of(min(max(value, lo), hi)))}" r="2.5" fill="{colour}">'
                        f"<title>{hour:02d}:00 {esc(name)}: {esc(shown)}</title></circle>"
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
    candidate = {h: error_rate(s.candidate) for h, s in by_hour.items()}
    primary = {h: error_rate(s.primary) for h, s in by_hour.items()}
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
