"""The builtin router over real sockets (loopback only, no cluster): `shadowctl router` as a
subprocess in front of small asyncio upstreams written here."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shadow_operator.contract import metric_names as m
from shadow_operator.contract.records import OUTCOMES, SideResult, pair_record
from shadow_operator.router.mirror import mirrored

from ..support.data_path import Router
from ..support.ports import free_port
from .harness import stop_loop, wait_for

REPO = Path(__file__).resolve().parents[2]
BINARY = bytes(range(256)) * 64
SECRET = "alice@example.com"

pytestmark = pytest.mark.timeout(60)


# --- upstreams -----------------------------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return lines[0], headers, body


def _answer(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n" % (status, len(body), extra) + body


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _primary(reader, writer) -> None:
    while True:
        line, headers, body = await _read_request(reader)
        target = line.split()[1]
        if target == b"/binary":
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/octet-stream\r\nX-Multi: a\r\nX-Multi: b\r\n"
                b"Set-Cookie: s=1; Path=/\r\nContent-Length: %d\r\n\r\n" % len(BINARY) + BINARY
            )
        elif target == b"/notjson":
            writer.write(_answer(200, b"<html>not json</html>", b"Content-Type: text/html\r\n"))
        elif target == b"/missing":
            writer.write(_answer(404, b'{"detail": "no such model"}'))
        elif target == b"/echo-headers":
            writer.write(_answer(200, json.dumps({k.decode(): v.decode() for k, v in headers.items()}).encode()))
        else:
            try:
                prediction = json.loads(body).get("x", 1)
            except (ValueError, AttributeError):
                prediction = 1
            out = json.dumps({"prediction": prediction, "len": len(body)}).encode()
            writer.write(_answer(200, out, b"Content-Type: application/json\r\nX-Model: primary\r\n"))
        await writer.drain()


async def _candidate(reader, writer) -> None:
    """Behaves as the request's $.mode says: ok, 404, 500, slow, hang, reset, garbage, echo."""
    while True:
        _, headers, body = await _read_request(reader)
        try:
            doc = json.loads(body)
            mode = doc.get("mode", "ok") if isinstance(doc, dict) else "ok"
        except ValueError:
            doc, mode = {}, "ok"
        if mode == "reset":
            _reset(writer)
            return
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "slow":
            await asyncio.sleep(2)
        if mode == "garbage":
            writer.write(b"\x00\x01 this is not HTTP\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if mode == "500":
            writer.write(_answer(500, b'{"error": "KeyError: \'purchase_history\'"}'))
        elif mode == "500echo":
            writer.write(_answer(500, json.dumps({"error": f"bad user {doc['user']['email']}"}).encode()))
        elif mode == "404":
            writer.write(_answer(404, b"nope"))
        elif mode == "nonjson":
            writer.write(_answer(200, b"plain text answer"))
        elif mode == "echo":
            echoed = {k.decode(): v.decode() for k, v in headers.items()}
            writer.write(_answer(200, json.dumps({"prediction": echoed}).encode()))
        else:
            writer.write(_answer(200, json.dumps({"prediction": doc.get("y", doc.get("x", 1))}).encode()))
        await writer.drain()


async def _resetter(reader, writer) -> None:
    await _read_request(reader)
    _reset(writer)


async def _hanger(reader, writer) -> None:
    await _read_request(reader)
    await asyncio.sleep(3600)


class Upstreams:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ports: dict[str, int] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def serve(self, name: str, handler) -> None:
        async def start():
            async def guarded(reader, writer):
                try:
                    await handler(reader, writer)
                except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
                    writer.close()

            server = await asyncio.start_server(guarded, "127.0.0.1", 0)
            return server.sockets[0].getsockname()[1]

        self.ports[name] = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


@pytest.fixture(scope="module")
def upstreams():
    ups = Upstreams()
    for name, handler in [("primary", _primary), ("candidate", _candidate), ("reset", _resetter), ("hang", _hanger)]:
        ups.serve(name, handler)
    yield ups
    stop_loop(ups.loop, ups.thread)


# --- the router ----------------------------------------------------------------------------


@pytest.fixture
def start(tmp_path, upstreams):
    routers: list[Router] = []

    def start(*args: str, candidate: str = "candidate", config: dict | None = None, name: str = "r") -> Router:
        extra = list(args)
        if config is not None:
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(config))
            extra += ["--config", str(path)]
        router = Router(
            ["--primary", upstreams.url("primary"), "--candidate", upstreams.url(candidate), *extra],
            tmp_path / name,
        )
        routers.append(router)
        return router

    yield start
    for router in routers:
        if router.process.poll() is None:
            router.process.kill()
            router.process.wait()


