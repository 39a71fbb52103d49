"""Loading record files: pairs, one-sided joins, and every kind of bad input counted, never raised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shadow_operator.contract.records import BASELINE, COMPARED
from shadow_operator.contract.report import CLOCK_SKEW, CORRUPT_RECORD, FOREIGN_RECORD, UNPAIRED_RECORD
from shadow_operator.job.dataset import load
from shadow_operator.job.pairs import COLUMNS, TABLE

from .records_factory import NOW, SHADOW, at, counts_by_code, one, pair, side, write


def rows(dataset, columns: str = "*") -> list[dict]:
    cursor = dataset.con.execute(f"SELECT {columns} FROM {TABLE} ORDER BY id")
    names = [d[0] for d in cursor.description]
    return [{k: as_dict(v) if k in MAPS else v for k, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


MAPS = {"segments", "features"}


def as_dict(value):
    """A DuckDB MAP as Python gets it: a dict, or {"key": [...], "value": [...]} before DuckDB 1.1."""
    if isinstance(value, dict) and set(value) == {"key", "value"} and isinstance(value["key"], list):
        return dict(zip(value["key"], value["value"], strict=True))
    return value


def test_pair_records_go_straight_in_with_every_column(tmp_path: Path):
    write(
        tmp_path / "a.jsonl",
        [
            pair(
                "r1",
                ts=at(13, 30),
                segments={"history": "<1"},
                features={"$.features.purchase_count": False},
                primary=side(latency_ms=12.5, prediction=1),
                candidate=side("http_5xx", latency_ms=3.1, error="KeyError: 'purchase_history'"),
            ),
            pair("r2", ts=at(23, 59, 59), primary=side(prediction="yes"), candidate=side(prediction="yes")),
            pair("r3", ts=at(0, day=1), primary=side(prediction={"k": [1, 2]}), candidate=side(prediction=2)),
        ],
    )

    dataset = load([tmp_path / "a.jsonl"], SHADOW, now=NOW)

    assert dataset.problems == []
    assert (dataset.pairs, dataset.total_lines) == (3, 3)
    r1, r2, r3 = rows(dataset)
    assert set(r1) == set(COLUMNS)
    assert r1 == {
        "id": "r1",
        "ts": at(13, 30),
        "hour": 13,
        "segments": {"history": "<1"},
        "features": {"$.features.purchase_count": False},
        "primary_outcome": "ok",
        "primary_status": 200,
        "primary_latency_ms": 12.5,
        "primary_prediction": "1",
        "primary_error": None,
        "candidate_outcome": "http_5xx",
        "candidate_status": 500,
        "candidate_latency_ms": 3.1,
        "candidate_prediction": None,
        "candidate_error": "KeyError: 'purchase_history'",
        "agree": None,
        "abs_diff": None,
    }
    assert (r2["hour"], r2["primary_prediction"], r2["agree"], r2["segments"], r2["features"]) == (
        23,
        '"yes"',
        True,
        {},
        {},
    )
    assert (r3["hour"], json.loads(r3["primary_prediction"]), r3["agree"]) == (0, {"k": [1, 2]}, False)
    assert dataset.time_range() == (at(13, 30), at(0, day=1))


def test_directories_give_every_jsonl_inside_sorted(tmp_path: Path):
    write(tmp_path / "records" / "b.jsonl", [pair("b")])
    write(tmp_path / "records" / "a.jsonl", [pair("a")])
    write(tmp_path / "records" / "pod-2" / "c.jsonl", [pair("c")])
    write(tmp_path / "records" / "notes.txt", ["not a record\n"])
    write(tmp_path / "single.jsonl", [pair("d")])

    dataset = load([tmp_path / "records", tmp_path / "single.jsonl"], SHADOW, now=NOW)

    assert dataset.files == [
        tmp_path / "records" / "a.jsonl",
        tmp_path / "records" / "b.jsonl",
        tmp_path / "records" / "pod-2" / "c.jsonl",
        tmp_path / "single.jsonl",
    ]
    assert [r["id"] for r in rows(dataset, "id")] == ["a", "b", "c", "d"]
    assert dataset.problems == []


def test_one_sided_records_are_joined_by_id_and_compared(tmp_path: Path):
    write(
        tmp_path / "primary.jsonl",
        [
            one("same", "primary", side(prediction=3), ts=at(9, 0, 1), segments={"history": "<1"}),
            one("differ", "primary", side(prediction=3), ts=at(9)),
            one("failed", "primary", side(prediction=3), ts=at(9)),
            one("number", "primary", side(prediction=1), ts=at(9)),
            one("lonely", "primary", side(), ts=at(9)),
        ],
    )
    write(
        tmp_path / "candidate.jsonl",
        [
            one(
                "same",
                "candidate",
                side(prediction=3, latency_ms=4.0),
                ts=at(9, 0, 2),
                segments={"history": "other", "region": "eu"},
                features={"$.x": False},
            ),
            one("differ", "candidate", side(prediction=4), ts=at(9)),
            one("failed", "candidate", side("timeout", latency_ms=2000.0), ts=at(9)),
            one("number", "candidate", side(prediction=1.0), ts=at(9)),
        ],
    )

    dataset = load([tmp_path], SHADOW, now=NOW)

    assert dataset.pairs == 4
    assert dataset.total_lines == 9
    by_id = {r["id"]: r for r in rows(dataset)}
    assert set(by_id) == {"same", "differ", "failed", "number"}
    same = by_id["same"]
    assert (same["ts"], same["hour"]) == (at(9, 0, 1), 9)  # the primary's timestamp
    assert same["segments"] == {"history": "<1", "region": "eu"}  # the primary's values win
    assert same["features"] == {"$.x": False}
    assert (same["primary_latency_ms"], same["candidate_latency_ms"]) == (10.0, 4.0)
    assert {k: r["agree"] for k, r in by_id.items()} == {"same": True, "differ": False, "failed": None, "number": True}
    assert by_id["failed"]["candidate_outcome"] == "timeout"
    assert all(r["abs_diff"] is None for r in by_id.values())
    [unpaired] = dataset.problems
    assert (unpaired.code, unpaired.count) == (UNPAIRED_RECORD, 1)
    assert "'lonely'" in unpaired.message
    assert "primary.jsonl" in unpaired.message


def test_joined_regression_pairs_get_the_absolute_difference(tmp_path: Path):
    write(
        tmp_path / "r.jsonl",
        [
            one("a", "primary", side(prediction=1.5)),
            one("a", "candidate", side(prediction=2.0)),
            one("b", "primary", side(prediction=10)),
            one("b", "candidate", side(prediction=7.25)),
            one("c", "primary", side(prediction="high")),
            one("c", "candidate", side(prediction=1)),
            one("d", "primary", side("http_5xx")),
            one("d", "candidate", side(prediction=1)),
        ],
    )

    dataset = load([tmp_path / "r.jsonl"], SHADOW, now=NOW, regression=True)

    assert {r["id"]: (r["abs_diff"], r["agree"]) for r in rows(dataset)} == {
        "a": (0.5, None),
        "b": (2.75, None),
        "c": (None, None),
        "d": (None, None),
    }
    assert dataset.problems == []


def test_pair_records_keep_what_their_writer_computed(tmp_path: Path):
    write(
        tmp_path / "r.jsonl",
        [pair("a", primary=side(prediction=1.0), candidate=side(prediction=1.5), regression=True)],
    )

    dataset = load([tmp_path / "r.jsonl"], SHADOW, now=NOW, regression=True)

    assert [(r["agree"], r["abs_diff"]) for r in rows(dataset)] == [(None, 0.5)]


def test_corrupt_lines_are_counted_with_an_example_and_skipped(tmp_path: Path):
    good = pair("good")
    wrong_version = {**pair("v2"), "v": 2}
    no_id = {k: v for k, v in pair("x").items() if k != "id"}
    no_ts = {k: v for k, v in pair("y").items() if k != "ts"}
    no_candidate = {k: v for k, v in pair("z").items() if k != "candidate"}
    bad_role = one("w", "shadow")
    no_result = {k: v for k, v in one("u", "primary").items() if k != "result"}
    path = write(
        tmp_path / "r.jsonl",
        [
            good,
            "this is not json\n",
            "[1, 2]\n",
            "42\n",
            '"text"\n',
            "\n",
            "   \n",
            wrong_version,
            no_id,
            no_ts,
            no_candidate,
            bad_role,
            no_result,
            b'{"v": 1, "id": "\xff\xfe"}\n',
            pair("good2"),
            '{"v": 1, "shadow": "default/recommender", "id": "half", "ts": 17',
        ],
    )

    dataset = load([path], SHADOW, now=NOW)

    assert [r["id"] for r in rows(dataset, "id")] == ["good", "good2"]
    assert dataset.total_lines == 14  # the two blank lines are not records
    [problem] = dataset.problems
    assert (problem.code, problem.count) == (CORRUPT_RECORD, 12)
    assert f"{path}:2:" in problem.message
    assert "this is not json" in problem.message


def test_a_truncated_last_line_is_a_corrupt_record(tmp_path: Path):
    whole = json.dumps(pair("b"))
    path = write(tmp_path / "r.jsonl", [pair("a"), whole[: len(whole) // 2]])

    dataset = load([path], SHADOW, now=NOW)

    assert (dataset.pairs, dataset.total_lines) == (1, 2)
    [problem] = dataset.problems
    assert (problem.code, problem.count) == (CORRUPT_RECORD, 1)
    assert f"{path}:2:" in problem.message


def test_a_complete_last_line_without_newline_is_a_record(tmp_path: Path):
    path = write(tmp_path / "r.jsonl", [pair("a"), json.dumps(pair("b"))])

    dataset = load([path], SHADOW, now=NOW)

    assert (dataset.pairs, dataset.total_lines, dataset.problems) == (2, 2, [])


def test_corrupt_records_in_several_files_are_summed(tmp_path: Path):
    write(tmp_path / "a.jsonl", [pair("a"), "{\n"])
    write(tmp_path / "b.jsonl", ["{\n", "null\n", pair("b")])

    dataset = load([tmp_path], SHADOW, now=NOW)

    assert dataset.pairs == 2
    [problem] = dataset.problems
    assert (problem.code, problem.count) == (CORRUPT_RECORD, 3)
    assert "2 file(s)" in problem.message
    assert f"{tmp_path / 'a.jsonl'}:2:" in problem.message


def test_records_of_another_shadow_deployment_are_excluded(tmp_path: Path):
    path = write(
        tmp_path / "r.jsonl",
        [
            pair("mine"),
            pair("theirs", shadow="other/model"),
            one("theirs-too", "primary", shadow="other/model"),
            one("theirs-too", "candidate", shadow="other/model"),
        ],
    )

    dataset = load([path], SHADOW, now=NOW)

    assert [r["id"] for r in rows(dataset, "id")] == ["mine"]
    [problem] = dataset.problems
    assert (problem.code, problem.count) == (FOREIGN_RECORD, 3)
    assert "'other/model'" in problem.message


def test_timestamps_in_the_future_are_clock_skew_and_excluded(tmp_path: Path):
    path = write(
        tmp_path / "r.jsonl",
        [
            pair("past", ts=NOW - 3600),
            pair("almost-now", ts=NOW + 299),
            pair("future", ts=NOW + 301),
            pair("far-future", ts=NOW + 86400),
            one("joined-future", "primary", ts=NOW + 600),
            one("joined-future", "candidate", ts=NOW + 600),
        ],
    )

    dataset = load([path], SHADOW, now=NOW)

    assert [r["id"] for r in rows(dataset, "id")] == ["almost-now", "past"]
    [problem] = dataset.problems
    assert (problem.code, problem.count) == (CLOCK_SKEW, 3)


def test_now_defaults_to_the_current_time(tmp_path: Path):
    import time

    path = write(tmp_path / "r.jsonl", [pair("now", ts=time.time()), pair("tomorrow", ts=time.time() + 86400)])

    dataset = load([path], SHADOW)

    assert [r["id"] for r in rows(dataset, "id")] == ["now"]
    assert counts_by_code(dataset.problems) == {CLOCK_SKEW: 1}


def test_sides_far_apart_are_clock_skew_but_kept(tmp_path: Path):
    path = write(
        tmp_path / "r.jsonl",
        [
            one("close", "primary", ts=at(10)),
            one("close", "candidate", ts=at(10, 0, 59)),
            one("apart", "primary", ts=at(10)),
            one("apart", "candidate", ts=at(10, 1, 1)),
            one("before", "primary", ts=at(10, 5)),
            one("before", "candidate", ts=at(10)),
        ],
    )

    dataset = load([path], SHADOW, now=NOW)

    assert [r["id"] for r in rows(dataset, "id")] == ["apart", "before", "close"]
    [problem] = dataset.problems
    assert (problem.code, problem.count) == (CLOCK_SKEW, 2)
    assert "'before'" in problem.message  # the furthest apart is the example


def test_one_sided_records_without_their_other_side_are_unpaired(tmp_path: Path):
    path = write(
        tmp_path / "r.jsonl",
        [
            one("p-only", "primary"),
            one("c-only", "candidate"),
            one("both", "primary"),
            one("both", "candidate"),
            one("p-only-2", "primary"),
        ],
    )

    dataset = load([path], SHADOW, now=NOW)

    assert [r["id"] for r in rows(dataset, "id")] == ["both"]
    assert counts_by_code(dataset.problems) == {UNPAIRED_RECORD: 3}
    [problem] = dataset.problems
    assert "2 primary answers without a candidate answer" in problem.message
    assert "1 candidate answers without a primary answer" in problem.message


def test_repeated_ids_keep_the_earliest_and_are_counted(tmp_path: Path):
    path = write(
        tmp_path / "r.jsonl",
        [
            pair("dup", ts=at(10, 5), primary=side(latency_ms=2.0)),
            pair("dup", ts=at(10), primary=side(latency_ms=1.0)),
            pair("single"),
            one("twice", "primary", side(latency_ms=5.0), ts=at(11)),
            one("twice", "primary", side(latency_ms=6.0), ts=at(11, 1)),
            one("twice", "candidate", ts=at(11)),
        ],
    )

    dataset = load([path], SHADOW, now=NOW)

    assert {r["id"]: r["primary_latency_ms"] for r in rows(dataset)} == {"dup": 1.0, "single": 10.0, "twice": 5.0}
    assert counts_by_code(dataset.problems) == {CORRUPT_RECORD: 2}
    assert dataset.pairs == 3


def test_unreadable_files_are_named_and_the_rest_still_loads(tmp_path: Path):
    write(tmp_path / "records" / "good.jsonl", [pair("a")])
    (tmp_path / "records" / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    missing = tmp_path / "missing.jsonl"

    dataset = load([tmp_path / "records", missing], SHADOW, now=NOW)

    assert dataset.pairs == 1
    assert dataset.files == [tmp_path / "records" / "good.jsonl"]
    assert counts_by_code(dataset.problems) == {CORRUPT_RECORD: 2}
    messages = " ".join(p.message for p in dataset.problems)
    assert str(tmp_path / "records" / "gone.jsonl") in messages
    assert str(missing) in messages


@pytest.mark.parametrize("how", ["symlink-loop", "removed-after-listing"])
def test_a_listed_file_that_cannot_be_opened_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str):
    """A file the directory listing returns but open() refuses, as root too (a mode of 0 would
    not stop root): a symlink loop (ELOOP), or a file removed between listing and reading."""
    from shadow_operator.job import dataset as dataset_module

    write(tmp_path / "good.jsonl", [pair("a")])
    bad = tmp_path / "bad.jsonl"
    if how == "symlink-loop":
        bad.symlink_to(bad.name)
        reason = "Too many levels of symbolic links"
    else:
        write(bad, [pair("b")])
        expand = dataset_module.expand

        def list_then_remove(paths: list[Path]):
            listed = expand(paths)
            bad.unlink()
            return listed

        monkeypatch.setattr(dataset_module, "expand", list_then_remove)
        reason = "No such file or directory"

    dataset = load([tmp_path], SHADOW, now=NOW)

    assert dataset.pairs == 1
    assert dataset.files == [tmp_path / "good.jsonl"]
    [problem] = dataset.problems
    assert (problem.code, problem.count) == (CORRUPT_RECORD, 1)
    assert problem.message == f"cannot read {bad}: {reason}"


def test_every_kind_of_bad_input_at_once_never_raises(tmp_path: Path):
    write(
        tmp_path / "a.jsonl",
        [
            pair("ok-1"),
            "garbage\n",
            "[]\n",
            pair("foreign", shadow="x/y"),
            pair("future", ts=NOW + 3600),
            one("unpaired", "candidate"),
            one("skewed", "primary", ts=at(1)),
        ],
    )
    write(tmp_path / "b.jsonl", [one("skewed", "candidate", ts=at(2)), pair("ok-2"), '{"v": 1, "id": "trunc'])
    (tmp_path / "c.jsonl").symlink_to(tmp_path / "does-not-exist")

    dataset = load([tmp_path], SHADOW, now=NOW)

    assert [r["id"] for r in rows(dataset, "id")] == ["ok-1", "ok-2", "skewed"]
    assert counts_by_code(dataset.problems) == {
        CORRUPT_RECORD: 4,  # garbage, [], the truncated line, and c.jsonl
        FOREIGN_RECORD: 1,
        CLOCK_SKEW: 2,  # the future pair, and the pair whose sides are an hour apart
        UNPAIRED_RECORD: 1,
    }
    assert dataset.total_lines == 10


def test_no_files_give_an_empty_table(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty.jsonl", [])

    dataset = load([tmp_path / "empty", tmp_path / "empty.jsonl"], SHADOW, now=NOW)

    assert (dataset.pairs, dataset.total_lines, dataset.problems) == (0, 0, [])
    assert rows(dataset) == []
    assert dataset.time_range() == (None, None)


def test_a_file_that_vanishes_before_duckdb_reads_it_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from shadow_operator.job import dataset as dataset_module

    write(tmp_path / "a.jsonl", [pair("a"), "{\n"])
    vanishing = write(tmp_path / "b.jsonl", [pair("b")])
    write(tmp_path / "c.jsonl", [pair("c")])
    count_lines = dataset_module.count_lines

    def count_then_delete(path: Path) -> int:
        lines = count_lines(path)
        if path == vanishing:
            path.unlink()
        return lines

    monkeypatch.setattr(dataset_module, "count_lines", count_then_delete)

    dataset = load([tmp_path], SHADOW, now=NOW)

    assert [r["id"] for r in rows(dataset, "id")] == ["a", "c"]
    assert dataset.files == [tmp_path / "a.jsonl", tmp_path / "c.jsonl"]
    [unreadable] = [p for p in dataset.problems if p.message.startswith("cannot read")]
    [corrupt] = [p for p in dataset.problems if p is not unreadable]
    assert (corrupt.code, corrupt.count) == (CORRUPT_RECORD, 1)
    assert f"{tmp_path / 'a.jsonl'}:2:" in corrupt.message
    assert (unreadable.code, unreadable.count) == (CORRUPT_RECORD, 1)
    assert unreadable.message.startswith(f"cannot read {vanishing}")


def test_lines_duckdb_drops_without_a_row_are_still_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Some DuckDB versions skip unparseable lines instead of returning NULLs; the byte count catches them."""
    from shadow_operator.job import dataset as dataset_module

    select = dataset_module.select_from_json
    monkeypatch.setattr(
        dataset_module,
        "select_from_json",
        lambda *args: f"SELECT * FROM ({select(*args)}) WHERE id IS NOT NULL",
    )
    path = write(tmp_path / "r.jsonl", [pair("a"), "\n", "not json\n", "[1]\n", pair("b"), '{"v": 2, "id": "x"}\n'])

    dataset = load([path], SHADOW, now=NOW)

    assert (dataset.pairs, dataset.total_lines) == (2, 5)
    [problem] = dataset.problems
    assert (problem.code, problem.count) == (CORRUPT_RECORD, 3)
    assert f"{path}:3: 'not json'" in problem.message


