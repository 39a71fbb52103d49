"""`make bench-analyze`, incremental part (issue 13, item 3): analysis whose cost follows new data.

1. **A week in 10-minute increments.** 10M pair records (20 segment buckets, the same generator
   as benchmarks/analyze.py) spread over a week, delivered in 1,008 increments of ~9,900: each
   increment is appended to the current record file (a new file every 6 hours, the oldest
   deleted past 4 files, as the collector's retention does: only the state remembers them),
   then one `shadowctl analyze --state` run is measured: `job.analyze(sd, [dir], now, state=FILE)`
   (read the state file, copy the new whole lines, load and validate them, fold, merge, write
   the state, SliceStats from the aggregates, coverage, verdict). Each run's time and peak RSS
   (VmHWM, reset before the run through /proc/self/clear_refs) are taken in this process; the
   first and the last increment are also run as `shadowctl analyze` in a fresh interpreter
   (wall time including the interpreter and imports, as a CronJob Pod pays it).
2. **Full recomputation at 1M** (`--full-records`): best of 3 in fresh processes, beside the
   reference DuckDB statement of benchmarks/analyze.py: ours exact (load + stats.compute_slices,
   what `shadowctl analyze` without --state does) and ours from aggregates (load +
   aggregates.fold + slice_stats, what a run does when its state is rebuilt); plus the
   parts of the exact path (load alone, and compute_slices with and without the order-statistic
   sort) to show where the time above the reference goes.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from . import analyze as bench
from . import table

WEEK_RECORDS = 10_000_000
INCREMENT_SECONDS = 600
INCREMENTS_PER_FILE = 36  # 6 hours of records per file
FILES_RETAINED = 4
TARGET_RUN_SECONDS = 1.0
FLAT_SLACK = 1.25  # the last increments' time and memory within this factor of the first ones'
TARGET_FULL_RATIO = 1.2
FULL_RECORDS = 1_000_000
EDGE_RUNS = 10  # runs averaged at each end of the week to judge flatness


def sd_body() -> dict:
    return {
        "apiVersion": "shadow.mlops.dev/v1alpha1",
        "kind": "ShadowDeployment",
        "metadata": {"name": bench.SHADOW.split("/")[1], "namespace": bench.SHADOW.split("/")[0], "uid": "bench"},
        "spec": {
            "service": {"name": "recommender", "port": 80},
            "primary": {"image": "registry.example/recsys:1", "replicas": 1, "port": 8080},
            "candidate": {"image": "registry.example/recsys:2", "replicas": 1, "port": 8080},
            "traffic": {"router": "builtin", "mirrorPercent": 100},
            "recording": {
                "predictionPath": "$.prediction",
                "segments": [{"name": bench.SEGMENT, "path": "$.features.cohort"}],
                "features": list(bench.FEATURES),
            },
            "analysis": {
                "interval": "10m",
                "minDuration": "168h",
                "minSamples": 1000,
                "prometheus": None,
                "thresholds": {
                    "latencyRatio": {"p50": 1.2, "p95": 1.3, "p99": 1.5},
                    "maxErrorRate": 0.02,
                    "minAgreement": 0.9,
                },
            },
        },
    }


def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def run_week(total: int, workdir: Path, increments: int) -> dict:
    """Deliver `total` records in `increments` runs; time and peak memory of every run."""
    import numpy as np

    from shadow_operator.contract.resource import parse
    from shadow_operator.job.job import analyze

    sd = parse(sd_body())
    sd_file = workdir / "shadow.yaml"
    sd_file.write_text(yaml.safe_dump(sd_body()))
    records = workdir / "records" / "router-0"
    records.mkdir(parents=True)
    state = workdir / "state.json"
    rng = np.random.default_rng(11)
    week = bench.WEEK / total  # the generator spreads `total` records over the week
    runs = []
    fresh = {}
    for i in range(increments):
        start, end = round(i * total / increments), round((i + 1) * total / increments)
        file_index = i // INCREMENTS_PER_FILE
        with (records / f"records-{file_index:04d}.jsonl").open("a") as f:
            f.write("".join(bench._lines(rng, start, end - start, total)))
        for old in sorted(records.glob("*.jsonl"))[:-FILES_RETAINED]:
            old.unlink()  # retention: the state keeps what it held
        now = datetime.fromtimestamp(bench.START + end * week + 1, UTC)
        if i in (0, increments - 1):
            fresh[i] = _fresh_run(sd_file, workdir / "records", state, now)
            continue
        _reset_peak()
        started = time.perf_counter()
        report = analyze(sd, [workdir / "records"], now=now, state=state)
        seconds = time.perf_counter() - started
        runs.append(
            {
                "increment": i + 1,
                "records": end - start,
                "seconds": seconds,
                "peak_mib": _hwm_mib(),
                "pairs": report.coverage.samples,
                "state_mib": state.stat().st_size / 2**20,
            }
        )
        if (i + 1) % 144 == 0:
            print(
                f"  increment {i + 1}/{increments}: {seconds:.2f} s, peak {runs[-1]['peak_mib']:.0f} MiB, "
                f"{report.coverage.samples:,} pairs, state {runs[-1]['state_mib']:.1f} MiB, {report.verdict.result}",
                file=sys.stderr,
            )
    final = json.loads(state.read_text())
    pairs = next(
        body["pairs"] for segment, hour, body in final["aggregates"]["slices"] if segment == "all" and hour is None
    )
    return {"runs": runs, "fresh": fresh, "pairs": pairs, "verdict": report.verdict.result}


def _fresh_run(sd_file: Path, records: Path, state: Path, now: datetime) -> dict:
    """One increment as the CronJob runs it: a new interpreter (`shadowctl analyze --state`)."""
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.analyze_incremental",
            "--child-run",
            str(sd_file),
            str(records),
            str(state),
            now.isoformat(),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "wall": time.perf_counter() - started}


def child_run(sd_file: Path, records: Path, state: Path, now: str) -> dict:
    started = time.perf_counter()
    from shadow_operator.contract.resource import parse
    from shadow_operator.job.job import analyze

    imported = time.perf_counter()
    report = analyze(
        parse(yaml.safe_load(sd_file.read_text())), [records], now=datetime.fromisoformat(now), state=state
    )
    done = time.perf_counter()
    return {
        "seconds": done - imported,
        "imports": imported - started,
        "peak_mib": _hwm_mib(),
        "pairs": report.coverage.samples,
    }


# --- full recomputation at 1M: fresh processes, best of 3 ---------------------------------------


def child_aggregates(path: Path) -> dict:
    from shadow_operator.job import aggregates
    from shadow_operator.job.dataset import load

    started = time.perf_counter()
    with load([path], bench.SHADOW) as dataset:
        folded = aggregates.fold(dataset, [bench.SEGMENT], bench.FEATURES, False, 168)
    slices = folded.slice_stats([bench.SEGMENT], bench.FEATURES, False)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "pairs": folded.pairs, "slices": len(slices), "problems": len(folded.problems)}


def child_parts(path: Path) -> dict:
    """Where the exact path's time goes: load; compute_slices; compute_slices without the order statistics."""
    from shadow_operator.job import stats
    from shadow_operator.job.dataset import load

    started = time.perf_counter()
    dataset = load([path], bench.SHADOW)
    loaded = time.perf_counter()
    stats.compute_slices(dataset, [bench.SEGMENT], bench.FEATURES, regression=False)
    computed = time.perf_counter()
    original = stats._latency_bounds
    stats._latency_bounds = lambda *args: {}
    try:
        stats.compute_slices(dataset, [bench.SEGMENT], bench.FEATURES, regression=False)
    finally:
        stats._latency_bounds = original
    without = time.perf_counter()
    return {
        "seconds": computed - started,
        "load": loaded - started,
        "slices": computed - loaded,
        "slices_without_bounds": without - computed,
    }


