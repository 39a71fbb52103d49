"""Per-slice statistics of a loaded Dataset: three GROUP BY GROUPING SETS queries, whatever the slice count.

Slices: `all` and every `<segment name>=<bucket>` in the data, each over the whole period
(hour None) and per hour of day (UTC, 0-23). A record without a value for a segment counts in
its `missing` bucket, as the router writes it.

The queries: counts (requests, errors, ok answers, latency histogram, agreement, missing
features: all additive, one pass); quantiles (holistic); and, over the failed answers only,
the count of each failed outcome and the top error texts. Quantiles and histogram() are kept
out of the counts query on purpose: beside them DuckDB plans one aggregate per grouping set
(histogram() becomes a join), each evaluating every filter again, about 4x slower at 1M
records (0.86 s against 0.21 s + 0.15 s for counts and quantiles apart).
"""

from __future__ import annotations

from typing import Any

from ..contract.metric_names import ALL_SEGMENTS, LATENCY_BUCKETS, segment_label
from ..contract.records import MISSING_SEGMENT, OK, OUTCOMES, ROLES
from ..contract.report import ErrorText, HistogramBucket, Latency, LatencyBounds, SideStats, SliceStats
from .intervals import LATENCY_LEVELS, UNBOUNDED_MS, exact_quantile_ranks
from .pairs import Dataset

TOP_ERRORS = 5
INFINITY_MS = 1e308  # the last histogram bucket's bound, as JSON can carry it
BOUNDS_MS = (*(round(b * 1000, 6) for b in LATENCY_BUCKETS), INFINITY_MS)
QUANTILES = (0.5, 0.95, 0.99)

SliceKey = tuple[str, int | None]  # (segment label, hour)


def slice_query(dataset: Dataset, segment_names: list[str], feature_paths: list[str]) -> tuple:
    """What every per-slice query starts from: the names without repeats, the connection, the
    segment columns, the base table with them, and the GROUPING/keys clauses over hour and segments."""
    segment_names = list(dict.fromkeys(segment_names))
    feature_paths = list(dict.fromkeys(feature_paths))
    segs = [f"seg_{i}" for i in range(len(segment_names))]
    grouping = ", ".join(f"GROUPING({c}) AS g_{c}" for c in ("hour", *segs))
    keys = ", ".join(("hour", *segs))
    return segment_names, feature_paths, dataset.con, segs, _base(dataset.table, segment_names), grouping, keys


def compute_slices(
    dataset: Dataset, segment_names: list[str], feature_paths: list[str], regression: bool
) -> list[SliceStats]:
    """Stats of every slice present in the data: `all` first, then segments in the order given; whole period first."""
    segment_names, feature_paths, con, segs, base, grouping, keys = slice_query(dataset, segment_names, feature_paths)
    sets = grouping_sets(segs)

    def by_slice(rows: list[dict[str, Any]]) -> dict[SliceKey, dict[str, Any]]:
        return {slice_key(row, segment_names): row for row in rows}

    counts = fetch_rows(
        con,
        f"SELECT {grouping}, {keys}, {', '.join(count_aggregates(feature_paths, regression))} "
        f"FROM ({base}) GROUP BY GROUPING SETS ({sets})",
    )
    quantiles = [f"quantile_cont({role}_latency_ms, {list(QUANTILES)}) AS {role}_latency" for role in ROLES]
    if regression:
        quantiles.append("quantile_cont(abs_diff, 0.95) AS diff_p95")
    holistic = by_slice(
        fetch_rows(
            con, f"SELECT {grouping}, {keys}, {', '.join(quantiles)} FROM ({base}) GROUP BY GROUPING SETS ({sets})"
        )
    )
    outcomes, top_errors = _failures(con, base, segs, segment_names)
    bounds = _latency_bounds(con, base, segs, segment_names)

    slices = []
    for row in counts:
        key = slice_key(row, segment_names)
        row.update(holistic.get(key, {}))
        sides = {
            role: _side(row, role, outcomes.get((*key, role), {}), top_errors.get((*key, role), [])).model_copy(
                update={"latency_bounds": bounds.get((*key, role), [])}
            )
            for role in ROLES
        }
        comparable = row["comparable"]
        pairs = row["pairs"]
        slices.append(
            SliceStats(
                segment=key[0],
                hour=key[1],
                pairs=pairs,
                primary=sides[ROLES[0]],
                candidate=sides[ROLES[1]],
                comparable=comparable,
                agreement=None if regression or not comparable else row["agreed"] / comparable,
                abs_diff_mean=row["diff_mean"] if regression else None,
                abs_diff_p95=row.get("diff_p95") if regression else None,
                feature_missing={path: row[f"missing_{j}"] / pairs for j, path in enumerate(feature_paths)}
                if pairs
                else {},
            )
        )
    return in_report_order(slices, segment_names)


def in_report_order(slices: list[SliceStats], segment_names: list[str]) -> list[SliceStats]:
    """Whole period before hours, then by hour; in each, `all` first, then segments as configured."""
    order = {name: i for i, name in enumerate(segment_names)}

    def sort_key(s: SliceStats) -> tuple:
        name, _, bucket = s.segment.partition("=")
        rank = -1 if s.segment == ALL_SEGMENTS else order.get(name, len(order))
        return (s.hour is not None, s.hour or 0, rank, bucket)

    return sorted(slices, key=sort_key)