CONFIG = {
    "name": "recommender",
    "namespace": "shop",
    "traffic": {"router": "builtin", "candidateTimeout": "1s"},
    "recording": {
        "segments": [
            {"name": "history", "path": "$.features.purchase_count", "bounds": [1, 100]},
            {"name": "mail", "path": "$.user.email"},
        ],
        "features": ["$.features.purchase_count"],
        "redact": ["$.user.email"],
    },
}


def _direct(upstreams, method: str, path: str, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", upstreams.ports["primary"], timeout=5)
    conn.request(method, path, body=body)
    response = conn.getresponse()
    result = response.status, response.getheaders(), response.read()
    conn.close()
    return result


def _comparable(headers):
    return [(k.lower(), v) for k, v in headers if k.lower() not in ("content-length", "connection")]


# --- tests ---------------------------------------------------------------------------------


def test_answers_pass_through_byte_for_byte(start, upstreams):
    router = start(config=CONFIG)
    conn = router.connection()
    for method, path, body in [
        ("GET", "/binary", None),
        ("POST", "/predict", b'{"x": 3}'),
        ("POST", "/missing", b"{}"),
        ("GET", "/notjson", None),
        ("POST", "/predict", BINARY),
    ]:
        direct = _direct(upstreams, method, path, body)
        conn.request(method, path, body=body)
        response = conn.getresponse()
        via = response.status, response.getheaders(), response.read()
        assert via[0] == direct[0] and via[2] == direct[2], path
        assert _comparable(via[1]) == _comparable(direct[1]), path
        assert response.getheader("content-length") == str(len(direct[2]))
    conn.close()
    # the request id reaches the primary (created when absent), the copy is marked
    _, _, body = router.post({"mode": "echo"}, path="/echo-headers", request_id="abc123")
    assert json.loads(body)["x-request-id"] == "abc123"
    router.post({"mode": "echo"}, path="/echo-headers")
    records = router.stop()
    assert len(records) == 7
    by_id = {r["id"]: r for r in records}
    assert "abc123" in by_id and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in by_id if i != "abc123")


def test_candidate_copy_is_marked(start):
    router = start("--mirror-percent", "100")
    status, _, _ = router.post({"mode": "echo"}, request_id="mark-1")
    assert status == 200
    seen = router.stop()[0]["candidate"]["prediction"]  # the candidate echoes the headers it got
    assert seen["host"] == f"127.0.0.1:{router.port}-shadow"
    assert seen["x-shadow-request"] == "true" and seen["x-request-id"] == "mark-1"


def test_large_bodies_go_to_the_primary_only(start):
    router = start("--max-body-bytes", "1000", config=CONFIG)
    status, _, body = router.post(b'{"x": "' + b"a" * 5000 + b'"}')
    assert status == 200 and json.loads(body)["len"] == 5009
    conn = router.connection()  # chunked request body: primary only
    conn.putrequest("POST", "/predict")
    conn.putheader("transfer-encoding", "chunked")
    conn.endheaders()
    conn.send(b'5\r\n{"x":\r\n3\r\n 7}\r\n0\r\n\r\n')
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["prediction"] == 7
    conn.close()
    assert router.metric(m.MIRROR_TOTAL, result="skipped_large_body") == 2
    assert router.stop() == []