def test_binary_garbage_and_non_finite_timestamps_are_corrupt(tmp_path: Path):
    line = json.dumps(pair("x"))
    assert f'"ts": {at(12)}' in line
    path = write(
        tmp_path / "r.jsonl",
        [
            pair("a"),
            bytes(range(256)).replace(b"\n", b"") + b"\n",
            line.replace(f'"ts": {at(12)}', '"ts": 1e400') + "\n",
            line.replace(f'"ts": {at(12)}', '"ts": -1e400') + "\n",
            b"\x00\x00{}\n",
            pair("b"),
        ],
    )

    dataset = load([path], SHADOW, now=NOW)

    assert [r["id"] for r in rows(dataset, "id")] == ["a", "b"]
    assert counts_by_code(dataset.problems) == {CORRUPT_RECORD: 4}
    assert f"{path}:2:" in dataset.problems[0].message


def test_records_that_arrived_before_the_candidate_rolled_out_are_not_its_evidence(tmp_path: Path):
    """`since` is judged on arrival (`received`), not on the request's own event time."""
    failing = side("http_5xx", error="KeyError: 'purchase_history'")
    write(
        tmp_path / "a.jsonl",
        [
            pair("before", ts=at(9), candidate=failing),
            pair("at", ts=at(10)),
            pair("after", ts=at(11)),
            # A replayed request: an old event time, arrived after the rollout: evidence.
            {**pair("replayed", ts=at(-500)), "received": at(12)},
            # An event time after the rollout, arrived before it: not evidence.
            {**pair("early", ts=at(13), candidate=failing), "received": at(8)},
            {**one("joined", "primary", ts=at(-400)), "received": at(14)},
            {**one("joined", "candidate", ts=at(-400)), "received": at(14)},
        ],
    )
    judged = load([tmp_path / "a.jsonl"], SHADOW, now=NOW, since=at(10))
    assert [r["id"] for r in rows(judged, "id")] == ["after", "at", "joined", "replayed"]
    assert judged.problems == []


