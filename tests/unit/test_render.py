"""The report as people read it: terminal table, JSON, Markdown, and one self-contained HTML file."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest

from shadow_operator.api.v1alpha1 import Check, CheckSource, Verdict
from shadow_operator.contract.report import Report, ReportCoverage, SideStats, SliceStats, slice_label
from shadow_operator.job.render import FORMATS, render

from .report_factory import FAILING_SEGMENT, KEY_ERROR, VERDICT_REASON, hour_checks, make_report

VOID_ELEMENTS = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}
SVG_LEAVES = {"line", "rect", "circle", "polyline", "path"}  # written as <x .../>


class _TagBalance(HTMLParser):
    """Fails on a closing tag that does not match the open one: what unescaped text would break."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _parse(document: str) -> _TagBalance:
    parser = _TagBalance()
    parser.feed(document)
    parser.close()
    return parser


def _check_rows(table: str) -> list[str]:
    lines = table.splitlines()
    start = lines.index("CHECKS") + 3  # heading, column names, dashes
    rows = []
    for line in lines[start:]:
        if not line or line.startswith("  "):
            break
        rows.append(line)
    return rows


def _markdown_check_rows(markdown: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index("#### Checks") + 4  # heading, blank, column names, alignment
    return lines[start : lines.index("", start)]


def _html_check_rows(document: str) -> list[str]:
    """The text of each row of the checks table, tags stripped."""
    section = re.search(r'<section id="checks">(.*?)</section>', document).group(1)
    rows = re.findall(r"<tbody>.*</tbody>", section)[0]
    return [
        " | ".join(
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<td[^>]*>.*?</td>", row)
        )
        for row in re.findall(r"<tr[^>]*>.*?</tr>", rows)
    ]


def _summaries(text: str) -> list[str]:
    """The hour-of-day summary lines of a table or Markdown report, or rows of an HTML one, as plain text."""
    lines = re.findall(r'<tr class="hours">(.*?)</tr>', text) if text.startswith("<!DOCTYPE") else text.splitlines()
    plain = [html.unescape(re.sub(r"<[^>]+>", "", line)).replace("`", "").replace("*", "") for line in lines]
    return [" ".join(line.split()) for line in plain if " hour window" in line]


@pytest.fixture(scope="module")
def report() -> Report:
    return make_report()


def test_table_leads_with_the_verdict_and_lists_failing_checks_first(report: Report) -> None:
    table = render(report, "table")
    first = table.splitlines()[0]
    assert "Failed" in first
    assert VERDICT_REASON in first
    assert report.verdict.message in first
    assert FAILING_SEGMENT in table
    assert KEY_ERROR in table

    rows = _check_rows(table)
    assert len(rows) == len(report.verdict.checks)
    assert rows[0].split()[:2] == ["errorRate", FAILING_SEGMENT]
    assert " FAIL " in rows[0]
    results = [("FAIL" if " FAIL " in r else "PASS" if " PASS " in r else "none") for r in rows]
    assert results == sorted(results, key=["FAIL", "none", "PASS"].index)
    # coverage and data problems follow the checks
    assert table.index("CHECKS") < table.index("COVERAGE") < table.index("DATA PROBLEMS")
    assert "CorruptRecord" in table


def test_numbers_read_the_same_everywhere(report: Report) -> None:
    for fmt in ("table", "markdown", "html"):
        text = render(report, fmt)
        assert "4.13%" in text, fmt  # a rate: percent, two decimals
        assert "231.5 ms" in text, fmt  # a latency: ms, one decimal
        assert "\u2014" in text, fmt  # a missing value


def test_json_round_trips_to_an_equal_report(report: Report) -> None:
    text = render(report, "json")
    assert text == report.model_dump_json(indent=2)
    assert Report.model_validate_json(text) == report


def test_markdown_has_a_checks_table(report: Report) -> None:
    lines = render(report, "markdown").splitlines()
    header = "| Check | Segment | Primary | Candidate | Threshold | Result | Samples |"
    assert header in lines
    assert re.fullmatch(r"\|(:?-+:?\|){7}", lines[lines.index(header) + 1])
    first_row = lines[lines.index(header) + 2]
    assert f"`{FAILING_SEGMENT}`" in first_row
    assert "**FAIL**" in first_row
    assert "## " in lines[0]
    assert VERDICT_REASON in lines[0]


def test_markdown_keeps_pipes_inside_their_cell() -> None:
    markdown = render(make_report(extra_segments=["a|b"]), "markdown")
    row = next(line for line in markdown.splitlines() if "a\\|b" in line and "errorRate" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # 7 cells


def test_html_is_one_document_with_plots_per_segment(report: Report) -> None:
    document = render(report, "html")
    assert document.startswith("<!DOCTYPE html>")
    assert document.count("<html") == 1
    assert document.rstrip().endswith("</html>")
    parsed = _parse(document)
    assert parsed.errors == []
    assert parsed.stack == []

    segments = [s.segment for s in report.slices if s.hour is None]
    assert len(segments) == 4
    for segment in segments:
        assert (
            f'aria-label="Latency distribution, segment {segment.replace("<", "&lt;").replace(">", "&gt;")}"'
            in document
        )
    assert 'aria-label="Error rate by segment, primary and candidate"' in document
    assert 'aria-label="By hour of day (UTC), segment all"' in document
    assert document.count("<svg") >= len(segments) + 1
    assert parsed.tags.count("svg") == document.count("<svg")
    # each chart names its axes
    assert "share of requests" in document
    assert "latency, ms" in document
    assert "error rate (errors / requests)" in document
    assert "hour of day (UTC)" in document
    # p50/p95/p99 are marked on the latency plots
    for quantile in ("p50", "p95", "p99"):
        assert f"{quantile} 231.5 ms" in document or f">{quantile} " in document
    # the verdict banner is coloured by result
    assert '<header class="banner failed">' in document
    assert KEY_ERROR.replace("'", "&#x27;") in document


def test_html_is_self_contained(report: Report) -> None:
    document = render(report, "html")
    assert "http://" not in document  # not even in text (the data problem names Prometheus' URL)
    assert "https://" not in document
    assert "<script" not in document.lower()
    assert "<link" not in document.lower()
    assert "@import" not in document
    assert "url(" not in document
    assert " src=" not in document
    assert "prometheus.monitoring:9090" in document  # the text is still there, shown as written


def test_html_escapes_every_value() -> None:
    hostile = "a<b"
    script = '"><script>alert(1)</script>'
    document = render(make_report(extra_segments=[hostile, script]), "html")
    assert "a&lt;b" in document
    assert "a<b" not in document
    assert "<script" not in document
    assert "&lt;script&gt;" in document
    parsed = _parse(document)
    assert parsed.errors == []
    assert "script" not in parsed.tags
    assert "b" not in parsed.tags


@pytest.mark.parametrize("result", ["Passed", "Failed", "Inconclusive"])
def test_banner_class_follows_the_result(result: str) -> None:
    document = render(make_report(result=result), "html")
    assert f'<header class="banner {result.lower()}">' in document


def test_an_empty_report_renders_in_every_format() -> None:
    empty = Report(
        shadow="default/recommender",
        generated_at="2024-05-01T00:10:00Z",
        coverage=ReportCoverage(required_seconds=604800, required_samples=1000),
        verdict=Verdict(result="Inconclusive", reason="InsufficientData", evaluated_at="2024-05-01T00:10:00Z"),
    )
    for fmt in FORMATS:
        assert render(empty, fmt)
    table = render(empty, "table")
    assert table.splitlines()[0] == "VERDICT  Inconclusive (InsufficientData)"
    assert "0s of 168h" in table
    document = render(empty, "html")
    assert _parse(document).errors == []
    assert "No checks were evaluated." in document
    assert "<svg" in document  # the error-rate chart says there is nothing to show


def test_regression_reports_plot_the_mean_difference_by_hour() -> None:
    base = make_report()
    hours = [
        SliceStats(
            segment="all",
            hour=h,
            pairs=100,
            primary=SideStats(requests=100, errors=0, error_rate=0.0),
            candidate=SideStats(requests=100, errors=1, error_rate=0.01),
            abs_diff_mean=0.1 + h / 100,
        )
        for h in range(24)
    ]
    slices = [s.model_copy(update={"agreement": None}) for s in base.slices if s.hour is None]
    document = render(base.model_copy(update={"slices": slices + hours}), "html")
    assert "mean |difference|" in document
    assert _parse(document).errors == []


def test_unknown_format_names_the_allowed_ones(report: Report) -> None:
    with pytest.raises(ValueError, match="table, summary, json, markdown, html"):
        render(report, "pdf")


@pytest.mark.parametrize(
    ("check", "cells"),
    [
        (
            Check(name="errorRateIncrease", segment="all", primary=0.001, candidate=0.0031, threshold=0.0005),
            ["0.10%", "0.31%", "\u2264 0.05%"],
        ),
        (
            Check(name="latencyP95Ratio", segment="all", primary=112.74, candidate=161.26, threshold=1.3),
            ["112.7 ms", "161.3 ms", "\u2264 \u00d71.30"],
        ),
        (
            Check(name="agreement", segment="all", candidate=0.97123, threshold=0.95),
            ["\u2014", "97.12%", "\u2265 95.00%"],
        ),
        (
            Check(name="absDiffMean", segment="all", candidate=0.0421, threshold=0.05),
            ["\u2014", "0.0421", "\u2264 0.05"],
        ),
        (
            Check(name="featureMissing:$.features.latency_ratio", segment="all", candidate=0.065, threshold=0.01),
            ["\u2014", "6.50%", "\u2264 1.00%"],
        ),
    ],
    ids=lambda value: value.name if isinstance(value, Check) else "",
)
def test_check_values_read_by_kind(report: Report, check: Check, cells: list[str]) -> None:
    verdict = report.verdict.model_copy(update={"checks": [check]})
    row = _check_rows(render(report.model_copy(update={"verdict": verdict}), "table"))[0]
    assert row.split("  ")[0] == check.name
    assert [cell.strip() for cell in row.split("  ") if cell.strip()][2:5] == cells


def test_a_failing_hour_of_day_check_flags_its_segment(report: Report) -> None:
    hourly = Check(name="errorRate", segment="history=1-100", hour=14, candidate=0.03, threshold=0.01, passed=False)
    verdict = report.verdict.model_copy(update={"checks": [*report.verdict.checks, hourly]})
    document = render(report.model_copy(update={"verdict": verdict}), "html")
    headings = re.findall(r'<h3 id="seg-\d+">Segment <code>([^<]*)</code>(<span class="flag">[^<]*</span>)?', document)
    assert [h[0] for h in headings[:3]] == ["all", "history=&lt;1", "history=1-100"]
    assert headings[2][1] == '<span class="flag">errorRate failed</span>'


# --- hour-of-day windows: a week has 24 per check and segment -----------------------------------------------


def _rows(text: str, fmt: str) -> list[str]:
    return {"table": _check_rows, "markdown": _markdown_check_rows, "html": _html_check_rows}[fmt](text)


def _segment_cell(row: str, fmt: str) -> str:
    """The segment column: `all @14h`, `history=<1 (prometheus)`."""
    if fmt == "markdown":
        return row.split("|")[2].strip().strip("`")
    return row.split(" | ")[1] if fmt == "html" else re.split(r" {2,}", row)[1]


HUMAN_FORMATS = ("table", "markdown", "html")


@pytest.mark.parametrize("fmt", HUMAN_FORMATS)
def test_passing_hour_windows_are_one_summary_line(fmt: str) -> None:
    plain = render(make_report(), fmt)
    hourly = render(make_report(extra_checks=hour_checks("errorRate", "all")), fmt)

    assert _summaries(hourly) == ["errorRate on all, 24 hour windows: 24 passed"]
    assert _summaries(plain) == []
    assert not any("@" in _segment_cell(row, fmt) for row in _rows(hourly, fmt) if " hour window" not in row)
    assert "all @" not in hourly
    # no row per hour: the same rows as without them, but for the summary
    assert [row for row in _rows(hourly, fmt) if " hour window" not in row] == _rows(plain, fmt)
    if fmt == "html":
        assert hourly.count('<tr class="hours">') == 1
        assert _parse(hourly).errors == []


@pytest.mark.parametrize("fmt", HUMAN_FORMATS)
def test_a_failing_hour_window_is_listed_and_named_in_the_summary(fmt: str) -> None:
    extra = [
        *hour_checks("errorRate", "all"),
        *hour_checks("agreement", "all", failing=(2, 3, 4), inconclusive=(7,)),
    ]
    text = render(make_report(extra_checks=extra), fmt)

    assert _summaries(text) == [
        "agreement on all, 24 hour windows: 20 passed, 3 FAILED (2h, 3h, 4h), 1 inconclusive",
        "errorRate on all, 24 hour windows: 24 passed",
    ]
    hourly = [(_segment_cell(row, fmt), row) for row in _rows(text, fmt) if "@" in row and " hour window" not in row]
    assert [segment for segment, _row in hourly] == ["all @2h", "all @3h", "all @4h", "all @7h"]
    assert all("agreement" in row for _segment, row in hourly)
    assert all("FAIL" in row for _segment, row in hourly[:3])
    assert "FAIL" not in hourly[3][1]
    # failing rows first: whole-period, then the hours; inconclusive ones after all failing ones
    segments = [_segment_cell(row, fmt) for row in _rows(text, fmt) if " hour window" not in row]
    assert segments[:4] == [FAILING_SEGMENT, "all @2h", "all @3h", "all @4h"]
    assert segments.index("all @7h") > segments.index("history=>=100")


@pytest.mark.parametrize("fmt", HUMAN_FORMATS)
def test_at_most_six_hour_rows_per_check_and_segment(fmt: str) -> None:
    extra = [
        *hour_checks("errorRate", "all", failing=range(10)),
        *hour_checks("errorRate", FAILING_SEGMENT, failing=(20, 21), inconclusive=range(8)),
    ]
    text = render(make_report(extra_checks=extra), fmt)

    assert _summaries(text) == [
        "errorRate on all, 24 hour windows: 14 passed, 10 FAILED (0h, 1h, 2h, 3h, 4h, 5h and 4 more not listed)",
        f"errorRate on {FAILING_SEGMENT}, 24 hour windows: 14 passed, 2 FAILED (20h, 21h), 8 inconclusive (4 not listed)",
    ]
    listed = [_segment_cell(row, fmt) for row in _rows(text, fmt) if "@" in row and " hour window" not in row]
    assert listed == [
        *(f"all @{h}h" for h in range(6)),
        f"{FAILING_SEGMENT} @20h",
        f"{FAILING_SEGMENT} @21h",
        *(f"{FAILING_SEGMENT} @{h}h" for h in range(4)),
    ]


def test_whole_period_checks_are_listed_as_before(report: Report) -> None:
    extra = [*hour_checks("errorRate", "all", failing=(5,)), *hour_checks("agreement", "history=1-100")]
    with_hours = make_report(extra_checks=extra)
    for fmt in HUMAN_FORMATS:
        whole = [row for row in _rows(render(with_hours, fmt), fmt) if "@" not in row and " hour window" not in row]
        assert whole == _rows(render(report, fmt), fmt), fmt
    table = render(with_hours, "table")
    assert len(_check_rows(table)) == len(report.verdict.checks) + 1
    assert "  FAIL errorRate [all @5h]: candidate error rate 3.0% at 05:00" in table.splitlines()


def test_summary_keeps_the_deciding_checks_and_drops_the_detail() -> None:
    extra = hour_checks("agreement", "all", failing=(19, 20), inconclusive=(3,))
    failed = make_report(extra_checks=extra)
    summary, table = render(failed, "summary"), render(failed, "table")

    rows = _check_rows(summary)
    assert rows, summary
    assert all(" PASS " not in row for row in rows)  # a failed verdict lists what decided it
    assert any(row.split()[:2] == ["errorRate", FAILING_SEGMENT] and " FAIL " in row for row in rows)
    assert not any("@" in re.split(r" {2,}", row)[1] for row in rows)  # hour windows only as their count line
    assert _summaries(summary) == ["agreement on all, 24 hour windows: 21 passed, 2 FAILED (19h, 20h), 1 inconclusive"]
    assert KEY_ERROR in summary
    assert "QUERIES" not in summary and "CorruptRecord (" in summary
    assert len(summary.splitlines()) < len(table.splitlines())


def test_summary_of_a_passed_verdict_shows_every_whole_period_check() -> None:
    passed = make_report(result="Passed", reason="Passed")
    passed.verdict.checks[:] = [c.model_copy(update={"passed": True}) for c in passed.verdict.checks]
    rows = _check_rows(render(passed, "summary"))
    assert len(rows) == len(passed.verdict.checks)
    assert all(" PASS " in row for row in rows)


# --- where a check was measured: one label from its fields ------------------------------------------------


@pytest.mark.parametrize("fmt", HUMAN_FORMATS)
def test_hour_and_source_are_shown_in_one_label(fmt: str) -> None:
    def failing(hour: int | None) -> Check:
        return Check(
            name="errorRate",
            segment=FAILING_SEGMENT,
            hour=hour,
            source=CheckSource.PROMETHEUS,
            candidate=0.5,
            threshold=0.01,
            passed=False,
            samples=900,
            message="seen by Prometheus",
        )

    text = render(make_report(extra_checks=[failing(None), failing(14)]), fmt)
    segments = [_segment_cell(row, fmt) for row in _rows(text, fmt) if " hour window" not in row]
    assert f"{FAILING_SEGMENT} (prometheus)" in segments
    assert f"{FAILING_SEGMENT} @14h (prometheus)" in segments
    # the records' hour windows and Prometheus's are counted apart
    assert _summaries(text) == [f"errorRate on {FAILING_SEGMENT} (prometheus), 1 hour window: 1 FAILED (14h)"]


def test_slice_label_is_made_from_the_fields() -> None:
    assert slice_label("all") == "all"
    assert slice_label("history=<1", 0) == "history=<1 @0h"
    assert slice_label("all", None, CheckSource.PROMETHEUS) == "all (prometheus)"
    assert slice_label("x=b", 23, CheckSource.PROMETHEUS) == "x=b @23h (prometheus)"
