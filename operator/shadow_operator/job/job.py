"""The comparison job: records (+ Prometheus) -> slices -> checks -> a Report.

`shadowctl analyze` calls `analyze`; in a cluster it then publishes the report into the
ConfigMap `<name>-report` (publish.py), the one object the job writes. The operator reads it
back and reflects verdict and samples into the ShadowDeployment's status.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..api.durations import parse_duration
from ..contract.coverage import coverage
from ..contract.metric_names import ALL_SEGMENTS
from ..contract.records import BASELINE, RECORD_SUFFIX
from ..contract.report import METRICS_ERROR, UNPAIRED_RECORD, DataProblem, Report, ReportCoverage, SliceStats
from ..contract.resource import ShadowDeployment
from ..contract.timestamps import parse_timestamp, timestamp
from . import aggregates, cycle, incremental_state, metrics, pending_records, record_sources, state_file, stats
from . import dataset as datasets
from .verdict import decide

log = logging.getLogger(__name__)

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


@dataclass
class Folded:
    """What one incremental run folded: the merged aggregates, and what the report should know about the state."""

    aggregates: aggregates.Aggregates
    baseline: aggregates.Aggregates | None
    notices: list[DataProblem] = field(default_factory=list)


def fold_increment(
    sd: ShadowDeployment,
    records: list[Path] | record_sources.RecordSource,
    now: datetime,
    state: Path | incremental_state.StateStore,
) -> tuple[aggregates.Aggregates, aggregates.Aggregates | None]:
    """Fold the records that arrived since the previous run into the state; the merged aggregates (fold_new_records)."""
    folded = fold_new_records(sd, records, now, state)
    return folded.aggregates, folded.baseline


def fold_new_records(
    sd: ShadowDeployment,
    records: list[Path] | record_sources.RecordSource,
    now: datetime,
    state: Path | incremental_state.StateStore,
) -> Folded:
    """Fold the records that arrived since the previous run into the kept state; the merged aggregates.

    `records`: record files or directories, or a RecordSource (the collector: remote.CollectorSource);
    `state`: a file, or a StateStore (the cluster's ConfigMap: state_configmap.ConfigMapStore).
    The state is rebuilt from every record when it is missing, refused (unreadable, malformed,
    not this object's), of another fingerprint (candidate image, evidence start, recording spec)
    or when a folded file was replaced (record_sources.py). While the candidate rolls out nothing is
    evidence: no record is read and the state is left alone (the next run's evidence start
    differs: it is rebuilt). Records that cannot be read this run (the collector unreachable)
    fold nothing and leave the state as it was, said in the notices.
    """
    spec = sd.spec
    regression = spec.recording.prediction_type == "regression"
    shadow = f"{sd.namespace}/{sd.name}"
    with_baseline = spec.analysis.baseline is not None
    since = evidence_since(sd, now)
    if sd.status.candidate is not None and since == now.timestamp():
        return Folded(aggregates.Aggregates(), aggregates.Aggregates() if with_baseline else None)
    segment_names = [segment.name for segment in spec.recording.segments]
    features = list(spec.recording.features)
    hours = cycle.cycle_hours(parse_duration(spec.analysis.min_duration).total_seconds())
    expected = incremental_state.fingerprint(
        shadow=shadow,
        candidate=spec.candidate.image,
        since=since,
        prediction_type=spec.recording.prediction_type,
        segments=[segment.model_dump(mode="json") for segment in spec.recording.segments],
        features=features,
        cycle_hours=hours,
        baseline=with_baseline,
    )
    source = records if not isinstance(records, list) else record_sources.LocalFiles(records)
    store = state if not isinstance(state, Path) else state_file.FileStore(state)
    with store.locked():
        state, why, notices = store.read(expected)
        if state is not None and (why := incremental_state.unusable(state, segment_names, features, regression)):
            state, notices = None, [*notices, incremental_state.rebuilt_notice(why)]
        try:
            files = source.listing()
            if state is not None and (why := record_sources.replaced(source, files, state.cursors)):
                state, notices = None, [*notices, incremental_state.rebuilt_notice(why)]
            if state is None:
                log.info("analysis state in %s rebuilt from every record: %s", store.where, why)
                state = incremental_state.State(expected, baseline=aggregates.Aggregates() if with_baseline else None)
            with tempfile.TemporaryDirectory(prefix="shadow-increment-") as scratch:
                increment = Path(scratch) / f"increment{RECORD_SUFFIX}"
                cursors, copied = record_sources.collect(source, files, state.cursors, increment)
                _fold_into(state, increment, copied, Path(scratch), sd, now, since, hours)
        except record_sources.SourceUnavailable as unavailable:
            # Nothing new is folded and nothing is written: the next run reads the same bytes.
            kept = state or incremental_state.State(
                expected, baseline=aggregates.Aggregates() if with_baseline else None
            )
            return Folded(kept.aggregates, kept.baseline, [unavailable.problem, *notices])
        state.cursors = cursors
        notices += store.write(state)
    return Folded(state.aggregates, state.baseline, notices)


def _fold_into(
    state: incremental_state.State,
    increment: Path,
    copied: int,
    scratch: Path,
    sd: ShadowDeployment,
    now: datetime,
    since: float | None,
    hours: int,
) -> None:
    """Fold the increment's records (and the one-sided records waiting from the last run) into `state`."""
    spec = sd.spec
    regression = spec.recording.prediction_type == "regression"
    shadow = f"{sd.namespace}/{sd.name}"
    segment_names = [segment.name for segment in spec.recording.segments]
    features = list(spec.recording.features)
    comparisons = [("candidate", state.aggregates, features, spec.candidate.image)]
    if state.baseline is not None:
        comparisons.append((BASELINE, state.baseline, [], None))
    for against, target, read_features, image in comparisons:
        waiting = state.pending.get(against, [])
        if not copied and not waiting:
            continue
        pending = scratch / f"pending-{against}{RECORD_SUFFIX}"
        pending_records.write_pending(waiting, pending)
        with datasets.load(
            [pending, increment], shadow, now=now.timestamp(), regression=regression,
            candidate_image=image, since=since, against=against,
        ) as loaded:  # fmt: skip
            folded = aggregates.fold(loaded, segment_names, read_features, regression, hours)
            # One-sided records whose other side has not arrived yet wait one more run; then they count.
            carried, expired = {}, 0
            if any(problem.code == UNPAIRED_RECORD for problem in loaded.problems):
                carried = pending_records.unpaired(
                    loaded.con, loaded.table, pending_records.one_sided(increment, shadow, against, image, since)
                )
                expired = len(
                    pending_records.unpaired(
                        loaded.con, loaded.table, pending_records.one_sided(pending, shadow, against, image, since)
                    )
                )
        folded.problems.pop(UNPAIRED_RECORD, None)
        for problem in pending_records.unpaired_problem(expired):
            folded.problems[problem.code] = [problem.count, problem.message, 1]
        target.merge(folded)
        state.pending[against] = list(carried.values())


def analyze(
    sd: ShadowDeployment,
    record_paths: Iterable[Path],
    now: datetime | None = None,
    prometheus_url: str | None = None,
    problems: list[DataProblem] | None = None,
    state: Path | incremental_state.StateStore | None = None,
    source: record_sources.RecordSource | None = None,
) -> Report:
    """`problems`: what went wrong before the records were read (e.g. the collector unreachable), listed first.

    `state`: fold only the records that arrived since the previous run into the aggregates kept
    in this file or store (incremental_state.py), and judge the merged aggregates; without it, every
    record is read and the slices computed exactly (stats.compute_slices). `source`: where an
    incremental run reads records (the collector), instead of `record_paths`.
    """
    now = now or datetime.now(UTC)
    spec = sd.spec
    regression = spec.recording.prediction_type == "regression"
    shadow = f"{sd.namespace}/{sd.name}"
    record_paths = list(record_paths)  # read twice with a noise baseline
    segment_names = [segment.name for segment in spec.recording.segments]
    hours = cycle.cycle_hours(parse_duration(spec.analysis.min_duration).total_seconds())
    if state is not None:
        result = fold_new_records(sd, source if source is not None else record_paths, now, state)
        folded, baseline_folded = result.aggregates, result.baseline
        features = list(spec.recording.features)
        slices = folded.slice_stats(segment_names, features, regression)
        problems = [*(problems or []), *result.notices, *folded.data_problems()]
        first_ts, last_ts, hours_seen = folded.first_ts, folded.last_ts, folded.hours_seen
        baseline_slices = (
            baseline_folded.slice_stats(segment_names, [], regression) if baseline_folded is not None else None
        )
        return _judge(sd, now, prometheus_url, slices, baseline_slices, problems, first_ts, last_ts, hours_seen)
    with datasets.load(
        record_paths,
        shadow,
        now=now.timestamp(),
        regression=regression,
        candidate_image=spec.candidate.image,
        since=evidence_since(sd, now),
    ) as loaded:
        slices = stats.compute_slices(loaded, segment_names, list(spec.recording.features), regression)
        problems = [*(problems or []), *loaded.problems]
        first_ts, last_ts = loaded.time_range()
        hours_seen = loaded.hours_seen(hours) if hours else set()
    baseline_slices = None
    if spec.analysis.baseline is not None:
        # The same records, read as the noise baseline's comparison with the primary (records.BASELINE).
        with datasets.load(
            record_paths, shadow, now=now.timestamp(), regression=regression, since=evidence_since(sd, now),
            against=BASELINE,
        ) as noise:  # fmt: skip
            baseline_slices = stats.compute_slices(noise, segment_names, [], regression)
    return _judge(sd, now, prometheus_url, slices, baseline_slices, problems, first_ts, last_ts, hours_seen)


def _judge(
    sd: ShadowDeployment,
    now: datetime,
    prometheus_url: str | None,
    slices: list[SliceStats],
    baseline_slices: list[SliceStats] | None,
    problems: list[DataProblem],
    first_ts: float | None,
    last_ts: float | None,
    hours_seen: set[int],
) -> Report:
    """Coverage, Prometheus's slices and the verdict on the slices, however they were computed."""
    spec = sd.spec
    shadow = f"{sd.namespace}/{sd.name}"
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
