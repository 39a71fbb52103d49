"""Incremental analysis against the collector (issue 13, item 3): the job reads only the bytes new since
its previous run, per collector part, and keeps its state where only it may write (a ConfigMap).

* K runs against a collector, records arriving in between, give exactly the aggregates and the
  verdict of one fold of every record (the cursor logic of record_sources.py over remote.CollectorSource);
  each run reads only the new bytes.
* A part deleted by retention keeps what it contributed; a replaced part (a collector restarted
  empty) rebuilds the state from every record; an unreachable collector folds nothing and keeps
  the state.
* The ConfigMap store: a state not in this object's ConfigMap, or oversized, corrupt, a gzip bomb,
  of the wrong shape, is refused and rebuilt from every record, said in the report; a state too
  large to keep is not kept (said); a concurrent writer loses on the resourceVersion.
"""

from __future__ import annotations

import base64
import copy
import gzip
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadow_operator.contract.analysis_state import STATE_KEY
from shadow_operator.contract.collector_protocol import HEAD_BYTES
from shadow_operator.contract.records import dumps
from shadow_operator.job.incremental_state import STATE_NOT_SAVED, STATE_REBUILT, STATE_TOO_LARGE, Rebuilding, State
from shadow_operator.job.job import analyze, fold_increment
from shadow_operator.job.remote import CollectorSource
from shadow_operator.job.state_configmap import ConfigMapStore
from shadow_operator.kube.client import KubeError

from .factories import make_sd
from .records_factory import NOW as NOW_TS
from .test_collector import Collector
from .test_incremental_analysis import NOW, PROPERTY, SPEC, incremental, judge_slices, pairs_of, records_at, sd_for
from .test_verdict_properties import equivalent_worlds
from .traffic_world import records

FILES = ("records-router-a-1.jsonl", "records-router-b-2.jsonl")


def post(collector: Collector, recs: list[dict], offsets: dict[str, int], source: str = "router-a") -> int:
    """Ship the records to the collector, alternating between two writer files; the bytes sent."""
    sent = 0
    for name, batch in ((FILES[0], recs[0::2]), (FILES[1], recs[1::2])):
        if not batch:
            continue
        body = b"".join(dumps(r).encode() + b"\n" for r in batch)
        status, answer = collector.request("POST", f"/v1/records/{source}/{name}?offset={offsets.get(name, 0)}", body)
        assert status == 200, answer
        offsets[name] = json.loads(answer)["size"]
        sent += len(body)
    return sent


@settings(PROPERTY, max_examples=5)
@given(case=equivalent_worlds(), k=st.integers(1, 5), data=st.data())
def test_k_runs_against_the_collector_equal_one_fold_and_read_each_byte_once(tmp_path_factory, case, k, data):
    world, n, seed = case
    recs = records(world, n, seed)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=k - 1, max_size=k - 1)))
    directory = tmp_path_factory.mktemp("remote")
    collector = Collector(directory / "collector")
    try:
        sd, state, offsets, sent, read = sd_for(world), directory / "state.json", {}, 0, 0
        for start, end in itertools.pairwise([0, *cuts, n]):
            sent += post(collector, recs[start:end], offsets)
            source = CollectorSource(collector.url, max_bytes=1 << 30)
            folded, _ = fold_increment(sd, source, NOW, state)
            read += source.bytes_read - source.head_bytes_read
            assert source.head_bytes_read <= 2 * HEAD_BYTES  # at most the first 4 KiB of each part, again
    finally:
        collector.stop()
    assert read == sent  # every byte read once: nothing again, nothing skipped
    features = list(world.features)
    remote_slices = folded.slice_stats(list(world.segments), features, world.regression)
    once_slices, once_problems = incremental(world, recs, [], tmp_path_factory.mktemp("once"))
    assert [s.model_dump() for s in remote_slices] == [s.model_dump() for s in once_slices]
    assert judge_slices(world, remote_slices, folded.data_problems()) == judge_slices(world, once_slices, once_problems)


@pytest.fixture
def collector(tmp_path):
    started = Collector(tmp_path / "collector", retention_bytes=1 << 30)
    yield started
    started.stop()


def run(collector: Collector, state, sd=None):
    source = CollectorSource(collector.url, max_bytes=1 << 30)
    report = analyze(sd or make_sd(SPEC), [], now=NOW, state=state, source=source)
    return report, source.bytes_read


