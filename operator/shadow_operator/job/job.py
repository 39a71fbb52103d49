"""The comparison job: records (+ Prometheus) -> slices -> checks -> a Report.

`shadowctl analyze` calls `analyze`; in a cluster it then publishes the report into the
ConfigMap `<name>-report` (publish.py), the one object the job writes. The operator reads it
back and reflects verdict and samples into the ShadowDeployment's status.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from ..api.durations import parse_duration
from ..contract.coverage import coverage
from ..contract.metric_names import ALL_SEGMENTS
from ..contract.records import BASELINE
from ..contract.report import METRICS_ERROR, DataProblem, Report, ReportCoverage, SliceStats
from ..contract.resource import ShadowDeployment
from ..contract.timestamps import parse_timestamp, timestamp
from . import cycle, metrics, stats
from . import dataset as datasets
from .verdict import decide

# Records that arrived within this long after status.shadowingSince are not judged either: the
# timestamp is cut to the second, and kube-proxy applies endpoint changes at most once a second
# (--iptables-min-sync-period), so the old image's Pods may take a copy that long. Terminating
# Pods stop taking copies on the router's pooled connections when their server closes them.
ROLLOUT_SETTLE_SECONDS = 2.0


def evidence_since(sd: ShadowDeployment, now: datetime) -> float | None:
    """From when records are this candidate's evidence; None: all of them (no operator status).

    The operator sets status.shadowingSince when the candidate's Deployment has rolled out and
    clears it for a new image. Until then nothing is evidence, whatever the records hold: the
    previous image's Pods answered them (the router's records do not name the image).
    """
    status = sd.status
    if status.candidate is None:  # never reconciled: records analysed offline (shadowctl analyze FILE)
        return None
    if status.candidate != sd.spec.candidate.image or not status.shadowing_since:
        return now.timestamp()
    return parse_timestamp(status.shadowing_since).timestamp() + ROLLOUT_SETTLE_SECONDS


def coverage_for(
    sd: ShadowDeployment,
    first_ts: float | None,
    last_ts: float | None,
    samples: int,
    now: datetime,
    hours_seen: set[int] | None = None,
) -> ReportCoverage:
    """The lowest of time, samples and hours of the business cycle seen (job/cycle.py).

    Time counts from when this candidate's evidence begins, else from the first record;
    `hours_seen`: the cycle's hour buckets holding a pair (None: none counted).
    """
    required = parse_duration(sd.spec.analysis.min_duration).total_seconds()
    start = evidence_since(sd, now)
    if start is None:
        start = first_ts
    if start is not None and not math.isfinite(start):  # the dataset excludes such records; never trust them here
        start = None
    elapsed = max(0.0, (now.timestamp() - start) if start is not None else 0.0)
    if not math.isfinite(elapsed):
        elapsed = 0.0
    hours = cycle.cycle_hours(required)
    seen = {bucket for bucket in hours_seen or () if 0 <= bucket < hours}
    covered = coverage(elapsed, required, samples, sd.spec.analysis.min_samples, (len(seen), hours) if hours else None)
    return ReportCoverage(
        first_ts=first_ts,
        last_ts=last_ts,
        elapsed_seconds=elapsed,
        required_seconds=required,
        samples=samples,
        required_samples=sd.spec.analysis.min_samples,
        cycle_hours=hours,
        hours_seen=len(seen),
        gaps=cycle.gaps(seen, hours) if hours else [],
        percent=covered.lowest,
    )


def analyze(
    sd: ShadowDeployment,
    record_paths: Iterable[Path],
    now: datetime | None = None,
    prometheus_url: str | None = None,
    problems: list[DataProblem] | None = None,
) -> Report:
    """`problems`: what went wrong before the records were read (e.g. the collector unreachable), listed first."""
    now = now or datetime.now(UTC)
    spec = sd.spec
    regression = spec.recording.prediction_type == "regression"
    shadow = f"{sd.namespace}/{sd.name}"
    record_paths = list(record_paths)  # read twice with a noise baseline
    with datasets.load(
        record_paths,
        shadow,
        now=now.timestamp(),
        regression=regression,
        candidate_image=spec.candidate.image,
        since=evidence_since(sd, now),
    ) as loaded:
        segment_names = [segment.name for segment in spec.recording.segments]
        slices = stats.compute_slices(loaded, segment_names, list(spec.recording.features), regression)
        problems = [*(problems or []), *loaded.problems]
        first_ts, last_ts = loaded.time_range()
        hours = cycle.cycle_hours(parse_duration(spec.analysis.min_duration).total_seconds())
        hours_seen = loaded.hours_seen(hours) if hours else set()
    baseline_slices = None
    if spec.analysis.baseline is not None:
        # The same records, read as the noise baseline's comparison with the primary (records.BASELINE).
        with datasets.load(
            record_paths, shadow, now=now.timestamp(), regression=regression, since=evidence_since(sd, now),
            against=BASELINE,
        ) as noise:  # fmt: skip
            baseline_slices = stats.compute_slices(noise, segment_names, [], regression)
    overall = next((s for s in slices if s.segment == ALL_SEGMENTS and s.hour is None), None)
    coverage = coverage_for(sd, first_ts, last_ts, overall.pairs if overall else 0, now, hours_seen)

    queries: dict[str, float | None] = {}
    metric_slices: list[SliceStats] = []
    metrics_available = True
    url = prometheus_url or (spec.analysis.prometheus.url if spec.analysis.prometheus else None)
    if url:
        timeout = spec.analysis.prometheus.timeout if spec.analysis.prometheus else "10s"
        provider = metrics.provider_for("prometheus", {"url": url, "timeout": timeout})
        segments = sorted({s.segment for s in slices if s.segment != ALL_SEGMENTS and s.hour is None})
        window = max(coverage.elapsed_seconds, 60.0)
        queries, metric_problems = asyncio.run(metrics.collect(provider, segments, window, shadow=shadow))
        problems += metric_problems
        metrics_available = not any(p.code == METRICS_ERROR for p in metric_problems)
        metric_slices = metrics.slices_from_queries(queries, segments, window, shadow)

    verdict = decide(
        spec.analysis,
        spec.recording.prediction_type,
        slices,
        coverage,
        problems,
        metrics_available,
        timestamp(now),
        metric_slices=metric_slices,
        segment_paths={segment.name: segment.path for segment in spec.recording.segments},
        baseline_slices=baseline_slices,
    )
    return Report(
        shadow=shadow,
        generated_at=timestamp(now),
        candidate=spec.candidate.image,
        coverage=coverage,
        slices=slices,
        verdict=verdict,
        problems=problems,
        queries=queries,
    )