def count_aggregates(feature_paths: list[str], regression: bool) -> list[str]:
    """The additive aggregates of a slice: one pass, every filter evaluated once per row."""
    aggregates = ["count(*) AS pairs"]
    for role in ROLES:
        outcome, latency = f"{role}_outcome", f"{role}_latency_ms"
        aggregates += [
            f"count(*) FILTER (WHERE {outcome} IS DISTINCT FROM '{OK}') AS {role}_errors",
            f"count(*) FILTER (WHERE {outcome} = '{OK}') AS {role}_ok",
        ]
        lower = None
        for i, upper in enumerate(BOUNDS_MS):
            cond = [f"{latency} > {lower!r}"] if lower is not None else []
            cond += [f"{latency} <= {upper!r}"] if upper != INFINITY_MS else []
            where = " AND ".join(cond) if cond else f"{latency} IS NOT NULL"
            aggregates.append(f"count(*) FILTER (WHERE {where}) AS {role}_h{i}")
            lower = upper
    if regression:
        aggregates += ["count(abs_diff) AS comparable", "avg(abs_diff) AS diff_mean"]
    else:
        aggregates += ["count(agree) AS comparable", "count(*) FILTER (WHERE agree) AS agreed"]
    aggregates += [
        f"count(*) FILTER (WHERE map_extract(features, {_quote(path)})[1] = false) AS missing_{j}"
        for j, path in enumerate(feature_paths)
    ]
    return aggregates


def _failures(
    con: Any, base: str, segs: list[str], segment_names: list[str]
) -> tuple[dict[tuple[str, int | None, str], dict[str, int]], dict[tuple[str, int | None, str], list[ErrorText]]]:
    """Per slice and role: counts of each failed outcome, and the TOP_ERRORS most frequent error texts.

    One scan of the failed answers only, grouped by (role, outcome, text); outcome counts and
    text counts are both sums over that small result.
    """
    keys = ", ".join(("hour", *segs))
    grouping = ", ".join(f"GROUPING({c}) AS g_{c}" for c in ("hour", *segs))
    slice_columns = ", ".join((*(f"g_{c}" for c in ("hour", *segs)), keys))
    failed = " UNION ALL ".join(
        f"SELECT {keys}, '{role}' AS role, {role}_outcome AS outcome, "
        f"coalesce(nullif({role}_error, ''), {role}_outcome) AS text "
        f"FROM ({base}) WHERE {role}_outcome IS DISTINCT FROM '{OK}'"
        for role in ROLES
    )
    rows = fetch_rows(
        con,
        f"WITH failed AS (SELECT {grouping}, {keys}, role, outcome, text, count(*) AS n FROM ({failed}) "
        f"GROUP BY GROUPING SETS ({grouping_sets(segs, extra='role, outcome, text')})) "
        f"SELECT {slice_columns}, role, 'outcome' AS what, outcome AS value, sum(n)::BIGINT AS n FROM failed "
        f"WHERE outcome IS NOT NULL GROUP BY ALL "
        f"UNION ALL SELECT * FROM (SELECT {slice_columns}, role, 'text' AS what, text AS value, sum(n)::BIGINT AS n "
        f"FROM failed GROUP BY ALL) "
        f"QUALIFY row_number() OVER (PARTITION BY {slice_columns}, role ORDER BY n DESC, value) <= {TOP_ERRORS}",
    )
    outcomes: dict[tuple[str, int | None, str], dict[str, int]] = {}
    top_errors: dict[tuple[str, int | None, str], list[ErrorText]] = {}
    for row in sorted(rows, key=lambda r: (-r["n"], r["value"] or "")):
        key = (*slice_key(row, segment_names), row["role"])
        if row["what"] == "text":
            top_errors.setdefault(key, []).append(ErrorText(text=str(row["value"]), count=row["n"]))
        else:
            outcomes.setdefault(key, {})[str(row["value"])] = row["n"]
    return outcomes, top_errors


