"""Mergeable per-slice aggregates: what SliceStats need, folded from records in any number of increments.

One `SliceAggregate` per slice the report has (`all` and each `<segment>=<bucket>`, over the
whole period and per hour of day): exact counts for everything additive (pairs, errors and
each outcome, the latency histogram, agreement, missing features, the sum of absolute
differences), the error texts with their counts, and a quantile sketch per role (sketch.py:
bucket counts on a fixed log grid, relative error ALPHA) for latency and, in regression,
for the absolute difference. Merging adds counts, so folding records in K increments gives
exactly the aggregates of folding them at once.

`Aggregates.slices()` turns them into the same SliceStats that stats.compute_slices computes
from the records themselves, which the same checks and verdict judge. What differs from the
exact computation, and in which direction:

* counts, rates, histograms, outcomes, agreement, feature-missing rates: exact (the mean
  absolute difference up to floating-point summation order);
* latency p50/p95/p99 and the absolute difference's p95: within relative error ALPHA;
* latency bounds: each contains the exact order-statistic bound and is at most one bucket
  (a factor GAMMA) wider, so a latency check can only become inconclusive where the exact
  bounds would have failed or passed it, never the other way round;
* top error texts: exact while a slice and role has at most TEXTS_KEPT distinct texts; past
  that the rarest are dropped at each merge (messages only, no check reads them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..contract.metric_names import ALL_SEGMENTS
from ..contract.records import OK, OUTCOMES, ROLES
from ..contract.report import DataProblem, ErrorText, HistogramBucket, Latency, LatencyBounds, SideStats, SliceStats
from . import sketch as sk
from .pairs import Dataset
from .stats import (
    BOUNDS_MS,
    QUANTILES,
    TOP_ERRORS,
    SliceKey,
    count_aggregates,
    fetch_rows,
    grouping_sets,
    in_report_order,
    slice_key,
    slice_query,
)

TEXTS_KEPT = 100  # distinct error texts kept per slice and role (the report shows the top 5)
DIFF = "diff"  # the sketch of |prediction difference| (regression)


@dataclass
class SideAggregate:
    errors: int = 0
    ok: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * len(BOUNDS_MS))
    outcomes: dict[str, int] = field(default_factory=dict)  # failed outcomes only
    texts: dict[str, int] = field(default_factory=dict)  # error text (or the outcome) -> count
    latency: sk.Sketch = field(default_factory=sk.Sketch)

    def merge(self, other: SideAggregate) -> None:
        self.errors += other.errors
        self.ok += other.ok
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]
        _add(self.outcomes, other.outcomes)
        _add(self.texts, other.texts)
        self.keep_top_texts()
        self.latency.merge(other.latency)

    def keep_top_texts(self) -> None:
        """Past TEXTS_KEPT distinct texts, drop the rarest (messages only: no check reads them)."""
        if len(self.texts) > TEXTS_KEPT:
            self.texts = dict(_most_frequent(self.texts, TEXTS_KEPT))

    def to_json(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "ok": self.ok,
            "histogram": self.histogram,
            "outcomes": self.outcomes,
            "texts": self.texts,
            "latency": self.latency.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SideAggregate:
        return cls(
            errors=data["errors"],
            ok=data["ok"],
            histogram=list(data["histogram"]),
            outcomes=dict(data["outcomes"]),
            texts=dict(data["texts"]),
            latency=sk.Sketch.from_json(data["latency"]),
        )


@dataclass
class SliceAggregate:
    pairs: int = 0
    comparable: int = 0
    agreed: int = 0
    diff_sum: float = 0.0
    missing: dict[str, int] = field(default_factory=dict)  # feature path -> requests without it
    sides: dict[str, SideAggregate] = field(default_factory=lambda: {role: SideAggregate() for role in ROLES})
    diff: sk.Sketch = field(default_factory=sk.Sketch)

    def merge(self, other: SliceAggregate) -> None:
        self.pairs += other.pairs
        self.comparable += other.comparable
        self.agreed += other.agreed
        self.diff_sum += other.diff_sum
        _add(self.missing, other.missing)
        for role in ROLES:
            self.sides[role].merge(other.sides[role])
        self.diff.merge(other.diff)

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "comparable": self.comparable,
            "agreed": self.agreed,
            "diff_sum": self.diff_sum,
            "missing": self.missing,
            "sides": {role: side.to_json() for role, side in self.sides.items()},
            "diff": self.diff.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SliceAggregate:
        return cls(
            pairs=data["pairs"],
            comparable=data["comparable"],
            agreed=data["agreed"],
            diff_sum=data["diff_sum"],
            missing=dict(data["missing"]),
            sides={role: SideAggregate.from_json(data["sides"][role]) for role in ROLES},
            diff=sk.Sketch.from_json(data["diff"]),
        )


@dataclass
class Aggregates:
    """Every slice's aggregates, the time range and cycle hours seen, and the data problems met so far."""

    slices: dict[SliceKey, SliceAggregate] = field(default_factory=dict)
    first_ts: float | None = None
    last_ts: float | None = None
    hours_seen: set[int] = field(default_factory=set)
    problems: dict[str, list] = field(default_factory=dict)  # code -> [count, latest message, runs]

    def merge(self, other: Aggregates) -> None:
        for key, aggregate in other.slices.items():
            mine = self.slices.get(key)
            if mine is None:
                self.slices[key] = aggregate
            else:
                mine.merge(aggregate)
        self.first_ts = _extreme(min, self.first_ts, other.first_ts)
        self.last_ts = _extreme(max, self.last_ts, other.last_ts)
        self.hours_seen |= other.hours_seen
        for code, (count, message, runs) in other.problems.items():
            mine = self.problems.setdefault(code, [0, message, 0])
            mine[0] += count
            mine[1] = message
            mine[2] += runs

    @property
    def pairs(self) -> int:
        overall = self.slices.get((ALL_SEGMENTS, None))
        return overall.pairs if overall else 0

    def data_problems(self) -> list[DataProblem]:
        """One problem per code: the counts summed over every increment, the latest increment's message."""
        found = []
        for code, (count, message, runs) in self.problems.items():
            if runs > 1:
                message = f"{message} ({count} in all since the analysis state began, over {runs} runs)"
            found.append(DataProblem(code=code, count=count, message=message))
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "slices": [[segment, hour, aggregate.to_json()] for (segment, hour), aggregate in self.slices.items()],
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "hours_seen": sorted(self.hours_seen),
            "problems": self.problems,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Aggregates:
        return cls(
            slices={(segment, hour): SliceAggregate.from_json(body) for segment, hour, body in data["slices"]},
            first_ts=data["first_ts"],
            last_ts=data["last_ts"],
            hours_seen=set(data["hours_seen"]),
            problems={code: list(value) for code, value in data["problems"].items()},
        )

    def slice_stats(self, segment_names: list[str], feature_paths: list[str], regression: bool) -> list[SliceStats]:
        """SliceStats of every slice, in stats.compute_slices' order: `all` first, then segments as given."""
        segment_names = list(dict.fromkeys(segment_names))
        feature_paths = list(dict.fromkeys(feature_paths))
        slices = [
            _slice_stats(segment, hour, aggregate, feature_paths, regression)
            for (segment, hour), aggregate in self.slices.items()
            if aggregate.pairs
        ]
        return in_report_order(slices, segment_names)


