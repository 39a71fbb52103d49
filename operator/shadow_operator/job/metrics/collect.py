"""Every planned query asked of a provider (never raising), and the answers as slices.

`collect` stops issuing queries after the first connection-level failure, so a black-holed
Prometheus costs about one timeout per report.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence

from ...api.v1alpha1 import CheckSource
from ...contract.metric_names import ALL_SEGMENTS
from ...contract.records import ROLES
from ...contract.report import METRICS_ERROR, DataProblem, Latency, SideStats, SliceStats
from .promql import plan_queries, queries_for, window_for
from .provider import MetricsProvider, MetricsQueryError, MetricsUnavailable

QUERY_CONCURRENCY = 4
_MAX_LISTED_QUERIES = 20


async def collect(
    provider: MetricsProvider,
    segments: list[str],
    window_seconds: float,
    concurrency: int = QUERY_CONCURRENCY,
    shadow: str | None = None,
) -> tuple[dict[str, float | None], list[DataProblem]]:
    """Ask `provider` every query of `plan_queries`; never raises.

    Returns the answered queries in plan order ({PromQL: value}, None for no data) and the
    problems: one METRICS_ERROR with the first failure's message when queries failed (after
    a connection-level failure no further queries are started), one listing the queries
    that returned nothing.
    """
    plan = plan_queries(segments, window_for(window_seconds), shadow)
    answered: dict[int, float | None] = {}
    failures: list[str] = []
    unavailable = False
    gate = asyncio.Semaphore(max(1, concurrency))

    async def ask(index: int, query: str) -> None:
        nonlocal unavailable
        async with gate:
            if unavailable:
                return
            try:
                answered[index] = await asyncio.to_thread(provider.run_query, query)
            except MetricsQueryError as error:
                failures.append(error.message)
            except MetricsUnavailable as error:
                failures.append(error.message)
                unavailable = True
            except Exception as error:  # a provider bug must not lose the whole report
                failures.append(f"{type(error).__name__} running {query!r}: {error}")
                unavailable = True

    await asyncio.gather(*(ask(i, q) for i, q in enumerate(plan)))

    values = {plan[i]: answered[i] for i in sorted(answered)}
    problems: list[DataProblem] = []
    if failures:
        problems.append(DataProblem(code=METRICS_ERROR, count=len(plan) - len(answered), message=failures[0]))
    empty = [query for query, value in values.items() if value is None]
    if empty:
        listed = "; ".join(empty[:_MAX_LISTED_QUERIES])
        more = f"; and {len(empty) - _MAX_LISTED_QUERIES} more" if len(empty) > _MAX_LISTED_QUERIES else ""
        problems.append(
            DataProblem(
                code=METRICS_ERROR,
                count=len(empty),
                message=f"{len(empty)} of {len(plan)} Prometheus queries returned no data: {listed}{more}",
            )
        )
    return values, problems


def slices_from_queries(
    queries: Mapping[str, float | None], segments: Sequence[str], window_seconds: float, shadow: str | None = None
) -> list[SliceStats]:
    """Prometheus's answers as slices (source `prometheus`, the records' segment names): all
    traffic, not just the sampled records, for the error-rate and latency checks. A segment with
    any answer missing is left out (collect already listed it as a problem)."""
    window = window_for(window_seconds)
    result = []
    for segment in dict.fromkeys([ALL_SEGMENTS, *segments]):
        sides = {}
        for role in ROLES:
            requests_, error_rate, *quantiles = (queries.get(q) for q in queries_for(role, segment, window, shadow))
            if requests_ is None or error_rate is None or any(v is None or not math.isfinite(v) for v in quantiles):
                break
            count = round(requests_)
            p50, p95, p99 = (v * 1000 for v in quantiles)
            sides[role] = SideStats(
                requests=count,
                errors=round(error_rate * count),
                error_rate=error_rate,
                latency_ms=Latency(p50=p50, p95=p95, p99=p99),
            )
        if len(sides) == len(ROLES):
            result.append(
                SliceStats(
                    segment=segment,
                    source=CheckSource.PROMETHEUS,
                    pairs=min(side.requests for side in sides.values()),
                    primary=sides["primary"],
                    candidate=sides["candidate"],
                )
            )
    return result