def test_sampling_is_deterministic_across_runs(start):
    ids = [f"id-{i}" for i in range(300)]
    mirrored_sets = []
    for run in range(2):
        router = start("--mirror-percent", "30", name=f"run{run}")
        conn = router.connection()
        for request_id in ids:
            router.post({"x": 1}, request_id=request_id, conn=conn)
        conn.close()
        router.wait_metric(m.PAIRS_TOTAL, sum(mirrored(i, 30) for i in ids), segment="all", agree="true")
        mirrored_sets.append({r["id"] for r in router.stop()})
    assert mirrored_sets[0] == mirrored_sets[1] == {i for i in ids if mirrored(i, 30)}
    assert 60 <= len(mirrored_sets[0]) <= 120


def test_in_flight_bound_drops_copies_and_returns_to_zero(start):
    router = start("--max-in-flight", "4", "--candidate-timeout", "1s", candidate="hang")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: router.post({"x": i}), range(40)))
    assert all(status == 200 for status, _, _ in answers)
    assert [json.loads(body)["prediction"] for _, _, body in answers] == list(range(40))
    sampled = router.metric(m.MIRROR_TOTAL, result="sampled")
    assert router.metric(m.MIRROR_TOTAL, result="dropped") == 40 - sampled and 4 <= sampled < 40
    assert router.wait_metric("shadow_mirror_in_flight", 0, timeout=5) == 0
    assert router.metric(m.MIRROR_TOTAL, result="timeout") == sampled
    records = router.stop()
    assert len(records) == sampled and {r["candidate"]["outcome"] for r in records} == {"timeout"}


def test_every_outcome_class_is_recorded(start):
    # The timeout class comes from a candidate that never answers, so the timeout can be long
    # enough that the others answer within it on a loaded machine (500 ms, with a candidate
    # answering in 2 s as the timeout case, failed there).
    candidate_timeout = 3
    router = start("--candidate-timeout", f"{candidate_timeout}s", config=CONFIG)
    modes = ["ok", "404", "500", "hang", "reset", "garbage", "nonjson"]
    for mode in modes:
        status, _, _ = router.post({"mode": mode, "x": 5, "features": {"purchase_count": 3}}, request_id=mode)
        assert status == 200
    router.post({"mode": "ok"}, path="/missing", request_id="primary-404")
    router.wait_metric(m.PAIRS_TOTAL, 8, timeout=candidate_timeout * 5, segment="all", agree="none")
    by_id = {r["id"]: r for r in router.stop()}
    outcome = {i: r["candidate"]["outcome"] for i, r in by_id.items()}
    assert outcome == {
        "ok": "ok", "404": "http_4xx", "500": "http_5xx", "hang": "timeout", "reset": "connection_error",
        "garbage": "connection_error", "nonjson": "ok", "primary-404": "ok",
    }  # fmt: skip
    assert set(outcome.values()) == set(OUTCOMES)
    assert by_id["500"]["candidate"]["error"] == "KeyError: 'purchase_history'"
    assert by_id["500"]["candidate"]["status"] == 500 and by_id["500"]["agree"] is None
    assert by_id["ok"]["agree"] is True and by_id["ok"]["primary"]["prediction"] == 5
    assert by_id["nonjson"]["candidate"]["prediction"] is None
    assert by_id["primary-404"]["primary"] == {**by_id["primary-404"]["primary"], "outcome": "http_4xx",
                                               "status": 404, "error": "no such model"}  # fmt: skip
    assert by_id["ok"]["segments"] == {"history": "1-100", "mail": "[redacted]"}


def test_record_format_matches_records_py(start):
    router = start(config=CONFIG)
    router.post({"x": 2, "features": {"purchase_count": 0}}, request_id="fmt")
    router.post({"x": 2}, request_id="nofeat")
    records = {r["id"]: r for r in router.stop()}
    side = SideResult("ok", 1.0)
    expected = pair_record("shop/recommender", "fmt", 0.0, {}, {}, side, side)
    for record in records.values():
        assert set(record) == set(expected) and record["v"] == 1 and record["shadow"] == "shop/recommender"
        assert set(record["primary"]) == set(expected["primary"]) == set(record["candidate"])
        assert isinstance(record["ts"], float) and abs(record["ts"] - time.time()) < 60
    assert records["fmt"]["features"] == {"$.features.purchase_count": True}
    assert records["fmt"]["segments"]["history"] == "<1"
    assert records["nofeat"]["features"] == {"$.features.purchase_count": False}
    assert records["nofeat"]["segments"]["history"] == "missing"