def test_a_second_run_reads_only_the_new_bytes_and_matches_a_full_run(tmp_path, collector):
    offsets: dict[str, int] = {}
    state = tmp_path / "state.json"
    first = post(collector, records_at("a", 120), offsets)
    report, read = run(collector, state)
    assert (pairs_of(report), read) == (120, first)
    report, read = run(collector, state)
    assert (pairs_of(report), read) == (120, 0)  # nothing new: nothing read
    second = post(collector, records_at("b", 30), {}, source="router-b")
    report, read = run(collector, state)
    assert (pairs_of(report), read) == (150, second)
    full = analyze(make_sd(SPEC), [collector.root], now=NOW)
    assert report.verdict.result == full.verdict.result and pairs_of(full) == 150


def test_a_part_deleted_by_retention_keeps_what_it_contributed(tmp_path, collector):
    state = tmp_path / "state.json"
    post(collector, records_at("old", 60), {}, source="router-old")
    run(collector, state)
    for stored in list(collector.store.files.values()):
        collector.loop.call_soon_threadsafe(collector.store._delete, stored, "age")
    post(collector, records_at("new", 20), {}, source="router-new")
    report, _ = run(collector, state)
    assert pairs_of(report) == 80


def test_a_replaced_part_rebuilds_from_every_record_and_says_so(tmp_path):
    state = tmp_path / "state.json"
    collector = Collector(tmp_path / "c1")
    try:
        post(collector, records_at("a", 50), {})
        run(collector, state)
    finally:
        collector.stop()
    restarted = Collector(tmp_path / "c2")  # a collector restarted on an empty emptyDir; the writer's new file
    try:
        post(restarted, records_at("z", 70), {})
        report, _ = run(restarted, state)
    finally:
        restarted.stop()
    assert pairs_of(report) == 70
    [rebuilt] = [p for p in report.problems if p.code == STATE_REBUILT]
    assert "replaced" in rebuilt.message


def test_an_unreachable_collector_folds_nothing_and_keeps_the_state(tmp_path, collector):
    state = tmp_path / "state.json"
    post(collector, records_at("a", 40), {})
    run(collector, state)
    kept = state.read_bytes()
    source = CollectorSource("http://127.0.0.1:9", max_bytes=1 << 30)
    report = analyze(make_sd(SPEC), [], now=NOW, state=state, source=source)
    assert pairs_of(report) == 40  # judged on what was folded before
    assert report.problems[0].code == "RecordsUnavailable" and "127.0.0.1:9" in report.problems[0].message
    assert state.read_bytes() == kept


def test_a_read_over_the_cap_is_records_unavailable_and_folds_nothing(tmp_path, collector):
    state = tmp_path / "state.json"
    post(collector, records_at("a", 40), {})
    report = analyze(make_sd(SPEC), [], now=NOW, state=state, source=CollectorSource(collector.url, max_bytes=100))
    assert pairs_of(report) == 0 and "--records-max-bytes 100" in report.problems[0].message
    assert not state.exists()


# --- the state in a ConfigMap ----------------------------------------------------------------------


class FakeKube:
    """The API server's part in ConfigMapStore: get, and a JSON patch honouring test and resourceVersion."""

    def __init__(self, body: dict | None) -> None:
        self.body = body
        self.writes = 0

    def get(self, kind, namespace, name, cached=True):
        assert (kind, name, cached) == ("ConfigMap", "recommender-analysis-state", False)
        return copy.deepcopy(self.body)

    def json_patch(self, kind, namespace, name, operations):
        patched = copy.deepcopy(self.body)
        for op in operations:
            *parents, leaf = op["path"].strip("/").split("/")
            target = patched
            for key in parents:
                target = target[key]
            if op["op"] == "test" and target.get(leaf) != op["value"]:
                raise KubeError(422, "test failed")
            if op["op"] in ("add", "replace"):
                target[leaf] = op["value"]
        if patched["metadata"]["resourceVersion"] != self.body["metadata"]["resourceVersion"]:
            raise KubeError(409, "the object has been modified")
        patched["metadata"]["resourceVersion"] = str(int(patched["metadata"]["resourceVersion"]) + 1)
        self.body = patched
        self.writes += 1
        return copy.deepcopy(patched)


