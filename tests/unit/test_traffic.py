"""The router's pure parts: config merge, extraction, metrics text, sink, sampling."""

from __future__ import annotations

import json
import os
import time

import pytest

from shadow_operator.api.v1alpha1.recording import RecordingSpec
from shadow_operator.contract import metric_names as m
from shadow_operator.contract.records import SideResult, pair_record
from shadow_operator.router.config import ConfigError, build_config, parse_listen
from shadow_operator.router.extract import REDACTED, UNPARSEABLE, Extractor, event_time, parse_body
from shadow_operator.router.metrics import ShadowMetrics
from shadow_operator.router.mirror import mirrored
from shadow_operator.router.sink import RecordSink

FILE = {
    "name": "recommender",
    "namespace": "shop",
    "primary": "http://recommender-primary.shop.svc.cluster.local:80",
    "candidate": "http://recommender-candidate.shop.svc.cluster.local:80",
    "traffic": {"router": "builtin", "mirrorPercent": 25, "candidateTimeout": "500ms", "maxInFlight": 8},
    "recording": {"predictionPath": "$.score", "predictionType": "regression", "sink": {"rotateBytes": 2048}},
}


def test_config_from_the_file_the_operator_mounts():
    config = build_config(FILE)
    assert config.shadow == "shop/recommender"
    assert config.primary.host == "recommender-primary.shop.svc.cluster.local" and config.primary.port == 80
    assert config.traffic.mirror_percent == 25 and config.candidate_timeout == 0.5
    assert config.regression and config.recording.sink.rotate_bytes == 2048


def test_flags_override_the_file(tmp_path):
    config = build_config(
        FILE, candidate="http://127.0.0.1:9", mirror_percent=100, candidate_timeout="2s", records_dir=str(tmp_path)
    )
    assert config.candidate.port == 9 and config.traffic.mirror_percent == 100 and config.candidate_timeout == 2
    assert config.records_dir == str(tmp_path) and config.traffic.max_in_flight == 8


@pytest.mark.parametrize(
    "kwargs",
    [{"mirror_percent": 101}, {"candidate_timeout": "2 seconds"}, {"primary": "https://x:1"}, {"sample_rate": 2}],
)
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        build_config(FILE, **kwargs)


def test_listen_addresses():
    assert parse_listen("0.0.0.0:8080") == ("0.0.0.0", 8080)
    with pytest.raises(ConfigError):
        parse_listen("8080x")


def _extractor(**recording) -> Extractor:
    return Extractor(RecordingSpec.model_validate(recording, by_alias=True))


def test_bounds_buckets_and_missing():
    ex = _extractor(segments=[{"name": "history", "path": "$.f.n", "bounds": [1, 100]}])
    cases = {0: "<1", 1: "1-100", 99.5: "1-100", 100: ">=100", 5000: ">=100", "7": "1-100"}
    for value, bucket in cases.items():
        assert ex.request_facts(parse_body(json.dumps({"f": {"n": value}}).encode())).segments == {"history": bucket}
    assert ex.request_facts(parse_body(b'{"f": {}}')).segments == {"history": "missing"}
    assert ex.request_facts(parse_body(b"{not json")).segments == {"history": "missing"}
    assert ex.request_facts(parse_body(b'{"f": {"n": "lots"}}')).segments == {"history": "other"}


def test_values_and_first_distinct_values():
    ex = _extractor(
        segments=[
            {"name": "country", "path": "$.c", "values": ["de", "fr"]},
            {"name": "device", "path": "$.d"},
        ]
    )
    assert ex.request_facts(parse_body(b'{"c": "de", "d": "ios"}')).segments == {"country": "de", "device": "ios"}
    assert ex.request_facts(parse_body(b'{"c": "us"}')).segments == {"country": "other", "device": "missing"}
    buckets = {ex.request_facts(parse_body(json.dumps({"d": f"d{i}"}).encode())).segments["device"] for i in range(30)}
    assert len(buckets) == 20 and "other" in buckets  # 19 more after ios, then other
    assert ex.request_facts(parse_body(b'{"d": "ios"}')).segments["device"] == "ios"


