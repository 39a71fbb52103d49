"""Slice statistics: exact numbers from record files with known contents."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadow_operator.contract.metric_names import LATENCY_BUCKETS
from shadow_operator.contract.report import ErrorText, HistogramBucket
from shadow_operator.job.dataset import load
from shadow_operator.job.intervals import LATENCY_LEVELS, UNBOUNDED_MS
from shadow_operator.job.stats import compute_slices

from .records_factory import NOW, SHADOW, at, one, pair, side, write

NO_OUTCOMES = {"ok": 0, "http_4xx": 0, "http_5xx": 0, "timeout": 0, "connection_error": 0}


def latency(side_stats) -> tuple[float, float, float]:
    return (side_stats.latency_ms.p50, side_stats.latency_ms.p95, side_stats.latency_ms.p99)


def slices_of(
    tmp_path: Path,
    records: list,
    segments: list[str] | None = None,
    features: list[str] | None = None,
    regression: bool = False,
):
    write(tmp_path / "records.jsonl", records)
    dataset = load([tmp_path / "records.jsonl"], SHADOW, now=NOW, regression=regression)
    slices = compute_slices(dataset, segments or [], features or [], regression=regression)
    return {(s.segment, s.hour): s for s in slices}, slices


def test_the_all_slice_counts_rates_quantiles_and_agreement(tmp_path: Path):
    records = [
        pair("a", primary=side(latency_ms=10, prediction=1), candidate=side(latency_ms=1, prediction=1)),
        pair("b", primary=side(latency_ms=20, prediction=2), candidate=side(latency_ms=2, prediction=2)),
        pair("c", primary=side(latency_ms=30, prediction=3), candidate=side(latency_ms=3, prediction=0)),
        pair(
            "d",
            primary=side(latency_ms=40, prediction=4),
            candidate=side("http_5xx", latency_ms=4, error="KeyError: 'purchase_history'"),
        ),
        pair("e", primary=side(latency_ms=50, prediction=5), candidate=side("timeout", latency_ms=2000)),
    ]

    by_key, _ = slices_of(tmp_path, records)

    s = by_key[("all", None)]
    assert s.pairs == 5
    assert (s.primary.requests, s.primary.errors, s.primary.error_rate) == (5, 0, 0.0)
    assert (s.candidate.requests, s.candidate.errors, s.candidate.error_rate) == (5, 2, 0.4)
    assert s.primary.outcomes == {**NO_OUTCOMES, "ok": 5}
    assert s.candidate.outcomes == {**NO_OUTCOMES, "ok": 3, "http_5xx": 1, "timeout": 1}
    # quantile_cont: linear interpolation at q * (n - 1)
    assert latency(s.primary) == pytest.approx((30.0, 48.0, 49.6))
    assert latency(s.candidate) == pytest.approx((3.0, 1600.8, 1920.16))
    assert s.primary.top_errors == []
    assert s.candidate.top_errors == [
        ErrorText(text="KeyError: 'purchase_history'", count=1),
        ErrorText(text="timeout", count=1),
    ]
    assert (s.comparable, s.agreement) == (3, pytest.approx(2 / 3))
    assert (s.abs_diff_mean, s.abs_diff_p95) == (None, None)
    assert s.feature_missing == {}


def test_top_errors_are_the_five_most_frequent_per_role(tmp_path: Path):
    records = []
    texts = {"E1": 6, "E2": 5, "E3": 4, "E4b": 3, "E4a": 3, "E5": 2, "E6": 1}
    n = 0
    for text, count in texts.items():
        for _ in range(count):
            n += 1
            records.append(pair(f"r{n}", candidate=side("http_5xx", error=text)))
    records.append(pair("p1", primary=side("http_4xx", error="ValueError: bad")))
    records.append(pair("p2", primary=side("connection_error", error=None)))
    records.append(pair("p3", primary=side("http_5xx", error="")))

    by_key, _ = slices_of(tmp_path, records)

    s = by_key[("all", None)]
    assert s.candidate.top_errors == [
        ErrorText(text="E1", count=6),
        ErrorText(text="E2", count=5),
        ErrorText(text="E3", count=4),
        ErrorText(text="E4a", count=3),  # ties by text
        ErrorText(text="E4b", count=3),
    ]
    assert s.candidate.errors == 24
    # an error without text is named by its outcome
    assert s.primary.top_errors == [
        ErrorText(text="ValueError: bad", count=1),
        ErrorText(text="connection_error", count=1),
        ErrorText(text="http_5xx", count=1),
    ]


def test_latency_histogram_counts_each_request_in_its_bucket(tmp_path: Path):
    latencies = [0.5, 1.0, 1.0001, 2.5, 7.0, 30000.0, 30000.5, 99999.0]
    records = [pair(f"r{i}", primary=side(latency_ms=ms)) for i, ms in enumerate(latencies)]

    by_key, _ = slices_of(tmp_path, records)

    histogram = by_key[("all", None)].primary.latency_histogram
    bounds = [b * 1000 for b in LATENCY_BUCKETS]
    assert [b.le_ms for b in histogram] == [*[pytest.approx(b) for b in bounds], 1e308]
    counts = {b.le_ms: b.count for b in histogram}
    assert counts == {
        1.0: 2,
        2.5: 2,
        5.0: 0,
        10.0: 1,
        25.0: 0,
        50.0: 0,
        100.0: 0,
        250.0: 0,
        500.0: 0,
        1000.0: 0,
        2500.0: 0,
        5000.0: 0,
        10000.0: 0,
        30000.0: 1,
        1e308: 2,
    }
    assert sum(counts.values()) == len(latencies)
    assert by_key[("all", None)].candidate.latency_histogram[0] == HistogramBucket(le_ms=1.0, count=0)


def test_every_segment_bucket_is_a_slice_and_a_request_counts_once_per_dimension(tmp_path: Path):
    records = [
        pair("a", segments={"history": "<1", "region": "eu"}, candidate=side("http_5xx", error="boom")),
        pair("b", segments={"history": "<1", "region": "us"}),
        pair("c", segments={"history": ">=100", "region": "eu"}),
        pair("d", segments={"region": "eu"}),  # no history value: the `missing` bucket
    ]

    by_key, slices = slices_of(tmp_path, records, segments=["history", "region"])

    whole = [(s.segment, s.pairs) for s in slices if s.hour is None]
    assert whole == [
        ("all", 4),
        ("history=<1", 2),
        ("history=>=100", 1),
        ("history=missing", 1),
        ("region=eu", 3),
        ("region=us", 1),
    ]
    assert by_key[("history=<1", None)].candidate.error_rate == 0.5
    assert by_key[("history=>=100", None)].candidate.error_rate == 0.0
    assert by_key[("region=eu", None)].candidate.errors == 1
    assert by_key[("region=eu", None)].candidate.top_errors == [ErrorText(text="boom", count=1)]
    assert by_key[("region=us", None)].candidate.top_errors == []


def test_hour_of_day_slices_for_all_and_each_bucket(tmp_path: Path):
    records = [
        pair("a", ts=at(0, 10), segments={"history": "<1"}, primary=side(latency_ms=5)),
        pair("b", ts=at(0, 50, day=1), segments={"history": ">=100"}, primary=side(latency_ms=15)),
        pair("c", ts=at(13, 0), segments={"history": "<1"}, candidate=side("http_5xx", error="late")),
        pair("d", ts=at(13, 59, 59), segments={"history": "<1"}),
        pair("e", ts=at(23, 59, 59), segments={"history": ">=100"}),
    ]

    by_key, slices = slices_of(tmp_path, records, segments=["history"])

    hourly = [(s.segment, s.hour, s.pairs) for s in slices if s.hour is not None]
    assert hourly == [
        ("all", 0, 2),
        ("history=<1", 0, 1),
        ("history=>=100", 0, 1),
        ("all", 13, 2),
        ("history=<1", 13, 2),
        ("all", 23, 1),
        ("history=>=100", 23, 1),
    ]
    assert latency(by_key[("all", 0)].primary) == pytest.approx((10.0, 14.5, 14.9))
    assert by_key[("all", 13)].candidate.error_rate == 0.5
    assert by_key[("all", 13)].candidate.top_errors == [ErrorText(text="late", count=1)]
    assert by_key[("history=<1", 13)].candidate.errors == 1
    assert by_key[("all", 0)].candidate.errors == 0
    assert by_key[("all", None)].pairs == 5


def test_feature_missing_rate_per_path_and_slice(tmp_path: Path):
    a, b = "$.features.purchase_count", "$.features.last_seen_days"
    records = [
        pair("r1", segments={"history": "<1"}, features={a: False, b: False}),
        pair("r2", segments={"history": "<1"}, features={a: False, b: True}),
        pair("r3", segments={"history": ">=100"}, features={a: True, b: True}),
        pair("r4", segments={"history": ">=100"}, features={a: True}),  # b not recorded: not counted missing
    ]

    by_key, _ = slices_of(tmp_path, records, segments=["history"], features=[a, b, "$.never"])

    assert by_key[("all", None)].feature_missing == {a: 0.5, b: 0.25, "$.never": 0.0}
    assert by_key[("history=<1", None)].feature_missing == {a: 1.0, b: 0.5, "$.never": 0.0}
    assert by_key[("history=>=100", None)].feature_missing == {a: 0.0, b: 0.0, "$.never": 0.0}


def test_regression_slices_carry_the_absolute_difference(tmp_path: Path):
    records = [
        pair(f"r{i}", primary=side(prediction=10.0), candidate=side(prediction=10.0 + d), regression=True)
        for i, d in enumerate([0.0, 1.0, 2.0, 3.0, 4.0])
    ]
    records.append(pair("err", primary=side(prediction=1.0), candidate=side("timeout"), regression=True))

    by_key, _ = slices_of(tmp_path, records, regression=True)

    s = by_key[("all", None)]
    assert (s.comparable, s.agreement) == (5, None)
    assert s.abs_diff_mean == pytest.approx(2.0)
    assert s.abs_diff_p95 == pytest.approx(3.8)


def test_joined_one_sided_records_are_sliced_like_pairs(tmp_path: Path):
    records = [
        one("a", "primary", side(prediction=1), segments={"history": "<1"}, ts=at(7)),
        one("a", "candidate", side(prediction=1), ts=at(7)),
        one("b", "primary", side(prediction=1), segments={"history": "<1"}, ts=at(7)),
        one("b", "candidate", side(prediction=2), ts=at(7)),
        one("c", "primary", side(), segments={"history": "<1"}, ts=at(7)),  # unpaired: not in any slice
    ]

    by_key, _ = slices_of(tmp_path, records, segments=["history"])

    for key in [("all", None), ("history=<1", None), ("all", 7), ("history=<1", 7)]:
        assert (by_key[key].pairs, by_key[key].comparable, by_key[key].agreement) == (2, 2, 0.5)
    assert len(by_key) == 4


def test_slice_order_is_all_then_segments_then_hours(tmp_path: Path):
    records = [
        pair("a", ts=at(5), segments={"z": "1", "a": "2"}),
        pair("b", ts=at(3), segments={"z": "0", "a": "2"}),
    ]

    _, slices = slices_of(tmp_path, records, segments=["z", "a"])

    assert [(s.segment, s.hour) for s in slices] == [
        ("all", None),
        ("z=0", None),
        ("z=1", None),
        ("a=2", None),
        ("all", 3),
        ("z=0", 3),
        ("a=2", 3),
        ("all", 5),
        ("z=1", 5),
        ("a=2", 5),
    ]


def test_an_empty_dataset_has_only_an_empty_all_slice(tmp_path: Path):
    _, slices = slices_of(tmp_path, [], segments=["history"], features=["$.x"])

    [s] = slices
    assert (s.segment, s.hour, s.pairs, s.comparable, s.agreement) == ("all", None, 0, 0, None)
    assert (s.primary.requests, s.primary.error_rate, s.primary.latency_ms) == (0, None, None)
    assert s.feature_missing == {}


# --- exact boundaries (mutation testing, docs/mutants.md): ranks at the ends of the sample, sides
# without latencies, quoted feature paths, the order of hour windows, ties among error texts ---


def _bounds(stats, level):
    [found] = [b for b in stats.latency_bounds if b.confidence == level]
    return found


def test_the_first_and_last_order_statistics_bound_a_median_of_six(tmp_path: Path):
    # six requests: P(B = 0) = 1/64 <= 2.5%, so X(1) and X(6) bound the median at 95%
    records = [pair(f"r{i}", primary=side(latency_ms=10.0 * i), candidate=side(latency_ms=i)) for i in range(1, 7)]
    by_key, _ = slices_of(tmp_path, records)
    primary = _bounds(by_key[("all", None)].primary, 0.95)
    assert (primary.low.p50, primary.high.p50) == (10.0, 60.0)
    candidate = _bounds(by_key[("all", None)].candidate, 0.95)
    assert (candidate.low.p50, candidate.high.p50) == (1.0, 6.0)
    # the p99 of six: X(5) below (P(B <= 4) = 0.15%), nothing above (P(B >= 6) = 94%)
    assert (primary.low.p99, primary.high.p99) == (50.0, UNBOUNDED_MS)


def test_a_single_request_has_bounds_at_every_level_nearly_all_open(tmp_path: Path):
    by_key, _ = slices_of(tmp_path, [pair("r1")])
    bounds = by_key[("all", None)].candidate.latency_bounds
    assert [b.confidence for b in bounds] == list(LATENCY_LEVELS)
    for b in bounds:
        # one request lies below the p99 with probability 0.99: a lower bound at 95% (1% <= 2.5%), above none
        assert (b.low.p50, b.low.p95, b.low.p99) == (0.0, 0.0, 10.0 if b.confidence == 0.95 else 0.0)
        assert (b.high.p50, b.high.p95, b.high.p99) == (UNBOUNDED_MS, UNBOUNDED_MS, UNBOUNDED_MS)


def test_a_side_without_latencies_has_no_bounds_and_the_other_side_keeps_its_own(tmp_path: Path):
    records = [
        pair(f"r{i}", primary=side("connection_error", latency_ms=None), candidate=side(latency_ms=10.0 * i))
        for i in range(1, 7)
    ]
    by_key, _ = slices_of(tmp_path, records)
    overall = by_key[("all", None)]
    assert overall.primary.latency_bounds == []
    assert len(overall.candidate.latency_bounds) == len(LATENCY_LEVELS)
    assert (_bounds(overall.candidate, 0.95).low.p50, _bounds(overall.candidate, 0.95).high.p50) == (10.0, 60.0)


def test_hour_windows_carry_no_latency_bounds(tmp_path: Path):
    by_key, _ = slices_of(tmp_path, [pair(f"r{i}", ts=at(4)) for i in range(10)])
    assert len(by_key[("all", None)].primary.latency_bounds) == len(LATENCY_LEVELS)
    assert by_key[("all", 4)].primary.latency_bounds == []
    assert by_key[("all", 4)].candidate.latency_bounds == []


def test_hour_zero_comes_before_hour_one_for_all_and_each_segment(tmp_path: Path):
    records = [pair("a", ts=at(1), segments={"z": "1"}), pair("b", ts=at(0), segments={"z": "1"})]
    _, slices = slices_of(tmp_path, records, segments=["z"])
    assert [(s.segment, s.hour) for s in slices] == [
        ("all", None), ("z=1", None), ("all", 0), ("z=1", 0), ("all", 1), ("z=1", 1),
    ]  # fmt: skip


def test_a_feature_path_with_quotes_is_read_as_written(tmp_path: Path):
    path = "$['user''s']"
    records = [pair("a", features={path: False}), pair("b", features={path: True}), pair("c", features={path: True})]
    by_key, _ = slices_of(tmp_path, records, features=[path, "$.other"])
    assert by_key[("all", None)].feature_missing == {path: 1 / 3, "$.other": 0.0}


def test_error_texts_counted_alike_are_listed_by_text(tmp_path: Path):
    texts = ["Zeta", "Kappa", "Alpha", "Omega", "Delta", "Beta", "Gamma"]
    records = [
        pair(f"{text}-{i}", ts=at(i), candidate=side("http_5xx", error=text)) for i in range(2) for text in texts
    ]
    by_key, _ = slices_of(tmp_path, records)
    expected = [ErrorText(text=text, count=2) for text in sorted(texts)[:5]]
    assert by_key[("all", None)].candidate.top_errors == expected
    assert by_key[("all", 0)].candidate.top_errors == [ErrorText(text=t, count=1) for t in sorted(texts)[:5]]


def test_a_latency_beyond_the_last_finite_bound_counts_in_the_last_bucket(tmp_path: Path):
    records = [pair("a", candidate=side(latency_ms=1.5e308)), pair("b", candidate=side(latency_ms=5.0))]
    by_key, _ = slices_of(tmp_path, records)
    histogram = by_key[("all", None)].candidate.latency_histogram
    assert sum(b.count for b in histogram) == 2
    assert histogram[-1].count == 1


def test_segments_no_longer_configured_come_after_the_configured_ones():
    from shadow_operator.job.stats import in_report_order

    from .slices_factory import make_slice

    slices = [
        make_slice("all", hour=1), make_slice("gone=1"), make_slice("y=2"), make_slice("x=>=100"),
        make_slice("all"), make_slice("x=1"), make_slice("x=1", hour=0), make_slice("all", hour=0),
    ]  # fmt: skip
    ordered = in_report_order(slices, ["x", "y"])
    # a bucket with "=" in it (">=100") still belongs to its segment; hour 0 before hour 1
    assert [(s.segment, s.hour) for s in ordered] == [
        ("all", None), ("x=1", None), ("x=>=100", None), ("y=2", None), ("gone=1", None),
        ("all", 0), ("x=1", 0), ("all", 1),
    ]  # fmt: skip
