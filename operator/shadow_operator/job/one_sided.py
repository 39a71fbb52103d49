"""Join one-sided records (a recorder's, one per model) into pairs by request id, and count what does not pair.

The two sides of a joined pair are compared in SQL as records.compare compares them in the
router; the problems joining finds are repeated answers, answers without their other side and
sides too far apart in time.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..contract.records import OK, ROLES
from ..contract.report import CLOCK_SKEW, CORRUPT_RECORD, UNPAIRED_RECORD, DataProblem
from .pairs import SIDE_COLUMNS
from .record_sql import FUTURE_TOLERANCE_SECONDS, Kind

PAIR_SKEW_SECONDS = 60.0  # the two sides of a one-sided join further apart are clock skew


def compare_sql(regression: bool) -> tuple[str, str]:
    """(agree, abs_diff) of two joined sides, as records.compare computes them: two JSON arrays (a batch
    answered with a list) element by element, judged by the worst element."""
    p, c = "primary_prediction", "candidate_prediction"
    both = f"primary_outcome = '{OK}' AND candidate_outcome = '{OK}' AND {p} IS NOT NULL AND {c} IS NOT NULL"
    arrays = f"json_type({p}) = 'ARRAY' AND json_type({c}) = 'ARRAY'"
    length = f"json_array_length({p})"
    same_length = f"{length} = json_array_length({c})"
    # The elements' 0-based indexes: json_extract(x, i) is the i-th element.
    indexes = f"range(CAST({length} AS BIGINT))"
    if regression:
        scalar = (
            f"abs(TRY_CAST(json_extract_string({p}, '$') AS DOUBLE) "
            f"- TRY_CAST(json_extract_string({c}, '$') AS DOUBLE))"
        )
        diffs = (
            f"list_transform({indexes}, lambda i: abs(TRY_CAST(json_extract_string({p}, i) AS DOUBLE) "
            f"- TRY_CAST(json_extract_string({c}, i) AS DOUBLE)))"
        )
        # The largest difference; none when an element is not a number (list_count skips NULLs).
        batch = (
            f"CASE WHEN {same_length} AND {length} > 0 AND list_count({diffs}) = {length} THEN list_max({diffs}) END"
        )
        return "CAST(NULL AS BOOLEAN)", f"CASE WHEN {both} THEN CASE WHEN {arrays} THEN {batch} ELSE {scalar} END END"

    def same(a: str, b: str) -> str:
        numbers = "('UBIGINT', 'BIGINT', 'DOUBLE')"
        return (
            f"CASE WHEN json_type({a}) IN {numbers} AND json_type({b}) IN {numbers} "
            f"THEN CAST({a} AS DOUBLE) = CAST({b} AS DOUBLE) "
            f"ELSE CAST({a} AS VARCHAR) = CAST({b} AS VARCHAR) END"
        )

    elements = f"list_transform({indexes}, lambda i: {same(f'json_extract({p}, i)', f'json_extract({c}, i)')})"
    batch = f"{same_length} AND coalesce(list_bool_and({elements}), true)"
    agree = f"CASE WHEN {both} THEN CASE WHEN {arrays} THEN {batch} ELSE {same(p, c)} END END"
    return agree, "CAST(NULL AS DOUBLE)"


def join_one_sided(
    con: duckdb.DuckDBPyConnection, now: float, regression: bool, files: list[Path]
) -> list[DataProblem]:
    """Join one-sided records by id (a hash join) into the table `_joined`; count duplicates, unpaired and skew."""
    p, c = ROLES
    problems = []
    ones = f"kind = '{Kind.ONE_SIDED}'"
    duplicates = con.execute(f"SELECT count(*) - count(DISTINCT (id, role)) FROM _records WHERE {ones}").fetchone()[0]
    if duplicates:  # keep the earliest answer of each role to a request
        con.execute(
            f"UPDATE _records SET kind = '{Kind.DUPLICATE}' WHERE rowid IN (SELECT rowid FROM _records WHERE {ones} "
            "QUALIFY row_number() OVER (PARTITION BY id, role ORDER BY ts, file_idx) > 1)"
        )
        problems.append(
            DataProblem(
                code=CORRUPT_RECORD,
                count=duplicates,
                message=f"{duplicates} one-sided records repeat a request id and role already seen; "
                "only the earliest of each was kept",
            )
        )
    agree, abs_diff = compare_sql(regression)
    primary_columns = ", ".join(f"{p}_{name}" for name in SIDE_COLUMNS)
    candidate_columns = ", ".join(f"{c}_{name}" for name in SIDE_COLUMNS)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _joined AS SELECT id, ts, hour, "
        "CASE WHEN cardinality(c_segments) = 0 THEN segments ELSE map_concat(c_segments, segments) END AS segments, "
        "CASE WHEN cardinality(c_features) = 0 THEN features ELSE map_concat(c_features, features) END AS features, "
        f"{primary_columns}, {candidate_columns}, {agree} AS agree, {abs_diff} AS abs_diff, "
        f"CASE WHEN ts > {now + FUTURE_TOLERANCE_SECONDS!r} THEN '{Kind.FUTURE}' ELSE '{Kind.PAIR}' END AS kind, "
        "abs(ts - c_ts) AS skew, file_idx "
        f"FROM (SELECT id, ts, hour, segments, features, {primary_columns}, file_idx FROM _records "
        f"WHERE {ones} AND role = '{p}') "
        f"JOIN (SELECT id, ts AS c_ts, segments AS c_segments, features AS c_features, {candidate_columns} "
        f"FROM _records WHERE {ones} AND role = '{c}') USING (id)"
    )
    kept, joined = con.execute(
        f"SELECT (SELECT count(*) FROM _records WHERE {ones}), (SELECT count(*) FROM _joined)"
    ).fetchone()
    unpaired = kept - 2 * joined
    if unpaired:
        lonely = f"{ones} AND id NOT IN (SELECT id FROM _joined)"
        example_id, role, file_idx = con.execute(
            f"SELECT id, role, file_idx FROM _records WHERE {lonely} ORDER BY id LIMIT 1"
        ).fetchone()
        primary_only = con.execute(f"SELECT count(*) FROM _records WHERE {lonely} AND role = '{p}'").fetchone()[0]
        other = p if role == c else c
        # Istio mirrors mirrorPercent of the requests the primary's recorder sees, of the methods and
        # paths traffic.mirrorMethods and traffic.match select: the rest are primary answers without
        # a candidate answer by design, not lost records.
        split = (
            f"{primary_only} {p} answers without a {c} answer (expected for requests not mirrored: "
            f"outside mirrorPercent, mirrorMethods or match) and {unpaired - primary_only} {c} answers "
            f"without a {p} answer"
        )
        problems.append(
            DataProblem(
                code=UNPAIRED_RECORD,
                count=unpaired,
                message=f"{unpaired} one-sided records have no other side: {split}; e.g. the {role} answer "
                f"to id {example_id!r} in {files[file_idx]} has no {other} answer",
            )
        )
    skewed, example = con.execute(
        f"SELECT count(*), arg_max(id, skew) FROM _joined WHERE kind = '{Kind.PAIR}' AND skew > {PAIR_SKEW_SECONDS!r}"
    ).fetchone()
    if skewed:
        problems.append(
            DataProblem(
                code=CLOCK_SKEW,
                count=skewed,
                message=f"{skewed} pairs joined from one-sided records have sides more than "
                f"{PAIR_SKEW_SECONDS:g}s apart (kept), e.g. id {example!r}",
            )
        )
    return problems
