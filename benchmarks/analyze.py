"""`make bench-analyze`: the comparison job's analysis over 100k, 1M and 3M pair records.

Generates pair records with one segment dimension of 20 buckets (cached under
~/.cache/shadow-operator/bench-analyze, keyed by size), then, for each size and in the
same run, measures in fresh subprocesses:

  ours    `dataset.load` + `stats.compute_slices` (every slice, per hour of day too)
  duckdb  a reference: one plain DuckDB query over the same file (read_ndjson + GROUP BY
          segment and hour: counts, error rates, latency quantiles), i.e. what DuckDB
          itself costs to read and aggregate the records

and prints wall time and peak RSS of each, their ratio, and our seconds per 1M records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (100_000, 1_000_000, 3_000_000)
SHADOW = "bench/recommender"
SEGMENT = "cohort"
BUCKETS = [f"c{i:02d}" for i in range(20)]
FEATURES = ["$.features.purchase_count", "$.features.last_seen_days"]
START = 1_764_000_000.0  # records spread over the week after this
WEEK = 7 * 86400.0
GENERATOR_VERSION = 2  # bump when the generated records change, to invalidate the cache
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shadow-operator" / "bench-analyze"
CHUNK = 250_000

PRIMARY_ERROR = "RuntimeError: feature store timeout"
CANDIDATE_ERRORS = [
    "KeyError: 'purchase_history'",
    "ValueError: Input contains NaN",
    "RuntimeError: model not loaded",
]


def _side(outcome: int, latency: float, prediction: int, error: str) -> str:
    if outcome == 0:
        return f'{{"outcome":"ok","status":200,"latency_ms":{latency:.3f},"prediction":{prediction},"error":null}}'
    if outcome == 1:
        return f'{{"outcome":"http_5xx","status":500,"latency_ms":{latency:.3f},"prediction":null,"error":"{error}"}}'
    if outcome == 2:
        return (
            f'{{"outcome":"http_4xx","status":400,"latency_ms":{latency:.3f},"prediction":null,'
            f'"error":"ValueError: bad request"}}'
        )
    return f'{{"outcome":"timeout","status":null,"latency_ms":{latency:.3f},"prediction":null,"error":null}}'


def _lines(rng, start: int, n: int, total: int) -> list[str]:
    import numpy as np

    ts = START + (np.arange(start, start + n) + rng.random(n)) * (WEEK / total)
    cohort = rng.integers(0, len(BUCKETS), n)
    f1 = rng.random(n) < 0.97
    f2 = rng.random(n) < 0.9
    # ok, http_5xx, http_4xx, timeout
    p_out = rng.choice(4, n, p=[0.9975, 0.001, 0.001, 0.0005])
    c_out = rng.choice(4, n, p=[0.99, 0.006, 0.002, 0.002])
    p_lat = rng.lognormal(np.log(25.0), 0.6, n)
    c_lat = rng.lognormal(np.log(28.0), 0.7, n)
    p_lat[p_out == 3] = 2000.0
    c_lat[c_out == 3] = 2000.0
    p_pred = rng.integers(0, 10, n)
    c_pred = np.where(rng.random(n) < 0.95, p_pred, rng.integers(0, 10, n))
    c_err = rng.integers(0, len(CANDIDATE_ERRORS), n)
    buckets = [f'{{"{SEGMENT}":"{b}"}}' for b in BUCKETS]
    features = {
        (a, b): json.dumps({FEATURES[0]: a, FEATURES[1]: b}, separators=(",", ":"))
        for a in (False, True)
        for b in (False, True)
    }
    lines = []
    for i, t, co, a, b, po, co_, pl, cl, pp, cp, ce in zip(
        range(start, start + n),
        ts.tolist(),
        cohort.tolist(),
        f1.tolist(),
        f2.tolist(),
        p_out.tolist(),
        c_out.tolist(),
        p_lat.tolist(),
        c_lat.tolist(),
        p_pred.tolist(),
        c_pred.tolist(),
        c_err.tolist(),
        strict=True,
    ):
        agree = ("true" if pp == cp else "false") if po == 0 and co_ == 0 else "null"
        lines.append(
            f'{{"v":1,"shadow":"{SHADOW}","id":"req-{i:010d}","ts":{t:.3f},"segments":{buckets[co]},'
            f'"features":{features[(a, b)]},"primary":{_side(po, pl, pp, PRIMARY_ERROR)},'
            f'"candidate":{_side(co_, cl, cp, CANDIDATE_ERRORS[ce])},"agree":{agree},"abs_diff":null}}\n'
        )
    return lines


def generate(path: Path, count: int, seed: int = 7) -> None:
    """Write `count` pair records to `path` (numpy for the values, lines written in bulk)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for start in range(0, count, CHUNK):
            f.write("".join(_lines(rng, start, min(CHUNK, count - start), count)))


