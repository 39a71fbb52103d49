"""`make bench-analyze`: the comparison job's analysis over 100k, 1M and 3M pair records.

Generates pair records with one segment dimension of 20 buckets (cached under
~/.cache/shadow-operator/bench-analyze, keyed by size), then, for each size and in the
same run, measures in fresh subprocesses (the file read once beforehand, so both find it in
the page cache; each measured `--repeat` times: the fastest time, the largest peak RSS):

  ours    `dataset.load` + `stats.compute_slices`: validates every line (line count, kinds,
          versions, shadow, future timestamps, duplicate ids), keeps a table of the pairs,
          then computes every slice
  duckdb  the reference: one plain DuckDB SQL statement over the same file (read_json, no
          table, no problem reporting) computing the same numbers: the whole period and each
          hour of day, for all and for each segment bucket; per role requests, errors, outcome
          counts, p50/p95/p99 latency, the latency histogram with the same bounds and the
          top-5 error texts; agreement and feature-missing rates. Like ours it reads `segments`
          and `features` as MAPs (every key, whatever the spec names); reading them as STRUCTs
          of the known names would be about 0.4 s per 1M records faster, which ours cannot do
          (its table keeps every key, and `load` does not know the names)

Before timing, the reference's numbers are checked against ours on the smallest size (every
slice, every field: an assertion), so the two compute the same thing. Prints wall time and
peak RSS of each, their ratio, our seconds per 1M records, and whether the targets are met, in
benchmarks/table.py's table.
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

from . import table

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
REPEAT = 3
# Targets at 1M records.
TARGET_SECONDS = 10.0
TARGET_MIB = 1024.0
TARGET_RATIO = 2.0
LINEAR_SLACK = 1.25  # s/1M at a larger size may exceed the 1M figure by this factor and still be linear

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


def warm(path: Path) -> None:
    """Read the file once so that every measurement finds it in the page cache."""
    with path.open("rb", buffering=0) as f:
        while f.read(1 << 23):
            pass


def child_ours(path: Path) -> dict:
    from shadow_operator.job.dataset import load
    from shadow_operator.job.stats import compute_slices

    started = time.perf_counter()
    dataset = load([path], SHADOW)
    slices = compute_slices(dataset, [SEGMENT], FEATURES, regression=False)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "pairs": dataset.pairs, "slices": len(slices), "problems": len(dataset.problems)}


# The reference, built from the same record format and latency buckets as ours (no code of the analysis).
REFERENCE_TOP_ERRORS = 5
REFERENCE_QUANTILES = (0.5, 0.95, 0.99)
REFERENCE_ROLES = ("primary", "candidate")


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reference_sql(segment: str = SEGMENT, features: list[str] = FEATURES) -> str:
    """One DuckDB statement over `read_json($1)` for shadow `$2`: a row per slice, every number ours has.

    `src` is the valid pair records of the shadow (read once, materialised in memory);
    `counts` (additive), `quantiles` and `failed` (failed answers by outcome and text) are
    GROUPING SETS over it, joined by slice: segment (`all` or `<segment>=<bucket>`) and hour
    (-1 for the whole period).
    """
    from shadow_operator.contract.metric_names import LATENCY_BUCKETS
    from shadow_operator.contract.records import MISSING_SEGMENT, OK, RECORD_VERSION

    bounds = [round(b * 1000, 6) for b in LATENCY_BUCKETS]
    side = "STRUCT(outcome VARCHAR, latency_ms DOUBLE, error VARCHAR)"
    columns = {
        "v": "BIGINT",
        "shadow": "VARCHAR",
        "id": "VARCHAR",
        "ts": "DOUBLE",
        "role": "VARCHAR",
        "segments": "MAP(VARCHAR, VARCHAR)",
        "features": "MAP(VARCHAR, BOOLEAN)",
        "primary": side,
        "candidate": side,
        "agree": "BOOLEAN",
    }
    sides = ", ".join(
        f'"{role}".{name} AS {role}_{name}' for role in REFERENCE_ROLES for name in ("outcome", "latency_ms", "error")
    )
    src = (
        f"SELECT CAST(((floor(ts / 3600) % 24) + 24) % 24 AS INTEGER) AS hour, "
        f"coalesce(segments[{_q(segment)}], {_q(MISSING_SEGMENT)}) AS bucket, features, agree, {sides} "
        f"FROM read_json($1, format = 'newline_delimited', ignore_errors = true, columns = {columns!r}) "
        f"WHERE v = {RECORD_VERSION} AND shadow = $2 AND id IS NOT NULL AND isfinite(ts) AND role IS NULL "
        f'AND "primary".outcome IS NOT NULL AND candidate.outcome IS NOT NULL AND ts <= epoch(now()) + 300'
    )
    slice_ = (
        f"CASE WHEN GROUPING(bucket) = 0 THEN {_q(segment + '=')} || bucket ELSE 'all' END AS segment, "
        "CASE WHEN GROUPING(hour) = 0 THEN hour ELSE -1 END AS hour"
    )

    def sets(extra: str = "") -> str:
        p = f"{extra}, " if extra else ""
        return f"GROUPING SETS (({extra}), ({p}hour), ({p}bucket), ({p}bucket, hour))"

    counts = ["count(*) AS pairs"]
    for role in REFERENCE_ROLES:
        latency = f"{role}_latency_ms"
        counts += [
            f"count_if({role}_outcome <> '{OK}') AS {role}_errors",
            f"count_if({role}_outcome = '{OK}') AS {role}_ok",
        ]
        for i, (low, high) in enumerate(zip([None, *bounds], [*bounds, None], strict=True)):
            cond = " AND ".join(
                [*([f"{latency} > {low!r}"] if low is not None else []), *([f"{latency} <= {high!r}"] if high else [])]
            )
            counts.append(f"count_if({cond}) AS {role}_h{i}")
    counts += ["count(agree) AS comparable", "count_if(agree) AS agreed"]
    counts += [f"count_if(features[{_q(path)}] = false) AS missing_{j}" for j, path in enumerate(features)]
    quantiles = [
        f"quantile_cont({role}_latency_ms, {list(REFERENCE_QUANTILES)}) AS {role}_latency" for role in REFERENCE_ROLES
    ]
    failed = " UNION ALL ".join(
        f"SELECT hour, bucket, '{role}' AS role, {role}_outcome AS outcome, "
        f"coalesce(nullif({role}_error, ''), {role}_outcome) AS text FROM src WHERE {role}_outcome <> '{OK}'"
        for role in REFERENCE_ROLES
    )
    per_role, joins = [], []
    for role in REFERENCE_ROLES:
        per_role += [
            f"{role}_errors / pairs AS {role}_error_rate",
            f"{role}_o.outcomes AS {role}_outcomes",
            f"{role}_t.top AS {role}_top",
        ]
        joins += [
            f"LEFT JOIN (SELECT * FROM outcome_lists WHERE role = '{role}') {role}_o USING (segment, hour)",
            f"LEFT JOIN (SELECT * FROM text_lists WHERE role = '{role}') {role}_t USING (segment, hour)",
        ]
    rates = [f"missing_{j} / pairs AS missing_rate_{j}" for j in range(len(features))]
    return (
        f"WITH src AS MATERIALIZED ({src}), "
        f"counts AS (SELECT {slice_}, {', '.join(counts)} FROM src GROUP BY {sets()}), "
        f"quantiles AS (SELECT {slice_}, {', '.join(quantiles)} FROM src GROUP BY {sets()}), "
        f"failed AS (SELECT {slice_}, role, outcome, text, count(*) AS n FROM ({failed}) "
        f"GROUP BY {sets('role, outcome, text')}), "
        "outcome_lists AS (SELECT segment, hour, role, list({'outcome': outcome, 'n': n} ORDER BY outcome) AS outcomes "
        "FROM (SELECT segment, hour, role, outcome, sum(n)::BIGINT AS n FROM failed GROUP BY ALL) GROUP BY ALL), "
        "text_lists AS (SELECT segment, hour, role, "
        f"list({{'text': text, 'n': n}} ORDER BY n DESC, text)[1:{REFERENCE_TOP_ERRORS}] AS top "
        "FROM (SELECT segment, hour, role, text, sum(n)::BIGINT AS n FROM failed GROUP BY ALL) GROUP BY ALL) "
        f"SELECT *, CASE WHEN comparable > 0 THEN agreed / comparable END AS agreement, {', '.join(per_role + rates)} "
        f"FROM counts JOIN quantiles USING (segment, hour) {' '.join(joins)}"
    )


def run_reference(path: Path) -> list[dict]:
    import duckdb

    con = duckdb.connect()
    cursor = con.execute(reference_sql(), [str(path), SHADOW])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def child_duckdb(path: Path) -> dict:
    started = time.perf_counter()
    rows = run_reference(path)
    seconds = time.perf_counter() - started
    pairs = next(r["pairs"] for r in rows if r["segment"] == "all" and r["hour"] == -1)
    return {"seconds": seconds, "pairs": pairs, "slices": len(rows), "problems": 0}


def reference_slice(row: dict) -> dict:
    """A reference row in the shape of our SliceStats.model_dump() (a reshaping: every number is the SQL's)."""
    from shadow_operator.contract.metric_names import LATENCY_BUCKETS
    from shadow_operator.contract.records import OK, OUTCOMES

    bounds = [*(round(b * 1000, 6) for b in LATENCY_BUCKETS), 1e308]

    def side(role: str) -> dict:
        latency = row[f"{role}_latency"]
        outcomes = {**dict.fromkeys(OUTCOMES, 0), OK: row[f"{role}_ok"]}
        outcomes.update({o["outcome"]: o["n"] for o in row[f"{role}_outcomes"] or []})
        return {
            "requests": row["pairs"],
            "errors": row[f"{role}_errors"],
            "error_rate": row[f"{role}_error_rate"],
            "outcomes": outcomes,
            "top_errors": [{"text": t["text"], "count": t["n"]} for t in row[f"{role}_top"] or []],
            "latency_ms": dict(zip(("p50", "p95", "p99"), latency, strict=True)) if latency else None,
            "latency_histogram": [{"le_ms": b, "count": row[f"{role}_h{i}"]} for i, b in enumerate(bounds)],
        }

    return {
        "segment": row["segment"],
        "hour": None if row["hour"] == -1 else row["hour"],
        "source": "records",
        "pairs": row["pairs"],
        "primary": side("primary"),
        "candidate": side("candidate"),
        "agreement": row["agreement"],
        "comparable": row["comparable"],
        "abs_diff_mean": None,
        "abs_diff_p95": None,
        "feature_missing": {path: row[f"missing_rate_{j}"] for j, path in enumerate(FEATURES)},
    }


def child_verify(path: Path) -> dict:
    """Assert that the reference computes exactly our numbers: same slices, every field of each equal."""
    from shadow_operator.job.dataset import load
    from shadow_operator.job.stats import compute_slices

    with load([path], SHADOW) as dataset:
        ours = {(s.segment, s.hour): s.model_dump() for s in compute_slices(dataset, [SEGMENT], FEATURES, False)}
    reference = {(r["segment"], r["hour"]): r for r in map(reference_slice, run_reference(path))}
    assert ours.keys() == reference.keys(), f"slices differ: {sorted(ours.keys() ^ reference.keys(), key=str)[:5]}"
    for key, mine in ours.items():
        assert mine == reference[key], f"slice {key}: ours {mine} != reference {reference[key]}"
    checked = [("all", None), (f"{SEGMENT}={BUCKETS[0]}", None), ("all", 0), (f"{SEGMENT}={BUCKETS[-1]}", 23)]
    assert all(key in ours for key in checked)
    errors = sum(len(s["primary"]["top_errors"]) + len(s["candidate"]["top_errors"]) for s in ours.values())
    return {"slices": len(ours), "top_errors": errors, "pairs": ours[("all", None)]["pairs"]}


def measure(kind: str, path: Path) -> dict:
    """Run one measurement in a fresh interpreter; its JSON answer includes its own peak RSS."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.analyze", "--child", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def best_of(kind: str, path: Path, repeat: int) -> dict:
    runs = [measure(kind, path) for _ in range(repeat)]
    return {**min(runs, key=lambda r: r["seconds"]), "rss_mib": max(r["rss_mib"] for r in runs)}


def sizes_table(rows: list[tuple[int, dict, dict, float]], repeat: int) -> table.Table:
    """One section per size: time and memory beside DuckDB's; the targets are judged at 1M records,
    and time per record must stay flat from 1M up (within LINEAR_SLACK)."""
    t = table.Table(f"Analysis of pair records, best of {repeat}", reference="DuckDB")
    per_m_at_1m = next((o["seconds"] / size * 1e6 for size, o, _, _ in rows if size == 1_000_000), None)
    for size, ours, reference, file_mib in rows:
        judged = size == 1_000_000
        t.section(f"{size:,} records ({file_mib:.0f} MiB, {ours['slices']} slices)")
        t.row("time", ours["seconds"], "s", ref=reference["seconds"], target=f"≤ {TARGET_RATIO:g}x" if judged else "")
        if judged:
            t.row("time", ours["seconds"], "s", target=f"< {TARGET_SECONDS:g} s")
        t.row("peak RSS", ours["rss_mib"], "MiB", ref=reference["rss_mib"],
              target=f"< {TARGET_MIB:.0f} MiB" if judged else "")  # fmt: skip
        per_m = ours["seconds"] / size * 1e6
        if size > 1_000_000 and per_m_at_1m:
            t.row("time per 1M records", per_m, "s", ref=per_m_at_1m, ref_name="at 1M",
                  target=f"≤ {LINEAR_SLACK:g}x")  # fmt: skip
    if per_m_at_1m is None:
        t.note("targets are set at 1,000,000 records: run with that size to judge them")
    t.note(f"cores: {os.cpu_count()}, segment buckets: {len(BUCKETS)}")
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="numbers of pair records")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="measurements of each side per size")
    parser.add_argument(
        "--week-records",
        type=int,
        default=10_000_000,
        help="incremental analysis: pair records over a week, delivered in 10-minute increments (0: skip)",
    )
    parser.add_argument(
        "--week-increments", type=int, default=1008, help="runs the week is delivered in (1008: every 10 minutes)"
    )
    parser.add_argument(
        "--full-records", type=int, default=1_000_000, help="full recomputation beside DuckDB at this size (0: skip)"
    )
    parser.add_argument("--skip-sizes", action="store_true", help="only the incremental part")
    table.add_arguments(parser)
    parser.add_argument("--child", choices=("ours", "duckdb", "verify", "aggregates", "parts"), help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from . import analyze_incremental as incremental

        child = {
            "ours": child_ours,
            "duckdb": child_duckdb,
            "verify": child_verify,
            "aggregates": incremental.child_aggregates,
            "parts": incremental.child_parts,
        }[args.child]
        print(json.dumps({**child(args.path), "rss_mib": peak_rss_mib()}))
        return 0

    if args.skip_sizes:
        from . import analyze_incremental as incremental

        return incremental.main(args.week_records, args.full_records, args.repeat, args.week_increments)
    sizes = sorted(args.sizes)
    checked = measure("verify", records_file(sizes[0]))
    print(
        f"reference checked against ours at {sizes[0]:,} records: {checked['slices']} slices equal in every field "
        f"({checked['top_errors']} top error texts among them)",
        file=sys.stderr,
    )
    rows = []
    for size in sizes:
        path = records_file(size)
        warm(path)
        ours, reference = best_of("ours", path, args.repeat), best_of("duckdb", path, args.repeat)
        if ours["pairs"] != size or reference["pairs"] != size or ours["slices"] != reference["slices"]:
            print(f"mismatch at {size}: ours {ours}, duckdb {reference}", file=sys.stderr)
            return 1
        rows.append((size, ours, reference, path.stat().st_size / 2**20))

    sizes_table(rows, args.repeat).print()
    from . import analyze_incremental as incremental

    return incremental.main(args.week_records, args.full_records, args.repeat, args.week_increments)


if __name__ == "__main__":
    sys.exit(main())
