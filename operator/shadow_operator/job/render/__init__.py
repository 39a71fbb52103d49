"""A comparison report for people: a terminal table, Markdown for a PR comment, one HTML file, or JSON.

`render(report, fmt)` is the only entry point. The HTML is a single self-contained document:
inline CSS and inline SVG drawn here (no JavaScript, no fonts, stylesheets or images fetched),
so it can be attached to a ticket or opened from a ConfigMap dump years later.

Numbers read the same in every format: rates as percentages with two decimals, latencies in
milliseconds with one decimal, a missing value as an em dash.

Layers, each calling only downward: `html` (the page) draws its charts with `svg`; `text` (the
table and the summary) and `markdown` are the plain-text formats; all of them format numbers and
labels, and order checks and segments, with `fields`.
"""

from __future__ import annotations

from collections.abc import Callable

from ...contract.report import Report
from .html import render_html
from .markdown import render_markdown
from .text import render_summary, render_table

FORMATS = ("table", "summary", "json", "markdown", "html")


def _render_json(report: Report) -> str:
    return report.model_dump_json(indent=2)


def render(report: Report, fmt: str) -> str:
    """The report in one of FORMATS: "table", "summary", "json", "markdown" or "html"."""
    renderers: dict[str, Callable[[Report], str]] = {
        "table": render_table,
        "summary": render_summary,
        "json": _render_json,
        "markdown": render_markdown,
        "html": render_html,
    }
    renderer = renderers.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    return renderer(report)


__all__ = ["FORMATS", "render"]