def _latency_bounds(
    con: Any, base: str, segs: list[str], segment_names: list[str]
) -> dict[tuple[str, int | None, str], list[LatencyBounds]]:
    """Per whole-period slice and role: order-statistic bounds of p50/p95/p99 at every level of LATENCY_LEVELS.

    The ranks depend on each slice's count n (intervals.exact_quantile_ranks, from the binomial
    distribution: its normal approximation undercovers p99 on a few hundred requests), so
    quantile_disc with constant levels cannot give them: each slice's latencies are sorted once
    (list_sort of list(), the same materialisation quantile_cont does) into a temporary table,
    the counts read, the ranks computed here and their values looked up. Only whole-period
    slices: latency is not judged per hour of day.
    """
    sets = ", ".join(["()", *(f"({seg})" for seg in segs)])
    grouping = ", ".join(["0 AS g_hour", "NULL AS hour", *(f"GROUPING({seg}) AS g_{seg}" for seg in segs)])
    keys = "".join(f", {seg}" for seg in segs)
    lists = ", ".join(
        f"list_sort(list({role}_latency_ms) FILTER (WHERE {role}_latency_ms IS NOT NULL)) AS {role}_sorted"
        for role in ROLES
    )
    table = "latency_sorted"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT row_number() OVER () AS id, * FROM ("
        f"SELECT {grouping}{keys}, {lists} FROM ({base}) GROUP BY GROUPING SETS ({sets}))"
    )
    try:
        counts = fetch_rows(
            con,
            f"SELECT id, g_hour, hour{''.join(f', g_{seg}' for seg in segs)}{keys}, "
            + ", ".join(f"len({role}_sorted) AS {role}_n" for role in ROLES)
            + f" FROM {table}",
        )
        wanted: dict[tuple[int, str], dict[tuple[int, int], tuple[int, int]]] = {}
        lookups = []
        for row in counts:
            for role in ROLES:
                n = row[f"{role}_n"] or 0
                if n <= 0:
                    continue
                ranks = {
                    (i, j): exact_quantile_ranks(n, p, level)
                    for i, level in enumerate(LATENCY_LEVELS)
                    for j, p in enumerate(QUANTILES)
                }
                wanted[(row["id"], role)] = ranks
                valid = sorted({r for pair in ranks.values() for r in pair if 1 <= r <= n})
                values = ", ".join(f"{role}_sorted[{r}]" for r in valid)
                lookups.append(
                    f"SELECT {row['id']} AS id, '{role}' AS role, {valid} AS ranks, [{values}] AS v_list "
                    f"FROM {table} WHERE id = {row['id']}"
                )
        found = {
            (r["id"], r["role"]): dict(zip(r["ranks"], r["v_list"], strict=True)) for r in _fetch_all(con, lookups)
        }
    finally:
        con.execute(f"DROP TABLE IF EXISTS {table}")

    result: dict[tuple[str, int | None, str], list[LatencyBounds]] = {}
    for row in counts:
        key = slice_key(row, segment_names)
        for role in ROLES:
            ranks = wanted.get((row["id"], role))
            if ranks is None:
                continue
            values = found[(row["id"], role)]

            def bound(i: int, which: int, values=values, ranks=ranks) -> Latency:
                default = 0.0 if which == 0 else UNBOUNDED_MS
                return Latency(
                    **{f"p{round(p * 100)}": values.get(ranks[(i, j)][which], default) for j, p in enumerate(QUANTILES)}
                )

            result[(*key, role)] = [
                LatencyBounds(confidence=level, low=bound(i, 0), high=bound(i, 1))
                for i, level in enumerate(LATENCY_LEVELS)
            ]
    return result


def _fetch_all(con: Any, selects: list[str]) -> list[dict[str, Any]]:
    """Rows of several SELECTs of the same columns, in one statement."""
    return fetch_rows(con, " UNION ALL ".join(selects)) if selects else []


def _base(table: str, segment_names: list[str]) -> str:
    segs = "".join(
        f", coalesce(map_extract(segments, {_quote(name)})[1], '{MISSING_SEGMENT}') AS seg_{i}"
        for i, name in enumerate(segment_names)
    )
    return f"SELECT *{segs} FROM {table}"


def grouping_sets(segs: list[str], extra: str = "") -> str:
    """The GROUPING SETS of every slice (`all`, each segment; whole period and per hour), each also by `extra`."""
    prefix = f"{extra}, " if extra else ""
    sets = [f"({extra})", f"({prefix}hour)"]
    for seg in segs:
        sets += [f"({prefix}{seg})", f"({prefix}{seg}, hour)"]
    return ", ".join(sets)


def fetch_rows(con: Any, sql: str) -> list[dict[str, Any]]:
    """The rows of one query, each a dict by column name."""
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def slice_key(row: dict[str, Any], segment_names: list[str]) -> SliceKey:
    """The slice a GROUPING SETS row belongs to: (segment label, hour), hour None for the whole period."""
    hour = None if row["g_hour"] else row["hour"]
    for i, name in enumerate(segment_names):
        if not row[f"g_seg_{i}"]:
            return segment_label(name, row[f"seg_{i}"]), hour
    return ALL_SEGMENTS, hour


def _side(row: dict[str, Any], role: str, failed: dict[str, int], top_errors: list[ErrorText]) -> SideStats:
    requests, errors = row["pairs"], row[f"{role}_errors"]
    outcomes = dict.fromkeys(OUTCOMES, 0)
    outcomes[OK] = row[f"{role}_ok"]
    outcomes.update(sorted(failed.items()))  # unknown outcomes after the known ones, by name
    quantiles = row.get(f"{role}_latency")
    return SideStats(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else None,
        outcomes=outcomes,
        top_errors=top_errors,
        latency_ms=Latency(p50=quantiles[0], p95=quantiles[1], p99=quantiles[2]) if quantiles else None,
        latency_histogram=[
            HistogramBucket(le_ms=bound, count=row[f"{role}_h{i}"]) for i, bound in enumerate(BOUNDS_MS)
        ],
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