def test_only_the_judged_candidates_answers_count(tmp_path: Path):
    """A new candidate image must not inherit the previous candidate's answers from the same records."""
    v2, v21 = "registry.example/recommender:v2", "registry.example/recommender:v2.1"
    failing = side("http_5xx", error="KeyError: 'purchase_history'")
    write(
        tmp_path / "a.jsonl",
        [
            {**pair("old", ts=at(10), candidate=failing), "candidate_image": v2},
            {**pair("new", ts=at(11)), "candidate_image": v21},
            pair("untagged", ts=at(12)),  # an older writer: counted
            {**one("joined", "primary", ts=at(13))},
            {**one("joined", "candidate", ts=at(13)), "candidate_image": v21},
            {**one("stale", "primary", ts=at(14))},
            {**one("stale", "candidate", ts=at(14), result=failing), "candidate_image": v2},
        ],
    )

    judged = load([tmp_path / "a.jsonl"], SHADOW, now=NOW, candidate_image=v21)
    assert [r["id"] for r in rows(judged, "id")] == ["joined", "new", "untagged"]
    assert CORRUPT_RECORD not in counts_by_code(judged.problems)
    everything = load([tmp_path / "a.jsonl"], SHADOW, now=NOW)
    assert [r["id"] for r in rows(everything, "id")] == ["joined", "new", "old", "stale", "untagged"]


def test_the_baseline_and_the_candidate_are_read_apart_from_the_same_records(tmp_path: Path):
    """Builtin router: baseline pairs marked `compared`; Istio: one-sided records with role baseline."""
    marked = pair("p1", candidate=side(prediction=2))
    marked[COMPARED] = BASELINE
    write(
        tmp_path / "r.jsonl",
        [
            pair("p1", candidate=side(prediction=1)),
            marked,
            one("o1", "primary", side(prediction=3)),
            one("o1", "candidate", side(prediction=3)),
            one("o1", BASELINE, side(prediction=4)),
        ],
    )

    def predictions(against: str) -> dict[str, str]:
        dataset = load([tmp_path], SHADOW, now=NOW, against=against)
        rows = dataset.con.execute(f"SELECT id, candidate_prediction FROM {TABLE} ORDER BY id").fetchall()
        assert not dataset.problems, dataset.problems  # the other comparison's records are no problem
        return dict(rows)

    assert predictions("candidate") == {"o1": "3", "p1": "1"}
    assert predictions(BASELINE) == {"o1": "4", "p1": "2"}