def fold(
    dataset: Dataset, segment_names: list[str], feature_paths: list[str], regression: bool, cycle_hours: int = 0
) -> Aggregates:
    """The aggregates of one loaded Dataset (one increment of records): three GROUPING SETS queries."""
    segment_names, feature_paths, con, segs, base, grouping, keys = slice_query(dataset, segment_names, feature_paths)
    slice_columns = ", ".join((*(f"g_{c}" for c in ("hour", *segs)), keys))
    result = Aggregates()

    def slice_of(row: dict[str, Any]) -> SliceAggregate:
        return result.slices.setdefault(slice_key(row, segment_names), SliceAggregate())

    aggregates = count_aggregates(feature_paths, regression)
    if regression:
        aggregates.append("coalesce(sum(abs_diff), 0) AS diff_sum")
    for row in fetch_rows(
        con,
        f"SELECT {grouping}, {keys}, {', '.join(aggregates)} FROM ({base}) GROUP BY GROUPING SETS ({grouping_sets(segs)})",
    ):
        aggregate = slice_of(row)
        aggregate.pairs = row["pairs"]
        aggregate.comparable = row["comparable"]
        aggregate.agreed = 0 if regression else row["agreed"]
        aggregate.diff_sum = float(row["diff_sum"]) if regression else 0.0
        aggregate.missing = {path: row[f"missing_{j}"] for j, path in enumerate(feature_paths)}
        for role in ROLES:
            side = aggregate.sides[role]
            side.errors, side.ok = row[f"{role}_errors"], row[f"{role}_ok"]
            side.histogram = [row[f"{role}_h{i}"] for i in range(len(BOUNDS_MS))]

    failed = " UNION ALL ".join(
        f"SELECT {keys}, '{role}' AS role, {role}_outcome AS outcome, "
        f"coalesce(nullif({role}_error, ''), {role}_outcome) AS text "
        f"FROM ({base}) WHERE {role}_outcome IS DISTINCT FROM '{OK}'"
        for role in ROLES
    )
    for row in fetch_rows(
        con,
        f"SELECT {grouping}, {keys}, role, outcome, text, count(*) AS n FROM ({failed}) "
        f"GROUP BY GROUPING SETS ({grouping_sets(segs, extra='role, outcome, text')})",
    ):
        side = slice_of(row).sides[row["role"]]
        if row["outcome"] is not None:
            side.outcomes[row["outcome"]] = side.outcomes.get(row["outcome"], 0) + row["n"]
        text = str(row["text"])
        side.texts[text] = side.texts.get(text, 0) + row["n"]

    valued = [(role, f"{role}_latency_ms") for role in ROLES] + ([(DIFF, "abs_diff")] if regression else [])
    values = " UNION ALL ".join(
        f"SELECT {keys}, '{name}' AS role, {sk.key_sql(column)} AS key FROM ({base}) WHERE {column} IS NOT NULL"
        for name, column in valued
    )
    for row in fetch_rows(
        con,
        f"SELECT {slice_columns}, role, list(key ORDER BY key) AS keys, list(n ORDER BY key) AS counts FROM ("
        f"SELECT {grouping}, {keys}, role, key, count(*) AS n FROM ({values}) "
        f"GROUP BY GROUPING SETS ({grouping_sets(segs, extra='role, key')})) GROUP BY ALL",
    ):
        aggregate = slice_of(row)
        target = aggregate.diff if row["role"] == DIFF else aggregate.sides[row["role"]].latency
        target.add(row["keys"], row["counts"])

    for aggregate in result.slices.values():  # more than TEXTS_KEPT texts in one increment: the same cut as a merge
        for side in aggregate.sides.values():
            side.keep_top_texts()
    result.first_ts, result.last_ts = dataset.time_range()
    result.hours_seen = dataset.hours_seen(cycle_hours) if cycle_hours else set()
    for problem in dataset.problems:
        mine = result.problems.setdefault(problem.code, [0, problem.message, 1])
        mine[0] += problem.count
        mine[1] = problem.message
    return result


