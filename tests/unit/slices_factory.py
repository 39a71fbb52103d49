"""Build SliceStats for the checks and verdict tests without records or a stats module.

Traffic is described as cells, one per (segment bucket, hour of day); `build_slices` sums
them into the slices the job reports: `all`, each segment, and the hour windows of both.
Counts add up exactly; latency quantiles and absolute differences of a slice are the
pairs-weighted mean of its cells' (an approximation that is enough for threshold tests).
Latency bounds are the quantile times 1 -/+ z * LATENCY_SPREAD / sqrt(requests) at every
recorded level: narrower with more requests and with a lower level, as order statistics are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from shadow_operator.api.v1alpha1 import AnalysisSpec, CheckSource
from shadow_operator.contract.report import DataProblem, Latency, LatencyBounds, ReportCoverage, SideStats, SliceStats
from shadow_operator.job.intervals import LATENCY_LEVELS, z_value

DAY = 24 * 3600.0
WEEK = 7 * DAY
FAST = (50.0, 90.0, 120.0)  # p50, p95, p99 in ms
LATENCY_SPREAD = 1.0  # relative half-width of the latency bounds at z = 1 and one request


@dataclass(frozen=True)
class Cell:
    segment: str  # a bucket such as "history=<1"
    hour: int
    pairs: int
    primary_errors: int = 0
    candidate_errors: int = 0
    primary_latency: tuple[float, float, float] = FAST
    candidate_latency: tuple[float, float, float] = FAST
    agreeing: int | None = None  # default: every comparable pair agrees
    abs_diff_mean: float | None = None
    abs_diff_p95: float | None = None
    feature_missing: dict[str, int] = field(default_factory=dict)  # path -> requests missing it

    @property
    def comparable(self) -> int:
        return self.pairs - max(self.primary_errors, self.candidate_errors)


def latency_bounds(requests: int, latency: tuple[float, float, float]) -> list[LatencyBounds]:
    """Bounds at every recorded level around the quantiles (see the module's docstring)."""
    if requests <= 0:
        return []
    result = []
    for level in LATENCY_LEVELS:
        w = z_value(level) * LATENCY_SPREAD / math.sqrt(requests)
        low = Latency(**{p: max(0.0, v * (1 - w)) for p, v in zip(("p50", "p95", "p99"), latency, strict=True)})
        high = Latency(**{p: v * (1 + w) for p, v in zip(("p50", "p95", "p99"), latency, strict=True)})
        result.append(LatencyBounds(confidence=level, low=low, high=high))
    return result


def side(
    requests: int, errors: int = 0, latency: tuple[float, float, float] | None = FAST, bounds: bool = True
) -> SideStats:
    return SideStats(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else None,
        latency_ms=Latency(p50=latency[0], p95=latency[1], p99=latency[2]) if latency else None,
        latency_bounds=latency_bounds(requests, latency) if latency and bounds else [],
    )


def make_slice(
    segment: str = "all",
    hour: int | None = None,
    pairs: int = 1000,
    primary_errors: int = 0,
    candidate_errors: int = 0,
    primary_latency: tuple[float, float, float] | None = FAST,
    candidate_latency: tuple[float, float, float] | None = FAST,
    agreement: float | None = None,
    comparable: int | None = None,
    abs_diff_mean: float | None = None,
    abs_diff_p95: float | None = None,
    feature_missing: dict[str, float] | None = None,
    source: CheckSource = CheckSource.RECORDS,
) -> SliceStats:
    """One slice with the same number of requests on both sides as pairs."""
    return SliceStats(
        segment=segment,
        hour=hour,
        source=source,
        pairs=pairs,
        primary=side(pairs, primary_errors, primary_latency),
        candidate=side(pairs, candidate_errors, candidate_latency),
        agreement=agreement,
        comparable=pairs if comparable is None else comparable,
        abs_diff_mean=abs_diff_mean,
        abs_diff_p95=abs_diff_p95,
        feature_missing=feature_missing or {},
    )


def _weighted(cells: list[Cell], values: list[float | None]) -> float | None:
    pairs = [(cell.pairs, value) for cell, value in zip(cells, values, strict=True) if value is not None]
    weight = sum(n for n, _ in pairs)
    return sum(n * v for n, v in pairs) / weight if weight else None


def _latency(cells: list[Cell], role: str) -> tuple[float, float, float]:
    values = [getattr(cell, f"{role}_latency") for cell in cells]
    return tuple(_weighted(cells, [v[i] for v in values]) or 0.0 for i in range(3))  # type: ignore[return-value]


def _aggregate(segment: str, hour: int | None, cells: list[Cell], regression: bool) -> SliceStats:
    pairs = sum(cell.pairs for cell in cells)
    comparable = sum(cell.comparable for cell in cells)
    agreeing = sum(cell.comparable if cell.agreeing is None else cell.agreeing for cell in cells)
    paths = sorted({path for cell in cells for path in cell.feature_missing})
    return make_slice(
        segment=segment,
        hour=hour,
        pairs=pairs,
        primary_errors=sum(cell.primary_errors for cell in cells),
        candidate_errors=sum(cell.candidate_errors for cell in cells),
        primary_latency=_latency(cells, "primary"),
        candidate_latency=_latency(cells, "candidate"),
        agreement=None if regression or not comparable else agreeing / comparable,
        comparable=comparable,
        abs_diff_mean=_weighted(cells, [cell.abs_diff_mean for cell in cells]) if regression else None,
        abs_diff_p95=_weighted(cells, [cell.abs_diff_p95 for cell in cells]) if regression else None,
        feature_missing={path: sum(cell.feature_missing.get(path, 0) for cell in cells) / pairs for path in paths},
    )


def build_slices(cells: Iterable[Cell], regression: bool = False) -> list[SliceStats]:
    """`all`, every segment, `all` per hour and every segment per hour, as the job reports them."""
    cells = list(cells)
    segments = list(dict.fromkeys(cell.segment for cell in cells))
    hours = sorted({cell.hour for cell in cells})
    slices = [_aggregate("all", None, cells, regression)]
    slices += [_aggregate(seg, None, [x for x in cells if x.segment == seg], regression) for seg in segments]
    slices += [_aggregate("all", h, [x for x in cells if x.hour == h], regression) for h in hours]
    for seg in segments:
        for h in hours:
            part = [x for x in cells if x.segment == seg and x.hour == h]
            if part:
                slices.append(_aggregate(seg, h, part, regression))
    return slices


def day_of_traffic(segments: dict[str, int], **kwargs) -> list[Cell]:
    """The same traffic every hour: segment bucket -> pairs per hour; kwargs go to every cell."""
    return [Cell(segment=seg, hour=h, pairs=n, **kwargs) for h in range(24) for seg, n in segments.items()]


def coverage(slices: list[SliceStats], elapsed: float = WEEK, required: float = WEEK, min_samples: int = 1000):
    overall = next(s for s in slices if s.segment == "all" and s.hour is None) if slices else None
    samples = overall.pairs if overall else 0
    return ReportCoverage(
        elapsed_seconds=elapsed,
        required_seconds=required,
        samples=samples,
        required_samples=min_samples,
        percent=min(100, int(elapsed * 100 // required), samples * 100 // min_samples),
    )


def analysis(**thresholds) -> AnalysisSpec:
    """An AnalysisSpec with the defaults (minSamples 1000, perSegment 100, 95%, 168h) and these thresholds."""
    rest = {k: thresholds.pop(k) for k in list(thresholds) if k in AnalysisSpec.model_fields}
    return AnalysisSpec(thresholds=thresholds, **rest)


def problem(code: str, count: int) -> DataProblem:
    return DataProblem(code=code, count=count, message=f"{count} lines with {code}")