def test_redacted_values_never_reach_the_records(start):
    router = start(config=CONFIG)
    for mode in ("ok", "500echo"):
        router.post({"mode": mode, "user": {"email": SECRET}, "x": 1})
    records = router.stop()
    assert len(records) == 2
    text = "".join(f.read_text() for f in router.records.glob("*.jsonl"))
    assert SECRET not in text and "[redacted]" in text


def test_metrics_names_and_labels(start):
    router = start(config=CONFIG)
    router.post({"x": 1, "features": {"purchase_count": 150}})
    router.post({"x": 1, "mode": "500"})
    router.wait_metric(m.PAIRS_TOTAL, 1, segment="all", agree="true")
    router.wait_metric(m.PAIRS_TOTAL, 1, segment="all", agree="none")
    text = router.metrics()
    for name in (m.REQUESTS_TOTAL, m.MIRROR_TOTAL, m.PAIRS_TOTAL, m.FEATURE_MISSING_TOTAL, m.RECORDS_DROPPED_TOTAL):
        assert f"# TYPE {name} counter" in text
    for name in (m.REQUEST_DURATION, m.PAIR_ABS_DIFF):
        assert f"# TYPE {name} histogram" in text
    assert router.metric(m.REQUESTS_TOTAL, role="primary", segment="history=>=100", outcome="ok") == 1
    assert router.metric(m.REQUESTS_TOTAL, role="candidate", segment="history=missing", outcome="http_5xx") == 1
    assert router.metric(m.REQUESTS_TOTAL, role="primary", segment="mail=[redacted]", outcome="ok") == 2
    assert router.metric(f"{m.REQUEST_DURATION}_count", role="candidate", segment="all") == 2
    assert router.metric(m.MIRROR_TOTAL, result="sampled") == 2
    assert router.metric(m.FEATURE_MISSING_TOTAL, feature="$.features.purchase_count", role="primary") == 1
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    shadow = f'{m.SHADOW_LABEL}="{CONFIG["namespace"]}/{CONFIG["name"]}"'
    assert series and all(shadow in line for line in series), "every series names its ShadowDeployment"
    for probe in ("/healthz", "/readyz"):
        conn = http.client.HTTPConnection("127.0.0.1", router.admin_port, timeout=5)
        conn.request("GET", probe)
        assert conn.getresponse().status == 200
        conn.close()
    router.stop()


