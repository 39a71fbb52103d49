"""Incremental analysis (issue 13, item 3): records folded in increments into persisted aggregates.

* Folding the same records in K increments gives exactly the aggregates, slices and verdict
  of folding them at once (the sketch merges without loss), whatever the split.
* Against the exact computation (stats.compute_slices on every record): the same counts, the
  quantiles within the sketch's relative error, latency bounds that contain the exact ones,
  and a verdict that is never less safe (incremental Failed => exact Failed; incremental
  Passed => exact Passed). An equivalent candidate is never Failed.
* The state: only new whole lines are read, a run that dies before saving counts nothing
  twice, and a change of candidate, evidence start or recording spec (or a replaced file)
  rebuilds it from every record.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadow_operator.contract import reasons
from shadow_operator.contract.records import dumps
from shadow_operator.contract.report import ReportCoverage
from shadow_operator.contract.timestamps import timestamp
from shadow_operator.job import sketch, state_file
from shadow_operator.job.dataset import load
from shadow_operator.job.intervals import LATENCY_LEVELS, UNBOUNDED_MS, exact_quantile_ranks
from shadow_operator.job.job import analyze, fold_increment
from shadow_operator.job.stats import compute_slices
from shadow_operator.job.verdict import decide

from .factories import make_sd
from .records_factory import NOW as NOW_TS
from .records_factory import SHADOW, one, pair, side, write
from .test_verdict_properties import equivalent_worlds
from .traffic_world import SEGMENT_PATHS, WEEK_SECONDS, Fault, World, default_thresholds, records

NOW = datetime.fromtimestamp(NOW_TS, UTC)
QUANTILES = ("p50", "p95", "p99")


def sd_for(world: World, **spec):
    segments = [{"name": name, "path": SEGMENT_PATHS[name]} for name in world.segments]
    overrides = {
        "recording": {"segments": segments, "features": list(world.features), "predictionType": world.prediction_type},
        "analysis": {"prometheus": None},
        **spec,
    }
    return make_sd(overrides)


def deliver(directory: Path, recs: list[dict], cuts: list[int]) -> list[list[Path]]:
    """Append the records to two growing files in `len(cuts) + 1` deliveries; the record paths after each."""
    files = [directory / "router-a" / "r1.jsonl", directory / "router-b" / "r2.jsonl"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    bounds = [0, *sorted(cuts), len(recs)]
    for start, end in itertools.pairwise(bounds):
        for i in range(start, end):
            with files[i % 2].open("ab") as f:
                f.write(dumps(recs[i]).encode() + b"\n")
        yield [directory]


def judge_slices(world: World, slices, problems):
    overall = next((s for s in slices if s.segment == "all" and s.hour is None), None)
    coverage = ReportCoverage(
        elapsed_seconds=WEEK_SECONDS,
        required_seconds=WEEK_SECONDS,
        samples=overall.pairs if overall else 0,
        required_samples=world.min_samples,
        percent=100,
    )
    paths = {name: SEGMENT_PATHS[name] for name in world.segments}
    return decide(
        world.analysis(), world.prediction_type, slices, coverage, problems, True, "2025-11-28T00:00:00Z",
        segment_paths=paths,
    )  # fmt: skip


def incremental(world: World, recs: list[dict], cuts: list[int], directory: Path):
    """(slices, problems) after folding the records in len(cuts) + 1 runs through the state file."""
    sd = sd_for(world)
    state = directory / "state.json"
    for paths in deliver(directory / "records", recs, cuts):
        folded, _ = fold_increment(sd, paths, NOW, state)
    features = list(world.features)
    return folded.slice_stats(list(world.segments), features, world.regression), folded.data_problems()


def exact(world: World, recs: list[dict], directory: Path):
    path = write(directory / "all.jsonl", recs)
    with load([path], SHADOW, now=NOW_TS, regression=world.regression) as dataset:
        return compute_slices(dataset, list(world.segments), list(world.features), world.regression), dataset.problems


def assert_close_to_exact(inc, ex, regression: bool) -> None:
    assert [(s.segment, s.hour) for s in inc] == [(s.segment, s.hour) for s in ex]
    for mine, truth in zip(inc, ex, strict=True):
        assert (mine.pairs, mine.comparable, mine.agreement) == (truth.pairs, truth.comparable, truth.agreement)
        assert mine.feature_missing == truth.feature_missing
        if regression and truth.abs_diff_mean is not None:
            assert math.isclose(mine.abs_diff_mean, truth.abs_diff_mean, rel_tol=1e-9, abs_tol=1e-12)
        if truth.abs_diff_p95 is not None:
            assert _within_sketch_error(mine.abs_diff_p95, truth.abs_diff_p95)
        for role in ("primary", "candidate"):
            m, t = getattr(mine, role), getattr(truth, role)
            for name in ("requests", "errors", "error_rate", "outcomes", "top_errors", "latency_histogram"):
                assert getattr(m, name) == getattr(t, name), (mine.segment, mine.hour, role, name)
            assert (m.latency_ms is None) == (t.latency_ms is None)
            if t.latency_ms is not None:
                for q in QUANTILES:
                    assert _within_sketch_error(getattr(m.latency_ms, q), getattr(t.latency_ms, q)), (role, q)
            assert [b.confidence for b in m.latency_bounds] == [b.confidence for b in t.latency_bounds]
            for mb, tb in zip(m.latency_bounds, t.latency_bounds, strict=True):
                for q in QUANTILES:  # the sketch's bounds contain the exact ones, at most one bucket wider
                    low, exact_low = getattr(mb.low, q), getattr(tb.low, q)
                    high, exact_high = getattr(mb.high, q), getattr(tb.high, q)
                    assert low <= exact_low and low >= exact_low / sketch.WIDENING - sketch.MIN_VALUE
                    assert high >= exact_high
                    assert exact_high >= UNBOUNDED_MS or high <= exact_high * sketch.WIDENING + sketch.MIN_VALUE


def _within_sketch_error(estimate: float, truth: float) -> bool:
    return abs(estimate - truth) <= sketch.ALPHA * abs(truth) + 2 * sketch.MIN_VALUE + 1e-12


PROPERTY = settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(case=equivalent_worlds(), k=st.integers(1, 6), data=st.data())
def test_k_increments_equal_one_fold_and_an_equivalent_candidate_is_never_failed(tmp_path_factory, case, k, data):
    world, n, seed = case
    recs = records(world, n, seed)
    cuts = data.draw(st.lists(st.integers(0, n), min_size=k - 1, max_size=k - 1))
    inc_slices, inc_problems = incremental(world, recs, cuts, tmp_path_factory.mktemp("k"))
    once_slices, once_problems = incremental(world, recs, [], tmp_path_factory.mktemp("once"))
    # exactly the aggregates of one fold: every number, every bound
    assert [s.model_dump() for s in inc_slices] == [s.model_dump() for s in once_slices]
    assert [(s.primary.latency_bounds, s.candidate.latency_bounds) for s in inc_slices] == [
        (s.primary.latency_bounds, s.candidate.latency_bounds) for s in once_slices
    ]  # not in model_dump (excluded from report.json)
    incremental_verdict = judge_slices(world, inc_slices, inc_problems)
    assert incremental_verdict == judge_slices(world, once_slices, once_problems)

    ex_slices, ex_problems = exact(world, recs, tmp_path_factory.mktemp("exact"))
    assert_close_to_exact(inc_slices, ex_slices, world.regression)
    exact_verdict = judge_slices(world, ex_slices, ex_problems)
    failed = [f"{c.name} on {c.segment}: {c.message}" for c in incremental_verdict.checks if c.passed is False]
    assert incremental_verdict.result != "Failed" and not failed, (incremental_verdict.message, failed)
    if incremental_verdict.result == "Passed":  # never less safe: a pass on wider intervals passes exactly
        assert exact_verdict.result == "Passed", exact_verdict.message


FAULTS = [
    (Fault("errors", "history", "<1", 0.5), reasons.CANDIDATE_ERRORS, "history=<1"),
    (Fault("latency", "country", "us", 3.0), reasons.LATENCY_REGRESSION, "country=us"),
    (Fault("disagree", "history", "1-200", 0.3), reasons.PREDICTION_DIVERGENCE, "history=1-200"),
]


@pytest.mark.parametrize(("fault", "reason", "segment"), FAULTS, ids=lambda v: getattr(v, "kind", None))
def test_a_clear_fault_is_failed_and_named_from_increments(tmp_path, fault, reason, segment):
    world = World(regression=False, thresholds=default_thresholds(False), error_rate=0.005)
    recs = records(world, 4000, 3, fault)
    slices, problems = incremental(world, recs, [500, 1700, 3900], tmp_path)
    verdict = judge_slices(world, slices, problems)
    assert (verdict.result, verdict.reason) == ("Failed", reason), verdict.message
    assert verdict.message.split(" failed on ", 1)[1].startswith(f"segment {segment}"), verdict.message
    ex_slices, ex_problems = exact(world, recs, tmp_path)
    assert judge_slices(world, ex_slices, ex_problems).result == "Failed"  # incremental Failed => exact Failed


@pytest.mark.parametrize("n", [1, 2, 9, 301, 5000, 60000])
def test_sketch_bounds_contain_the_exact_order_statistics(n):
    rng = random.Random(n)
    values = [rng.lognormvariate(3.0, 1.2) for _ in range(n)]
    if n > 5:
        values[:3] = [0.0, 0.0, 1e-9]
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest($v) AS x", {"v": values})
    rows = con.execute(f"SELECT {sketch.key_sql('x')}, count(*) FROM t GROUP BY 1").fetchall()
    built = sketch.Sketch()
    built.add([r[0] for r in rows], [r[1] for r in rows])
    ordered = sorted(values)
    ps = (0.5, 0.95, 0.99)
    for level, lows, highs in built.bounds(ps):
        for j, p in enumerate(ps):
            r, s = exact_quantile_ranks(n, p, level)
            exact_low = ordered[r - 1] if r >= 1 else 0.0
            exact_high = ordered[s - 1] if s <= n else UNBOUNDED_MS
            assert lows[j] <= exact_low, (level, p)
            assert highs[j] >= exact_high, (level, p)
            assert lows[j] >= exact_low / sketch.WIDENING - sketch.MIN_VALUE
            assert exact_high >= UNBOUNDED_MS or highs[j] <= exact_high * sketch.WIDENING + sketch.MIN_VALUE
    assert [level for level, _, _ in built.bounds(ps)] == list(LATENCY_LEVELS)
    truth = con.execute("SELECT quantile_cont(x, [0.5, 0.95, 0.99]) FROM t").fetchone()[0]
    for estimate, value in zip(built.quantiles(ps), truth, strict=True):
        assert _within_sketch_error(estimate, value)
    assert sketch.Sketch.from_json(json.loads(json.dumps(built.to_json()))) == built


# --- the state ----------------------------------------------------------------------------------

SPEC = {"analysis": {"prometheus": None, "minSamples": 10, "minSamplesPerSegment": 10}}


def pairs_of(report) -> int:
    return report.coverage.samples


def records_at(prefix: str, n: int, start: float = NOW_TS - 3600) -> list[dict]:
    return [pair(f"{prefix}-{i}", ts=start + i) for i in range(n)]


def test_only_new_whole_lines_are_read_and_nothing_is_counted_twice(tmp_path):
    state = tmp_path / "state.json"
    path = tmp_path / "records" / "a.jsonl"
    write(path, records_at("a", 100))
    assert pairs_of(analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)) == 100
    assert pairs_of(analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)) == 100  # nothing new
    line = dumps(pair("half", ts=NOW_TS - 10)).encode()
    with path.open("ab") as f:  # a line being written: not read until whole
        f.write(dumps(pair("b-0", ts=NOW_TS - 20)).encode() + b"\n" + line[:25])
    assert pairs_of(analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)) == 101
    with path.open("ab") as f:
        f.write(line[25:] + b"\n")
    write(tmp_path / "records" / "rotated.jsonl", records_at("c", 50))
    report = analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    assert pairs_of(report) == 152
    full = analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW)
    assert [s.model_dump(exclude={"primary", "candidate"}) for s in report.slices] == [
        s.model_dump(exclude={"primary", "candidate"}) for s in full.slices
    ]
    assert report.verdict.result == full.verdict.result


def test_a_run_that_dies_before_saving_counts_nothing_twice(tmp_path, monkeypatch):
    state = tmp_path / "state.json"
    write(tmp_path / "records" / "a.jsonl", records_at("a", 40))
    analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    write(tmp_path / "records" / "b.jsonl", records_at("b", 30))

    def die(path, state):
        raise KeyboardInterrupt("killed while saving")

    with monkeypatch.context() as patched:
        patched.setattr(state_file, "write", die)
        with pytest.raises(KeyboardInterrupt):
            analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    assert pairs_of(analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)) == 70
    assert not list(tmp_path.glob(".state.json.*.tmp"))


def test_records_deleted_by_retention_stay_folded(tmp_path):
    state = tmp_path / "state.json"
    write(tmp_path / "records" / "old.jsonl", records_at("old", 60))
    analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    (tmp_path / "records" / "old.jsonl").unlink()
    write(tmp_path / "records" / "new.jsonl", records_at("new", 20))
    assert pairs_of(analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)) == 80
    # a threshold is not in the aggregates: changing it keeps the state
    stricter = {"analysis": {**SPEC["analysis"], "thresholds": {"maxErrorRate": 0.0001}}}
    assert pairs_of(analyze(make_sd(stricter), [tmp_path / "records"], now=NOW, state=state)) == 80


ROLLED_OUT = NOW_TS - 7200


@pytest.mark.parametrize(
    ("change", "status"),
    [
        pytest.param({"candidate": {"image": "registry.example/recsys:2.0.1"}}, None, id="candidate image"),
        pytest.param(
            {"recording": {"segments": [{"name": "history", "path": "$.features.age"}]}}, None, id="segment path"
        ),
        pytest.param({"recording": {"segments": []}}, None, id="segments"),
        pytest.param({"recording": {"features": ["$.features.age"]}}, None, id="features"),
        pytest.param({"recording": {"predictionType": "regression"}}, None, id="prediction type"),
        pytest.param({"analysis": {"minDuration": "24h"}}, None, id="business cycle"),
        pytest.param(
            {},
            {
                "candidate": "registry.example/recsys:2.0.0",
                "shadowingSince": timestamp(datetime.fromtimestamp(ROLLED_OUT, UTC)),
            },
            id="evidence start",
        ),
    ],
)
def test_a_new_candidate_evidence_start_or_recording_spec_rebuilds_the_state(tmp_path, change, status):
    state = tmp_path / "state.json"
    write(tmp_path / "records" / "old.jsonl", records_at("old", 60, start=ROLLED_OUT - 600))
    analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    (tmp_path / "records" / "old.jsonl").unlink()  # only the state remembers these
    write(tmp_path / "records" / "new.jsonl", records_at("new", 20))
    spec = {**SPEC, **change, "analysis": {**SPEC["analysis"], **change.get("analysis", {})}}
    changed = make_sd(spec, status=status) if status else make_sd(spec)
    assert pairs_of(analyze(changed, [tmp_path / "records"], now=NOW, state=state)) == 20  # rebuilt from what exists
    assert pairs_of(analyze(changed, [tmp_path / "records"], now=NOW, state=state)) == 20  # and kept


def test_while_the_candidate_rolls_out_nothing_is_read_and_the_state_is_kept(tmp_path):
    state = tmp_path / "state.json"
    write(tmp_path / "records" / "a.jsonl", records_at("a", 30))
    analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    before = state.read_bytes()
    rolling = make_sd(SPEC, status={"candidate": "registry.example/recsys:2.0.0"})  # no shadowingSince yet
    assert pairs_of(analyze(rolling, [tmp_path / "records"], now=NOW, state=state)) == 0
    assert state.read_bytes() == before


@pytest.mark.parametrize("how", ["shrunk", "replaced"])
def test_a_replaced_file_rebuilds_the_state(tmp_path, how):
    state = tmp_path / "state.json"
    path = write(tmp_path / "records" / "a.jsonl", records_at("a", 50))
    analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    write(path, records_at("z", 10 if how == "shrunk" else 60))
    assert pairs_of(analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)) == (
        10 if how == "shrunk" else 60
    )


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"version": 1, "fingerprint": "x"}', b"[]"])
def test_an_unreadable_state_is_rebuilt_not_a_crash(tmp_path, content):
    state = tmp_path / "state.json"
    write(tmp_path / "records" / "a.jsonl", records_at("a", 25))
    state.write_bytes(content)
    assert pairs_of(analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)) == 25


def test_data_problems_add_up_across_runs(tmp_path):
    state = tmp_path / "state.json"
    write(tmp_path / "records" / "a.jsonl", [*records_at("a", 20), "not json\n"])
    analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    write(tmp_path / "records" / "b.jsonl", [*records_at("b", 20), "{broken\n", "[1]\n"])
    report = analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    corrupt = [p for p in report.problems if p.code == "CorruptRecord"]
    assert [p.count for p in corrupt] == [3]
    assert "over 2 runs" in corrupt[0].message
    assert pairs_of(report) == 40


def test_failing_candidate_in_increments_fails_like_the_full_run(tmp_path):
    failing = side("http_5xx", error="KeyError: 'purchase_history'")
    state = tmp_path / "state.json"
    for run in range(3):
        recs = [
            pair(f"r{run}-{i}", ts=NOW_TS - 3000 + run * 600 + i, candidate=failing if i % 2 else None)
            for i in range(200)
        ]
        write(tmp_path / "records" / f"{run}.jsonl", recs)
        report = analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    full = analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW)
    assert (
        (report.verdict.result, report.verdict.reason)
        == (full.verdict.result, full.verdict.reason)
        == (
            "Failed",
            reasons.CANDIDATE_ERRORS,
        )
    )
    assert report.slice().candidate.errors == full.slice().candidate.errors == 300
    assert report.slice().candidate.top_errors == full.slice().candidate.top_errors


def test_one_sided_records_split_across_increments_are_joined_once(tmp_path):
    """Istio mode: each side is its own record; a pair whose sides fall into two runs is still one pair."""
    state = tmp_path / "state.json"
    ts = NOW_TS - 1800
    first = [one(f"r{i}", "primary", ts=ts + i) for i in range(100)]
    first += [one(f"r{i}", "candidate", ts=ts + i) for i in range(60)]  # r60-r99: candidate side not here yet
    first += [one(f"lonely-{i}", "primary", ts=ts + i) for i in range(5)]  # never mirrored
    write(tmp_path / "records" / "primary.jsonl", first)
    report = analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    assert pairs_of(report) == 60
    assert not [p for p in report.problems if p.code == "UnpairedRecord"]  # waiting, not lost
    write(tmp_path / "records" / "candidate.jsonl", [one(f"r{i}", "candidate", ts=ts + i) for i in range(60, 100)])
    report = analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    assert pairs_of(report) == 100
    assert [p.count for p in report.problems if p.code == "UnpairedRecord"] == [5]  # waited one run: counted
    report = analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW, state=state)
    assert pairs_of(report) == 100
    assert [p.count for p in report.problems if p.code == "UnpairedRecord"] == [5]  # counted once
    full = analyze(make_sd(SPEC), [tmp_path / "records"], now=NOW)
    assert pairs_of(full) == 100
    assert [p.count for p in full.problems if p.code == "UnpairedRecord"] == [5]


def test_the_cli_folds_increments_with_state_also_from_an_unreachable_collector(tmp_path, capsys):
    from shadow_operator.cli import main

    from .factories import CONTRACT_YAML

    sd = tmp_path / "sd.yaml"
    sd.write_text(CONTRACT_YAML.replace('prometheus: {url: "http://prometheus.monitoring:9090"}', "prometheus: null"))
    write(tmp_path / "records" / "a.jsonl", records_at("a", 30, start=1_700_000_000))
    args = ["analyze", "--file", str(sd), "--records", str(tmp_path / "records"), "-o", "json"]
    assert main([*args, "--state", str(tmp_path / "state.json")]) == 0
    assert json.loads(capsys.readouterr().out)["coverage"]["samples"] == 30
    write(tmp_path / "records" / "b.jsonl", records_at("b", 12, start=1_700_000_100))
    assert main([*args, "--state", str(tmp_path / "state.json")]) == 0
    assert json.loads(capsys.readouterr().out)["coverage"]["samples"] == 42
    assert (tmp_path / "state.json").exists()
    # --records-from with a state reads the collector incrementally; unreachable, it folds nothing, and says so
    assert main([*args, "--state", str(tmp_path / "state.json"), "--records-from", "http://127.0.0.1:9"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["coverage"]["samples"] == 42 and report["problems"][0]["code"] == "RecordsUnavailable"
    assert main([*args, "--rebuild-state"]) == 3
    assert "give --state FILE or --cluster-state" in capsys.readouterr().err