def test_features_prediction_and_response_segments():
    ex = _extractor(
        features=["$.f.a", "$.f.b"],
        predictionPath="$.out[0].label",
        segments=[{"name": "model", "path": "$.model", "source": "response"}],
    )
    request = parse_body(b'{"f": {"a": 1, "b": null}}')
    response = parse_body(b'{"out": [{"label": "cat"}], "model": "v2"}')
    facts = ex.request_facts(request, response)
    assert facts.features == {"$.f.a": True, "$.f.b": False} and facts.segments == {"model": "v2"}
    assert ex.prediction(response) == "cat"
    assert ex.prediction(UNPARSEABLE) is None and ex.prediction(parse_body(b"[]")) is None


def test_event_time_from_the_body_or_the_arrival_time():
    arrival = 1_764_000_000.0
    assert event_time(1_763_942_400, arrival) == 1_763_942_400.0
    assert event_time("2025-11-24T00:00:00Z", arrival) == 1_763_942_400.0
    assert event_time("2025-11-24T00:00:00", arrival) == 1_763_942_400.0  # no zone: UTC
    for unusable in ("yesterday", True, None, float("nan"), -5, arrival + 3600, {"t": 1}):
        assert event_time(unusable, arrival) == arrival, unusable


def test_records_carry_the_event_time_only_when_configured():
    # An event time a day before now, not a fixed date: the test must not depend on today's date
    # (a body time after the arrival is no event time, event_time above).
    sent = float(int(time.time()) - 86400)
    doc = parse_body(json.dumps({"ts": sent, "features": {}}).encode())
    replayed = Extractor(RecordingSpec.model_validate({"eventTimePath": "$.ts"}, by_alias=True))
    before = time.time()
    facts = replayed.request_facts(doc)
    assert facts.ts == sent and before <= facts.received <= time.time()
    live = Extractor(RecordingSpec())
    before = time.time()
    facts = live.request_facts(doc)
    assert facts.ts == facts.received and before <= facts.ts <= time.time()  # the arrival time, not the body's


def test_error_text():
    ex = _extractor()
    assert ex.error_text(500, b"", parse_body(b'{"error": "KeyError: \'purchase_history\'"}')) == (
        "KeyError: 'purchase_history'"
    )
    assert ex.error_text(422, b"", {"detail": [{"loc": ["x"]}]}) == '[{"loc":["x"]}]'
    assert ex.error_text(503, b"upstream down " * 50, UNPARSEABLE) == ("upstream down " * 50).strip()[:200]
    assert ex.error_text(500, b"", UNPARSEABLE) == "HTTP 500"
    assert ex.error_text(200, b'{"error": "x"}', {"error": "x"}) is None


def test_redacted_paths_never_leave():
    ex = _extractor(
        redact=["$.user.email", "$.score"],
        predictionPath="$.score",
        segments=[{"name": "user", "path": "$.user"}, {"name": "mail", "path": "$.user.email"}],
    )
    request = parse_body(b'{"user": {"email": "alice@example.com"}}')
    assert ex.request_facts(request).segments == {"user": REDACTED, "mail": REDACTED}
    assert ex.prediction(parse_body(b'{"score": 0.3}')) == REDACTED
    scrub = ex.secrets(request)
    text = ex.error_text(400, b"", {"error": "bad address alice@example.com"}, scrub)
    assert "alice" not in text and REDACTED in text


def test_sampling_is_deterministic_and_near_the_percent():
    ids = [f"req-{i}" for i in range(1000)]
    first = {i for i in ids if mirrored(i, 10)}
    assert first == {i for i in ids if mirrored(i, 10)}
    assert 60 <= len(first) <= 140
    assert all(mirrored(i, 100) for i in ids) and not any(mirrored(i, 0) for i in ids)