def _raw(router: Router, payload: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(payload)
        if not read:
            return b""
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_bad_inputs_do_not_hurt_the_router(start):
    router = start(config=CONFIG)
    status, _, body = router.post(b'{"x": 1, "features": {')  # malformed JSON: forwarded, segments missing
    assert status == 200
    assert _raw(router, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")
    huge = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(100))
    assert _raw(router, huge + b"\r\n").startswith(b"HTTP/1.1 431")
    _raw(router, b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"x":', read=False)
    conn = router.connection()  # client leaving right after sending a full request
    conn.request("POST", "/predict", body=b'{"mode": "slow"}')
    conn.close()
    status, _, body = router.post({"x": 9})
    assert status == 200 and json.loads(body)["prediction"] == 9
    records = {r["id"]: r for r in router.stop()}
    malformed = [r for r in records.values() if r["segments"]["history"] == "missing"]
    assert malformed and all(r["primary"]["outcome"] == "ok" for r in records.values())


def test_primary_down_is_a_502_and_recorded(start, upstreams, tmp_path):
    router = Router(
        ["--primary", f"http://127.0.0.1:{free_port()}", "--candidate", upstreams.url("candidate")],
        tmp_path / "down",
    )
    status, _, _ = router.post({"x": 1}, request_id="down")
    assert status == 502
    records = router.stop()
    assert records[0]["primary"]["outcome"] == "connection_error" and records[0]["candidate"]["outcome"] == "ok"


def test_fds_stay_flat_with_a_resetting_candidate(start):
    router = start("--max-in-flight", "64", candidate="reset")
    conn = router.connection()
    for i in range(200):
        router.post({"x": i}, conn=conn)
    time.sleep(0.3)
    warm = router.fds()
    for i in range(2000):
        status, _, _ = router.post({"x": i}, conn=conn)
        assert status == 200
    conn.close()
    router.wait_metric("shadow_mirror_in_flight", 0)
    # The router closes the reset connections as it notices them: waited for, not slept on.
    wait_for(lambda: router.fds() <= warm + 8, timeout=10, what=f"the router's fds back to at most {warm} + 8")
    # After 20 refused copies in a row the circuit opens: the rest are skipped and counted, with
    # one probe a second, so the router stops paying a new connection per request.
    refused = router.metric(m.REQUESTS_TOTAL, role="candidate", segment="all", outcome="connection_error")
    skipped = router.metric(m.MIRROR_TOTAL, result="circuit_open")
    assert refused >= 20 and skipped > 0
    assert refused + skipped == 2200
    router.stop()


def test_recorder_writes_one_sided_records(upstreams, tmp_path):
    router = Router.__new__(Router)
    router.port, router.admin_port, router.records = free_port(), free_port(), tmp_path / "rec"
    router.process = subprocess.Popen(
        [sys.executable, "-m", "shadow_operator.cli", "recorder", "--upstream", upstreams.url("candidate"),
         "--role", "candidate", "--shadow", "shop/recommender", "--records", str(router.records),
         "--listen", f"127.0.0.1:{router.port}", "--admin-listen", f"127.0.0.1:{router.admin_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "operator")},
    )  # fmt: skip
    assert router.process.stdout.readline().startswith("listening")
    assert router.post({"x": 4}, request_id="one")[0] == 200
    assert router.post({"mode": "500"}, request_id="two")[0] == 500
    records = {r["id"]: r for r in router.stop()}
    assert records["one"]["role"] == "candidate" and records["one"]["result"]["prediction"] == 4
    assert records["two"]["result"]["outcome"] == "http_5xx" and "primary" not in records["two"]


def test_upstream_pool_keeps_connections_alive():
    """Keep-alive answers go back to the pool: three requests, one TCP connection."""
    from shadow_operator.router.config import Upstream
    from shadow_operator.router.upstream import UpstreamPool

    connections = []

    async def serve(reader, writer):
        connections.append(writer)
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    async def scenario():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool(Upstream(url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port))
        bodies = [(await pool.request(b"GET", b"/", [(b"host", b"x")], b"")).body for _ in range(3)]
        await pool.aclose()
        server.close()
        return bodies

    assert asyncio.run(scenario()) == [b"ok"] * 3
    assert len(connections) == 1


def test_upstream_pool_closes_connections_a_burst_left_idle():
    """After a burst, steady traffic reuses the newest connection and the rest are closed once idle."""
    from shadow_operator.router.config import Upstream
    from shadow_operator.router.upstream import UpstreamPool

    open_connections = set()

    async def serve(reader, writer):
        open_connections.add(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(0.05)  # slow enough that a burst needs a connection per request
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_connections.discard(writer)

    async def scenario():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        upstream = Upstream(url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port)
        pool = UpstreamPool(upstream, max_idle=16, idle_timeout=0.3)

        def get():
            return pool.request(b"GET", b"/", [(b"host", b"x")], b"")

        await asyncio.gather(*(get() for _ in range(6)))
        after_burst = len(open_connections)
        for _ in range(8):  # steady, one at a time, for longer than the idle timeout
            await get()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)  # the server notices the closed connections
        after_steady, pool_open = len(open_connections), len(pool.open)
        await pool.aclose()
        server.close()
        return after_burst, after_steady, pool_open

    after_burst, after_steady, pool_open = asyncio.run(scenario())
    assert after_burst == 6
    assert after_steady == 1 and pool_open == 1