def state_map(sd, binary: dict | None = None, uid: str | None = None) -> dict:
    owner = {"apiVersion": "shadow.mlops.dev/v1alpha1", "kind": "ShadowDeployment", "name": sd.name,
             "uid": uid or sd.identity.uid, "controller": True}  # fmt: skip
    body = {"metadata": {"name": f"{sd.name}-analysis-state", "namespace": sd.namespace, "uid": "cm-1",
                         "resourceVersion": "7", "ownerReferences": [owner]}}  # fmt: skip
    if binary is not None:
        body["binaryData"] = binary
    return body


def kept_state(kube: FakeKube) -> dict:
    return json.loads(gzip.decompress(base64.b64decode(kube.body["binaryData"][STATE_KEY])))


def test_the_configmap_keeps_the_state_between_runs(tmp_path):
    sd = make_sd(SPEC)
    kube = FakeKube(state_map(sd))
    records_dir = tmp_path / "records"
    from .records_factory import write

    write(records_dir / "a.jsonl", records_at("a", 30))
    assert pairs_of(analyze(sd, [records_dir], now=NOW, state=ConfigMapStore(kube, sd))) == 30
    assert kube.writes == 1 and kept_state(kube)["aggregates"]["slices"]
    write(records_dir / "b.jsonl", records_at("b", 10))
    report = analyze(sd, [records_dir], now=NOW, state=ConfigMapStore(kube, sd))
    assert pairs_of(report) == 40 and not [p for p in report.problems if p.code.startswith("AnalysisState")]
    # the state outlives the records: what it folded stays
    (records_dir / "a.jsonl").unlink()
    assert pairs_of(analyze(sd, [records_dir], now=NOW, state=ConfigMapStore(kube, sd))) == 40


def _forged(sd, tmp_path) -> dict:
    """A valid-looking state claiming 10,000 pairs the records never had."""
    from .records_factory import write

    kube = FakeKube(state_map(sd))
    write(tmp_path / "seed" / "a.jsonl", records_at("seed", 5))
    analyze(sd, [tmp_path / "seed"], now=NOW, state=ConfigMapStore(kube, sd))
    state = kept_state(kube)
    overall = next(body for segment, hour, body in state["aggregates"]["slices"] if segment == "all" and hour is None)
    overall["pairs"] = 10_000
    return state


def _binary(document: dict | bytes) -> dict:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return {STATE_KEY: base64.b64encode(gzip.compress(raw)).decode()}


@pytest.mark.parametrize(
    "case",
    ["another owner", "no owner", "not base64", "not gzip", "truncated gzip", "gzip bomb", "oversized",
     "a count that is text", "NaN", "a cursor that is negative", "not an object"],
)  # fmt: skip
def test_a_forged_or_corrupt_state_is_refused_and_rebuilt_from_every_record(tmp_path, case):
    from .records_factory import write

    sd = make_sd(SPEC)
    forged = _forged(sd, tmp_path)
    body = state_map(sd, _binary(forged))
    if case == "another owner":
        body = state_map(sd, _binary(forged), uid="someone-else")
    elif case == "no owner":
        body["metadata"]["ownerReferences"] = []
    elif case == "not base64":
        body["binaryData"][STATE_KEY] = "!!not base64!!"
    elif case == "not gzip":
        body["binaryData"][STATE_KEY] = base64.b64encode(b"\x1f\x8bnot really").decode()
    elif case == "truncated gzip":
        body["binaryData"][STATE_KEY] = base64.b64encode(gzip.compress(json.dumps(forged).encode())[:-20]).decode()
    elif case == "gzip bomb":
        body["binaryData"][STATE_KEY] = base64.b64encode(gzip.compress(b" " * (65 << 20))).decode()
    elif case == "oversized":
        body["binaryData"][STATE_KEY] = "A" * (2 << 20)
    elif case == "a count that is text":
        forged["aggregates"]["slices"][0][2]["pairs"] = "10000"
        body = state_map(sd, _binary(forged))
    elif case == "NaN":
        body = state_map(sd, _binary(json.dumps(forged).replace('"diff_sum": 0.0', '"diff_sum": NaN').encode()))
    elif case == "a cursor that is negative":
        forged["cursors"] = {"x": {"offset": -5, "head": ""}}
        body = state_map(sd, _binary(forged))
    elif case == "not an object":
        body = state_map(sd, _binary(b"[1, 2, 3]"))
    kube = FakeKube(body)
    write(tmp_path / "records" / "a.jsonl", records_at("a", 25))
    report = analyze(sd, [tmp_path / "records"], now=NOW, state=ConfigMapStore(kube, sd))
    assert pairs_of(report) == 25  # never the forged 10,000
    assert [p.code for p in report.problems if p.code.startswith("AnalysisState")][:1] == [STATE_REBUILT]
    if case in ("another owner", "no owner"):
        assert kube.writes == 0  # a ConfigMap that is not this object's is never written either
        assert "not controlled by ShadowDeployment" in report.problems[0].message