def test_metrics_text_and_segment_folding():
    metrics = ShadowMetrics({"history": {"<1", "1-100", ">=100", "missing", "other"}})
    labels = metrics.segment_labels({"history": "weird"})
    assert labels == ["all", "history=other"]
    metrics.answered("primary", labels, "ok", 0.004)
    metrics.mirror.inc("dropped")
    metrics.pair(labels, None, 0.2)
    text = metrics.registry.render()
    assert f"# TYPE {m.REQUEST_DURATION} histogram" in text
    assert f'{m.REQUESTS_TOTAL}{{role="primary",segment="history=other",outcome="ok"}} 1' in text
    assert f'{m.REQUEST_DURATION}_bucket{{role="primary",segment="all",le="0.005"}} 1' in text
    assert f'{m.REQUEST_DURATION}_bucket{{role="primary",segment="all",le="0.0025"}} 0' in text
    assert f'{m.MIRROR_TOTAL}{{result="dropped"}} 1' in text
    assert f'{m.PAIRS_TOTAL}{{segment="all",agree="none"}} 1' in text
    assert f'{m.PAIR_ABS_DIFF}_count{{segment="history=other"}} 1' in text


def test_every_series_names_its_shadow_deployment():
    """A Prometheus shared by many ShadowDeployments must tell their routers' series apart."""
    metrics = ShadowMetrics({"history": None}, shadow='team-a/rec"sys')
    metrics.answered("candidate", ["all"], "http_5xx", 0.2)
    metrics.pair(["all"], True, None)
    series = [line for line in metrics.registry.render().splitlines() if line and not line.startswith("#")]
    assert series, "something rendered"
    assert all('shadow="team-a/rec\\"sys"' in line for line in series), [
        line for line in series if "shadow=" not in line
    ]
    bucket = f'{m.REQUEST_DURATION}_bucket{{role="candidate",segment="all",shadow="team-a/rec\\"sys",le="0.25"}} 1'
    assert bucket in series


def _record(i: int) -> dict:
    side = SideResult("ok", 1.0, 200, i)
    return pair_record("ns/x", f"id-{i}", 0.0, {}, {}, side, side)


def test_sink_rotates_and_names_files(tmp_path):
    metrics = ShadowMetrics()
    sink = RecordSink(tmp_path, metrics, rotate_bytes=1024, batch=4)
    for i in range(100):
        sink.submit(_record(i))
    sink.close()
    files = sorted(tmp_path.glob("records-*.jsonl"))
    assert len(files) > 3
    assert all(f.name.startswith("records-") and f"-{os.getpid()}-" in f.name for f in files)
    ids = [json.loads(line)["id"] for f in files for line in f.read_text().splitlines()]
    assert sorted(ids) == sorted(f"id-{i}" for i in range(100))
    assert metrics.records_written.get() == 100


def test_sink_errors_are_counted_never_raised(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    metrics = ShadowMetrics()
    sink = RecordSink(blocker / "records", metrics)  # a directory under a regular file
    for i in range(10):
        sink.submit(_record(i))
        sink.flush_wait()
    sink.close()
    assert metrics.records_dropped.get("sink_error") == 10
    assert len([r for r in caplog.records if "cannot write records" in r.getMessage()]) == 1


def test_sink_sampling_and_full_queue(tmp_path):
    metrics = ShadowMetrics()
    sink = RecordSink(tmp_path, metrics, sample_rate=0.5, seed=1)
    for i in range(1000):
        sink.submit(_record(i))
    sink.close()
    sampled_out = metrics.records_dropped.get("sampled_out")
    assert 400 < sampled_out < 600 and metrics.records_written.get() == 1000 - sampled_out
    tiny = RecordSink(tmp_path / "t", metrics, queue_size=1)
    for i in range(500):
        tiny.submit(_record(i))
    tiny.close()
    assert metrics.records_dropped.get("queue_full") > 0


def test_side_result_as_dict_is_asdict():
    """Records use the hand-written as_dict (speed); it must stay what dataclasses.asdict gives."""
    import dataclasses

    side = SideResult("http_5xx", 3.1, 500, {"score": [1, 2]}, "KeyError: 'x'")
    assert list(side.as_dict().items()) == list(dataclasses.asdict(side).items())