def records_file(count: int) -> Path:
    """The cached records file of `count` pairs, generated in a temp file on first use."""
    path = CACHE / f"pairs-{count}-v{GENERATOR_VERSION}.jsonl"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=CACHE, suffix=".tmp", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        try:
            started = time.perf_counter()
            generate(tmp_path, count)
            tmp_path.chmod(0o644)
            tmp_path.rename(path)
            print(f"generated {count:,} records in {time.perf_counter() - started:.1f}s: {path}", file=sys.stderr)
        finally:
            tmp_path.unlink(missing_ok=True)
    return path


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_ours(path: Path) -> dict:
    from shadow_operator.analysis.dataset import load
    from shadow_operator.analysis.stats import compute_slices

    started = time.perf_counter()
    dataset = load([path], SHADOW)
    slices = compute_slices(dataset, [SEGMENT], FEATURES, regression=False)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "pairs": dataset.pairs, "slices": len(slices), "problems": len(dataset.problems)}


REFERENCE_QUERY = """
SELECT segments['cohort'] AS cohort, CAST(floor(ts / 3600) % 24 AS INTEGER) AS hour, count(*) AS pairs,
       count_if("primary".outcome <> 'ok') / count(*) AS primary_error_rate,
       count_if(candidate.outcome <> 'ok') / count(*) AS candidate_error_rate,
       quantile_cont("primary".latency_ms, [0.5, 0.95, 0.99]) AS primary_latency,
       quantile_cont(candidate.latency_ms, [0.5, 0.95, 0.99]) AS candidate_latency,
       count_if(agree) / count(agree) AS agreement
FROM read_ndjson(?, columns = {
    'ts': 'DOUBLE', 'segments': 'MAP(VARCHAR, VARCHAR)',
    'primary': 'STRUCT(outcome VARCHAR, latency_ms DOUBLE)',
    'candidate': 'STRUCT(outcome VARCHAR, latency_ms DOUBLE)', 'agree': 'BOOLEAN'})
GROUP BY GROUPING SETS ((), (cohort), (hour), (cohort, hour))
"""


def child_duckdb(path: Path) -> dict:
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect()
    rows = con.execute(REFERENCE_QUERY, [str(path)]).fetchall()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "pairs": max(r[2] for r in rows), "slices": len(rows), "problems": 0}


def measure(kind: str, path: Path) -> dict:
    """Run one measurement in a fresh interpreter; its JSON answer includes its own peak RSS."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.analyze", "--child", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="numbers of pair records")
    parser.add_argument("--child", choices=("ours", "duckdb"), help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = (child_ours if args.child == "ours" else child_duckdb)(args.path)
        print(json.dumps({**result, "rss_mib": peak_rss_mib()}))
        return 0

    rows = []
    for size in args.sizes:
        path = records_file(size)
        ours, reference = measure("ours", path), measure("duckdb", path)
        if ours["pairs"] != size or reference["pairs"] != size:
            print(f"pair count mismatch at {size}: ours {ours['pairs']}, duckdb {reference['pairs']}", file=sys.stderr)
            return 1
        rows.append((size, ours, reference, path.stat().st_size / 2**20))

    print(f"\ncores: {os.cpu_count()}, segment buckets: {len(BUCKETS)}, slices per size: {rows[0][1]['slices']}")
    header = ("records", "file MiB", "ours s", "duckdb s", "ours/duckdb", "ours MiB", "duckdb MiB", "ours s/1M")
    print("  ".join(f"{h:>11}" for h in header))
    for size, ours, reference, file_mib in rows:
        cells = (
            f"{size:,}",
            f"{file_mib:.0f}",
            f"{ours['seconds']:.2f}",
            f"{reference['seconds']:.2f}",
            f"{ours['seconds'] / reference['seconds']:.2f}",
            f"{ours['rss_mib']:.0f}",
            f"{reference['rss_mib']:.0f}",
            f"{ours['seconds'] / size * 1e6:.2f}",
        )
        print("  ".join(f"{c:>11}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