def test_the_same_forged_state_in_the_right_shape_is_what_a_namespace_editor_could_write(tmp_path):
    """The trust boundary, stated: a well-formed state in this object's ConfigMap is believed (like the
    report); only the job's Role and namespace editors may write it, no Pod that reaches the collector."""
    sd = make_sd(SPEC)
    kube = FakeKube(state_map(sd, _binary(_forged(sd, tmp_path))))
    report = analyze(sd, [tmp_path / "none"], now=NOW, state=ConfigMapStore(kube, sd))
    assert pairs_of(report) == 10_000


def test_a_state_too_large_to_keep_is_not_kept_and_the_report_says_so(tmp_path):
    from .records_factory import write

    sd = make_sd(SPEC)
    kube = FakeKube(state_map(sd, _binary(_forged(sd, tmp_path))))
    write(tmp_path / "records" / "a.jsonl", records_at("a", 25))
    report = analyze(sd, [tmp_path / "records"], now=NOW, state=ConfigMapStore(kube, sd, max_bytes=200))
    [too_large] = [p for p in report.problems if p.code == STATE_TOO_LARGE]
    assert "full recomputation" in too_large.message
    assert kube.body["binaryData"] == {}  # emptied: the next run folds every retained record again
    report = analyze(sd, [tmp_path / "records"], now=NOW, state=ConfigMapStore(kube, sd, max_bytes=200))
    assert pairs_of(report) == 25


def test_a_concurrent_writer_loses_on_the_resource_version_and_keeps_nothing(tmp_path):
    from .records_factory import write

    sd = make_sd(SPEC)
    kube = FakeKube(state_map(sd))
    write(tmp_path / "records" / "a.jsonl", records_at("a", 20))
    slow = ConfigMapStore(kube, sd)
    slow.read("whatever")  # read at resourceVersion 7 ...
    analyze(sd, [tmp_path / "records"], now=NOW, state=ConfigMapStore(kube, sd))  # ... another run writes 8
    notices = slow.write(State("whatever"))
    assert [p.code for p in notices] == [STATE_NOT_SAVED] and "another analysis run" in notices[0].message
    assert kube.writes == 1 and kept_state(kube)["fingerprint"] != "whatever"


def test_rebuild_state_folds_every_record_again(tmp_path):
    from .records_factory import write

    sd = make_sd(SPEC)
    kube = FakeKube(state_map(sd, _binary(_forged(sd, tmp_path))))
    write(tmp_path / "records" / "a.jsonl", records_at("a", 25))
    state = Rebuilding(ConfigMapStore(kube, sd))
    assert pairs_of(analyze(sd, [tmp_path / "records"], now=NOW, state=state)) == 25
    assert pairs_of(analyze(sd, [tmp_path / "records"], now=NOW, state=ConfigMapStore(kube, sd))) == 25


def test_the_state_s_size_is_bounded_by_the_slices_not_the_records(tmp_path):
    """Folding more records into the same slices does not grow the state: its size follows slices x buckets."""
    from .records_factory import write

    sd = make_sd(SPEC)
    sizes = []
    for run_number in range(3):
        write(tmp_path / "records" / f"{run_number}.jsonl", records_at(f"r{run_number}", 400, start=NOW_TS - 3600))
        kube = FakeKube(state_map(sd))
        analyze(sd, [tmp_path / "records"], now=NOW, state=ConfigMapStore(kube, sd))
        sizes.append(len(base64.b64decode(kube.body["binaryData"][STATE_KEY])))
    assert sizes[2] < sizes[0] * 1.5, sizes