def full_recomputation(size: int, repeat: int) -> dict:
    path = bench.records_file(size)
    bench.warm(path)
    return {
        "size": size,
        "exact": bench.best_of("ours", path, repeat),
        "aggregates": bench.best_of("aggregates", path, repeat),
        "duckdb": bench.best_of("duckdb", path, repeat),
        "parts": min((bench.measure("parts", path) for _ in range(repeat)), key=lambda r: r["seconds"]),
    }


# --- the table ------------------------------------------------------------------------------------


def results_table(week: dict | None, full: dict | None, total: int, increments: int) -> table.Table:
    t = table.Table(
        f"Incremental analysis: {total:,} pair records over a week in {increments} increments of "
        f"{7 * 86400 / increments / 60:g} minutes",
        reference="reference",
    )
    if week is not None:
        runs = week["runs"]
        seconds = [r["seconds"] for r in runs]
        peaks = [r["peak_mib"] for r in runs]
        first_s, last_s = statistics.mean(seconds[:EDGE_RUNS]), statistics.mean(seconds[-EDGE_RUNS:])
        first_m, last_m = statistics.mean(peaks[:EDGE_RUNS]), statistics.mean(peaks[-EDGE_RUNS:])
        flat = f"≤ {FLAT_SLACK:g}x"
        t.section("each incremental run (in-process)")
        t.row(f"median of {len(runs)} runs", statistics.median(seconds), "s", target=f"< {TARGET_RUN_SECONDS:g} s")
        t.row("slowest run", max(seconds), "s", target=f"< {TARGET_RUN_SECONDS:g} s")
        t.row(f"time, last {EDGE_RUNS} runs", last_s, "s", ref=first_s, ref_name=f"first {EDGE_RUNS}", target=flat)
        t.row(f"peak RSS, last {EDGE_RUNS} runs", last_m, "MiB", ref=first_m, ref_name=f"first {EDGE_RUNS}",
              target=flat)  # fmt: skip
        t.row("state file at the end", runs[-1]["state_mib"], "MiB")
        t.row("pairs folded", week["pairs"], ref=total, ref_name="delivered", met=week["pairs"] == total,
              target="all, once")  # fmt: skip
        # Per day: the first day's runs grow as hour-of-day slices appear (at most 525 here); flat after.
        per_day = max(1, len(runs) // 7)
        days = [runs[d * per_day : (d + 1) * per_day] for d in range(len(runs) // per_day)]
        day_s = [statistics.median(r["seconds"] for r in day) for day in days]
        day_m = [statistics.median(r["peak_mib"] for r in day) for day in days]
        day2 = min(1, len(days) - 1)
        t.section("median run per day (the first day grows as hour-of-day slices appear)")
        t.row("time, last day", day_s[-1], "s", ref=day_s[day2], ref_name="day 2", target=flat,
              note=" ".join(f"{v:.2f}" for v in day_s))  # fmt: skip
        t.row("peak RSS, last day", day_m[-1], "MiB", ref=day_m[day2], ref_name="day 2", target=flat,
              note=" ".join(f"{v:.0f}" for v in day_m))  # fmt: skip
        t.section("a fresh `shadowctl analyze` process (as the CronJob runs it)")
        for i, label in ((0, "first"), (increments - 1, "last")):
            fresh = week["fresh"][i]
            t.row(f"{label} increment: analysis", fresh["seconds"], "s", target=f"< {TARGET_RUN_SECONDS:g} s",
                  note=f"+{fresh['imports']:.2f} s imports, {fresh['wall']:.2f} s wall, {fresh['peak_mib']:.0f} MiB")  # fmt: skip
    if full is not None:
        duck = full["duckdb"]
        t.section(f"full recomputation of {full['size']:,} records, beside DuckDB")
        for key, label in (("aggregates", "from aggregates (state rebuilt)"), ("exact", "exact (no --state)")):
            t.row(f"{label}: time", full[key]["seconds"], "s", ref=duck["seconds"], ref_name="DuckDB",
                  target=f"≤ {TARGET_FULL_RATIO:g}x")  # fmt: skip
            t.row(f"{label}: peak RSS", full[key]["rss_mib"], "MiB", ref=duck["rss_mib"], ref_name="DuckDB")
        parts = full["parts"]
        for key, label in (("load", "dataset.load"), ("slices", "compute_slices"),
                           ("slices_without_bounds", "compute_slices without order statistics")):  # fmt: skip
            t.row(f"exact path, {label}", parts[key], "s", ref=duck["seconds"], ref_name="DuckDB")
    return t


def main(
    week_records: int, full_records: int | None, repeat: int, increments: int = 7 * 86400 // INCREMENT_SECONDS
) -> int:
    full = full_recomputation(full_records, repeat) if full_records else None
    week = None
    if week_records:
        with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
            started = time.perf_counter()
            week = run_week(week_records, Path(tmp), increments)
            print(f"week delivered and analysed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        saved = Path(tempfile.gettempdir()) / "bench-analyze-incremental-runs.json"
        saved.write_text(json.dumps(week))
        print(f"every run's numbers: {saved}", file=sys.stderr)
    results_table(week, full, week_records, increments).print()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child-run"]:
        print(json.dumps(child_run(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5])))
