"""Hostile record lines through the real comparison job: counted as data problems, never an exception.

Deep nesting (beyond Python's recursion limit), timestamps that are not times (NaN, infinite,
negative, huge, strings), and `received`, `segments`, `features` of the wrong type or absurd
size: `job.job.analyze` returns a Report, and every line is either a pair or counted.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadow_operator.contract.report import CLOCK_SKEW, CORRUPT_RECORD, Report
from shadow_operator.job import record_sql
from shadow_operator.job.job import analyze, coverage_for

from .factories import make_sd
from .records_factory import NOW, SHADOW, at, counts_by_code, pair, write

NOW_DT = datetime.fromtimestamp(NOW, UTC)
DEPTH = 100_000
WEEK_CYCLE = {"analysis": {"prometheus": None, "minDuration": "168h", "minSamples": 1}}
SHORT_CYCLE = {"analysis": {"prometheus": None, "minSamples": 1}}
GOOD = 5


def deep_array(depth: int = DEPTH) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int = DEPTH) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def line(record_id: str, **fields: str) -> str:
    """A pair record as JSON text, each of `fields` replacing its value with raw JSON text (valid or not)."""
    values = {
        "v": "1",
        "shadow": json.dumps(SHADOW),
        "id": json.dumps(record_id),
        "ts": repr(at(12)),
        "segments": '{"history":"<1"}',
        "features": '{"$.f":true}',
        "primary": '{"outcome":"ok","status":200,"latency_ms":10.0,"prediction":1,"error":null}',
        "candidate": '{"outcome":"ok","status":200,"latency_ms":11.0,"prediction":1,"error":null}',
    }
    values.update(fields)
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in values.items()) + "}\n"


def good_lines() -> list[dict]:
    return [pair(f"good-{i}", ts=at(10, i)) for i in range(GOOD)]


def run(tmp_path: Path, lines: list, spec: dict = WEEK_CYCLE) -> Report:
    path = write(tmp_path / "records.jsonl", [*good_lines(), *lines])
    spec = {**spec, "recording": {"segments": [{"name": "history", "path": "$.history"}], "features": ["$.f"]}}
    report = analyze(make_sd(spec), [path], now=NOW_DT)
    assert isinstance(report, Report)
    return report


def excluded(report: Report) -> dict[str, int]:
    return counts_by_code(report.problems)


# --- the findings, one by one -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "-1e308",
        "-1",
        "-0.5",
        '"NaN"',
        '"-1e308"',
        '"yesterday"',
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-1e999",
        "null",
        "[]",
        "{}",
        deep_array(),
        deep_object(),
    ],
)
def test_timestamps_that_are_not_times_are_corrupt_records(tmp_path: Path, value: str):
    report = run(tmp_path, [line("hostile", ts=value)])
    assert excluded(report) == {CORRUPT_RECORD: 1}
    assert report.coverage.samples == GOOD
    assert report.coverage.first_ts == at(10) and report.coverage.last_ts == at(10, GOOD - 1)
    assert "corrupt records" in next(p.message for p in report.problems if p.code == CORRUPT_RECORD)


@pytest.mark.parametrize("value", ["1e308", "1.7976931348623157e308", repr(NOW + 301)])
def test_timestamps_far_in_the_future_are_clock_skew(tmp_path: Path, value: str):
    report = run(tmp_path, [line("future", ts=value)])
    assert excluded(report) == {CLOCK_SKEW: 1}
    assert report.coverage.samples == GOOD


def test_a_negative_timestamp_no_longer_raises_in_coverage(tmp_path: Path):
    """Before: ValueError('cannot convert float NaN to integer') from coverage, every run (records kept)."""
    for spec in (WEEK_CYCLE, SHORT_CYCLE):
        report = run(tmp_path, [line("ancient", ts="-1e308"), line("also", ts="-1.7976931348623157e308")], spec)
        assert excluded(report) == {CORRUPT_RECORD: 2}
        assert report.coverage.first_ts == at(10)
        assert math.isfinite(report.coverage.elapsed_seconds)


@pytest.mark.parametrize("value", ["-1e308", "-1", "NaN", "Infinity", '"NaN"', "1e999"])
def test_a_received_time_that_is_not_a_time_is_a_corrupt_record(tmp_path: Path, value: str):
    report = run(tmp_path, [line("hostile", received=value)])
    assert excluded(report) == {CORRUPT_RECORD: 1}
    assert report.coverage.samples == GOOD


def test_an_unclosed_deep_line_is_a_corrupt_record_named_by_its_line(tmp_path: Path):
    """Before: RecursionError from json.loads while naming the example line."""
    report = run(tmp_path, ['{"v":1,"primary":' + "[" * DEPTH + "\n"])
    assert excluded(report) == {CORRUPT_RECORD: 1}
    message = next(p.message for p in report.problems if p.code == CORRUPT_RECORD)
    assert f"records.jsonl:{GOOD + 1}:" in message


def test_deep_values_duckdb_reads_are_kept_and_the_example_is_the_really_corrupt_line(tmp_path: Path):
    deep = [
        line("deep-prediction", primary=f'{{"outcome":"ok","prediction":{deep_array()}}}'),
        line("deep-segment", segments=f'{{"history":{deep_object()}}}'),
        line("deep-extra", extra=deep_array()),
    ]
    report = run(tmp_path, [*deep, line("broken", v="2")])
    assert excluded(report) == {CORRUPT_RECORD: 1}
    assert report.coverage.samples == GOOD + len(deep)
    message = next(p.message for p in report.problems if p.code == CORRUPT_RECORD)
    assert f"records.jsonl:{GOOD + len(deep) + 1}:" in message  # not one of the deep lines before it


@pytest.mark.parametrize(
    "field, value",
    [
        ("segments", "[1,2]"),
        ("segments", '"history"'),
        ("segments", '{"history":{"nested":[1,2]}}'),
        ("segments", '{"history":null,"":""}'),
        ("features", '{"$.f":"notabool"}'),
        ("features", "[true]"),
        ("features", "1e308"),
        ("received", '"tomorrow"'),
        ("received", "[]"),
    ],
)
def test_optional_fields_of_the_wrong_type_are_read_as_absent(tmp_path: Path, field: str, value: str):
    report = run(tmp_path, [line("odd", **{field: value})])
    assert excluded(report) == {}
    assert report.coverage.samples == GOOD + 1


def test_huge_maps_are_read_and_do_not_grow_the_report(tmp_path: Path):
    segments = json.dumps({f"k{i}": str(i) for i in range(100_000)} | {"history": "<1"})
    features = json.dumps({f"$.k{i}": True for i in range(100_000)})
    report = run(tmp_path, [line("huge", segments=segments, features=features)])
    assert excluded(report) == {}
    assert report.coverage.samples == GOOD + 1
    assert len(report.model_dump_json()) < 200_000  # only the spec's segments and features are sliced


@pytest.mark.parametrize("first_ts", [-1e308, -math.inf, math.inf, math.nan, 1e308, -1.7976931348623157e308])
def test_coverage_never_raises_on_any_first_timestamp(first_ts: float):
    for spec in (WEEK_CYCLE, SHORT_CYCLE):
        coverage = coverage_for(make_sd(spec), first_ts, first_ts, 10, NOW_DT, {0, 5, -1, 10**9})
        assert 0 <= coverage.percent <= 100
        assert math.isfinite(coverage.elapsed_seconds)


# --- generated lines --------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
json_number = st.one_of(
    finite.map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e308", "1e308", "-0.0", "1" + "0" * 400]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
leaf = st.one_of(json_number, st.text(max_size=20).map(json.dumps), st.sampled_from(["null", "true", "false"]))
deep = st.sampled_from([1_000, 10_000, DEPTH]).flatmap(
    lambda depth: st.sampled_from([deep_array(depth), deep_object(depth), "[" * depth, '{"a":' * depth])
)
big_map = st.integers(min_value=1, max_value=50_000).flatmap(
    lambda n: st.sampled_from(
        [
            json.dumps({f"k{i}": str(i) for i in range(n)}),
            json.dumps({f"$.k{i}": i % 2 == 0 for i in range(n)}),
            json.dumps({f"k{i}": [i] for i in range(n)}),
        ]
    )
)
hostile_value = st.one_of(
    leaf,
    deep,
    big_map,
    st.lists(leaf, max_size=5).map(lambda items: "[" + ",".join(items) + "]"),
    st.dictionaries(st.text(max_size=8), leaf, max_size=5).map(
        lambda items: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in items.items()) + "}"
    ),
)
hostile_line = st.fixed_dictionaries(
    {},
    optional={
        name: hostile_value for name in ("ts", "received", "segments", "features", "primary", "candidate", "v", "id")
    },
)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=st.lists(hostile_line, min_size=1, max_size=4),
    raw=st.lists(st.one_of(deep, leaf, st.binary(max_size=40)), max_size=2),
)
def test_generated_hostile_lines_give_a_report_with_every_line_accounted_for(tmp_path_factory, fields, raw):
    tmp_path = tmp_path_factory.mktemp("hostile")
    lines = [line(f"h-{i}", **values) for i, values in enumerate(fields)]
    lines += [item if isinstance(item, bytes) else item + "\n" for item in raw]
    lines = [item.replace(b"\n", b" ") + b"\n" if isinstance(item, bytes) else item for item in lines]
    nonblank = sum(1 for item in lines if item.strip())
    for spec in (WEEK_CYCLE, SHORT_CYCLE):
        report = run(tmp_path, lines, spec)
        counts = excluded(report)
        assert set(counts) <= {CORRUPT_RECORD, CLOCK_SKEW}, report.problems
        # Every line is a pair or counted (ids are unique, so no duplicates to drop).
        assert report.coverage.samples + sum(counts.values()) == GOOD + nonblank, (counts, report.coverage)
        assert report.coverage.samples >= GOOD
        assert 0 <= report.coverage.percent <= 100
        first = report.coverage.first_ts
        assert first is not None and record_sql.MIN_TIMESTAMP <= first <= NOW + record_sql.FUTURE_TOLERANCE_SECONDS
        report.model_dump_json()  # the report serialises (no NaN or infinity in it)