def _slice_stats(
    segment: str, hour: int | None, aggregate: SliceAggregate, feature_paths: list[str], regression: bool
) -> SliceStats:
    pairs = aggregate.pairs
    sides = {role: _side_stats(aggregate.sides[role], pairs, whole_period=hour is None) for role in ROLES}
    comparable = aggregate.comparable
    diff_p95 = aggregate.diff.quantiles([0.95]) if regression else None
    return SliceStats(
        segment=segment,
        hour=hour,
        pairs=pairs,
        primary=sides[ROLES[0]],
        candidate=sides[ROLES[1]],
        comparable=comparable,
        agreement=None if regression or not comparable else aggregate.agreed / comparable,
        abs_diff_mean=(aggregate.diff_sum / comparable if comparable else None) if regression else None,
        abs_diff_p95=diff_p95[0] if diff_p95 else None,
        feature_missing={path: aggregate.missing.get(path, 0) / pairs for path in feature_paths} if pairs else {},
    )


def _side_stats(side: SideAggregate, requests: int, whole_period: bool) -> SideStats:
    outcomes = dict.fromkeys(OUTCOMES, 0)
    outcomes[OK] = side.ok
    outcomes.update(sorted(side.outcomes.items()))  # unknown outcomes after the known ones, by name
    texts = _most_frequent(side.texts, TOP_ERRORS)
    quantiles = side.latency.quantiles(QUANTILES)
    bounds = side.latency.bounds(QUANTILES) if whole_period and quantiles else []
    return SideStats(
        requests=requests,
        errors=side.errors,
        error_rate=side.errors / requests if requests else None,
        outcomes=outcomes,
        top_errors=[ErrorText(text=text, count=count) for text, count in texts],
        latency_ms=Latency(p50=quantiles[0], p95=quantiles[1], p99=quantiles[2]) if quantiles else None,
        latency_histogram=[
            HistogramBucket(le_ms=bound, count=count) for bound, count in zip(BOUNDS_MS, side.histogram, strict=True)
        ],
        latency_bounds=[
            LatencyBounds(
                confidence=level,
                low=Latency(p50=lo[0], p95=lo[1], p99=lo[2]),
                high=Latency(p50=hi[0], p95=hi[1], p99=hi[2]),
            )
            for level, lo, hi in bounds
        ],
    )


def _most_frequent(texts: dict[str, int], n: int) -> list[tuple[str, int]]:
    """The `n` most frequent texts with their counts, ties by text."""
    return sorted(texts.items(), key=lambda t: (-t[1], t[0]))[:n]


def _add(mine: dict, other: dict) -> None:
    for key, count in other.items():
        mine[key] = mine.get(key, 0) + count


def _extreme(function, a: float | None, b: float | None) -> float | None:
    present = [v for v in (a, b) if v is not None]
    return function(present) if present else None
