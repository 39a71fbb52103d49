"""The record collector (router/collector.py) and the shipper (router/shipper.py), in-process on loopback."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from shadow_operator.contract.records import SideResult, pair_record
from shadow_operator.router.collector import CollectorMetrics, CollectorServer, RecordStore, Rejected
from shadow_operator.router.metrics import Registry, ShadowMetrics
from shadow_operator.router.shipper import Shipper, source_name
from shadow_operator.router.sink import RecordSink

from ..support.ports import free_port

pytestmark = pytest.mark.timeout(60)
FILE = "records-pod-1-ab12cd-0.jsonl"


def _store(tmp_path: Path, retention_bytes: int = 1 << 30, retention_age: float = 3600.0) -> RecordStore:
    return RecordStore(tmp_path / "store", CollectorMetrics(), retention_bytes, retention_age)


def _lines(*ids: int) -> bytes:
    return b"".join(b'{"id": %d}\n' % i for i in ids)


# --- the store: the protocol's rules ------------------------------------------------------------


def test_append_duplicate_and_overlap(tmp_path):
    store = _store(tmp_path)
    first, second = _lines(1, 2), _lines(3)
    assert store.append("pod-1", FILE, 0, first) == len(first)
    # A retry of what is stored: acknowledged, not stored twice.
    assert store.append("pod-1", FILE, 0, first) == len(first)
    assert store.metrics.duplicate_bytes.get() == len(first)
    # A retry that overlaps and goes further: only the new lines are appended.
    assert store.append("pod-1", FILE, 0, first + second) == len(first + second)
    assert (tmp_path / "store" / "pod-1" / FILE).read_bytes() == first + second
    assert store.metrics.received_records.get() == 3


def test_an_offset_past_the_stored_size_is_409_with_the_size_to_resume_from(tmp_path):
    store = _store(tmp_path)
    store.append("pod-1", FILE, 0, _lines(1))
    with pytest.raises(Rejected) as refused:
        store.append("pod-1", FILE, 500, _lines(2))
    assert refused.value.status == 409 and refused.value.size == len(_lines(1))


def test_an_overlap_off_a_line_boundary_is_not_the_same_file(tmp_path):
    store = _store(tmp_path)
    store.append("pod-1", FILE, 0, b'{"id": 1}\n')
    with pytest.raises(Rejected) as refused:
        store.append("pod-1", FILE, 0, b'{"id": 11}\n{"id": 2}\n')
    assert refused.value.status == 409 and refused.value.size == 10


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("..", FILE),
        (".hidden", FILE),
        ("pod/1", FILE),
        ("pod-1", "../../etc/passwd"),
        ("pod-1", "..jsonl"),
        ("pod-1", "records.txt"),
        ("pod-1", "a" * 300 + ".jsonl"),
        ("p" * 200, FILE),
        ("pod-1", "rec@1.jsonl"),
        ("", FILE),
    ],
)
def test_names_that_could_leave_the_directory_are_refused(tmp_path, source, name):
    store = _store(tmp_path)
    with pytest.raises(Rejected) as refused:
        store.append(source, name, 0, _lines(1))
    assert refused.value.status == 400 and refused.value.reason == "bad_name"
    assert list((tmp_path / "store").iterdir()) == []


def test_a_partial_line_is_refused(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(Rejected) as refused:
        store.append("pod-1", FILE, 0, b'{"id": 1}\n{"id"')
    assert refused.value.reason == "partial_line"


def test_retention_by_bytes_deletes_the_least_recently_written_whole_files(tmp_path):
    store = _store(tmp_path, retention_bytes=250)
    for index in range(5):
        store.append("pod-1", f"records-f-{index}.jsonl", 0, b"x" * 99 + b"\n")
        time.sleep(0.01)
    kept = sorted(f.name for f in store.listing())
    assert kept == ["records-f-3.jsonl", "records-f-4.jsonl"]
    assert store.total_bytes() == 200
    assert store.metrics.retention_files.get("bytes") == 3
    assert sorted(p.name for p in (tmp_path / "store" / "pod-1").iterdir()) == kept


def test_retention_by_age_and_a_writer_that_keeps_appending_continues_in_a_new_part(tmp_path):
    store = _store(tmp_path, retention_age=60)
    store.append("pod-1", FILE, 0, _lines(1))
    store.enforce_age(now=time.time() + 61)
    assert store.listing() == [] and store.metrics.retention_files.get("age") == 1
    # The writer does not know: it sends its next lines at its offset, and the collector takes them
    # instead of asking for everything retention just removed.
    size = len(_lines(1))
    assert store.append("pod-1", FILE, size, _lines(2)) == size + len(_lines(2))
    (part,) = store.listing()
    assert part.path.name == f"records-pod-1-ab12cd-0@{size}.jsonl" and part.path.read_bytes() == _lines(2)
    # A restart finds the part and its offset again.
    again = _store(tmp_path, retention_age=60)
    assert again.size("pod-1", FILE) == size + len(_lines(2))


def test_a_restart_keeps_the_files_and_cuts_a_torn_last_line(tmp_path):
    store = _store(tmp_path)
    store.append("pod-1", FILE, 0, _lines(1, 2))
    with open(tmp_path / "store" / "pod-1" / FILE, "ab") as torn:
        torn.write(b'{"id": 3')  # a crash in the middle of a write
    again = _store(tmp_path)
    assert again.size("pod-1", FILE) == len(_lines(1, 2))
    assert again.append("pod-1", FILE, len(_lines(1, 2)), _lines(3)) == len(_lines(1, 2, 3))


# --- the server over a socket --------------------------------------------------------------------


class Collector:
    """A CollectorServer on its own event loop thread, on a free loopback port."""

    def __init__(self, root: Path, retention_bytes: int = 1 << 30, port: int = 0, **server_args) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.metrics = CollectorMetrics()

        async def start() -> int:
            self.store = RecordStore(root, self.metrics, retention_bytes, 3600)
            self.server = CollectorServer(self.store, self.metrics, **server_args)
            return await self.server.start("127.0.0.1", port)

        self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def stop_all() -> None:
            await self.server.stop()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]  # kept-alive connections
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop_all(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=body)
        response = conn.getresponse()
        result = response.status, response.read()
        conn.close()
        return result

    def records(self) -> bytes:
        status, body = self.request("GET", "/v1/records")
        assert status == 200
        return body


@pytest.fixture
def collector(tmp_path):
    started = Collector(tmp_path / "collector")
    yield started
    started.stop()


def test_http_append_resume_and_read_back(collector):
    path = f"/v1/records/pod-1/{FILE}"
    assert collector.request("POST", f"{path}?offset=0", _lines(1, 2)) == (200, b'{"size": 20}\n')
    assert collector.request("POST", f"{path}?offset=0", _lines(1, 2)) == (200, b'{"size": 20}\n')
    status, body = collector.request("POST", f"{path}?offset=40", _lines(9))
    assert status == 409 and json.loads(body)["size"] == 20
    assert collector.request("POST", f"{path}?offset=20", _lines(3))[0] == 200
    assert collector.request("POST", "/v1/records/pod-2/records-b.jsonl?offset=0", _lines(4))[0] == 200
    assert sorted(collector.records().splitlines()) == sorted(_lines(1, 2, 3, 4).splitlines())
    status, body = collector.request("GET", "/v1/files")
    listing = json.loads(body)
    assert status == 200 and listing["bytes"] == 40 and {f["source"] for f in listing["files"]} == {"pod-1", "pod-2"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", f"/v1/records/pod-1/{FILE}", _lines(1), 400),  # no offset
        ("POST", f"/v1/records/pod-1/{FILE}?offset=-1", _lines(1), 400),
        ("POST", f"/v1/records/pod-1/{FILE}?offset=0&offset=1", _lines(1), 400),
        ("POST", f"/v1/records/%2e%2e/{FILE}?offset=0", _lines(1), 400),
        ("POST", "/v1/records/pod-1/..%2f..%2fetc%2fpasswd?offset=0", _lines(1), 400),
        ("POST", f"/v1/records/a/b/{FILE}?offset=0", _lines(1), 400),
        ("DELETE", "/v1/records", None, 405),
        ("GET", "/nope", None, 404),
    ],
)
def test_bad_requests_are_refused_and_counted(collector, method, path, body, status):
    assert collector.request(method, path, body)[0] == status
    assert sum(collector.metrics.rejected.values.values()) == 1
    assert collector.store.listing() == []


def test_oversize_bodies_slow_clients_and_too_many_connections(tmp_path):
    collector = Collector(tmp_path / "c", max_body=1024, max_connections=2, header_timeout=0.3, body_timeout=0.3)
    try:
        status, body = collector.request("POST", f"/v1/records/pod-1/{FILE}?offset=0", b"x" * 2047 + b"\n")
        assert status == 413 and b"smaller chunks" in body
        # A client that announces a body and never sends it is cut off.
        slow = socket.create_connection(("127.0.0.1", collector.port))
        slow.sendall(b"POST /v1/records/pod-1/" + FILE.encode() + b"?offset=0 HTTP/1.1\r\ncontent-length: 10\r\n\r\n")
        assert b" 408 " in slow.recv(1024)
        slow.close()
        # Connections past the cap are answered 503 at once; the ones held open do not starve the rest for long.
        held = [socket.create_connection(("127.0.0.1", collector.port)) for _ in range(2)]
        time.sleep(0.05)
        assert collector.request("GET", "/v1/files")[0] == 503
        for sock in held:
            sock.close()
        time.sleep(0.4)
        assert collector.request("GET", "/v1/files")[0] == 200
        rejected = collector.metrics.rejected
        assert rejected.get("too_large") == 1 and rejected.get("timeout") == 1
        assert rejected.get("too_many_connections") == 1
        # An oversized header block.
        big = socket.create_connection(("127.0.0.1", collector.port))
        big.sendall(b"GET /v1/files HTTP/1.1\r\nx: " + b"a" * 70000 + b"\r\n\r\n")
        assert b" 431 " in big.recv(1024)
        big.close()
    finally:
        collector.stop()


# --- the shipper ---------------------------------------------------------------------------------


def _shipper(spool: Path, url: str, active=lambda: None, **kwargs) -> tuple[Shipper, list[int], Registry]:
    dropped: list[int] = []
    registry = Registry()
    shipper = Shipper(spool, url, registry, active=active, on_drop=dropped.append, interval=3600, source="pod-1",
                      **kwargs)  # fmt: skip
    return shipper, dropped, registry


def test_ships_only_whole_lines_and_keeps_the_active_file(tmp_path, collector):
    spool = tmp_path / "spool"
    spool.mkdir()
    active = spool / "records-a-0.jsonl"
    active.write_bytes(_lines(1, 2) + b'{"id": 3')  # the sink is in the middle of a line
    shipper, _, registry = _shipper(spool, collector.url, active=lambda: active)
    shipper.ship_once()
    assert collector.records() == _lines(1, 2)
    with active.open("ab") as f:
        f.write(b"}\n")
    shipper.ship_once()
    assert collector.records() == _lines(1, 2, 3)
    assert active.exists()  # still being written: never deleted
    assert "shadow_records_shipped_total 3" in registry.render()
    shipper.close(1)


def test_shipped_rotated_files_are_deleted_and_chunks_are_bounded(tmp_path, collector):
    spool = tmp_path / "spool"
    spool.mkdir()
    closed = spool / "records-a-0.jsonl"
    closed.write_bytes(_lines(*range(1000)))
    shipper, _, _ = _shipper(spool, collector.url, chunk_bytes=1000)
    assert shipper.ship_once() is True
    assert not closed.exists()
    assert collector.records() == _lines(*range(1000))
    (stored,) = collector.store.listing()
    assert stored.size == len(_lines(*range(1000)))
    shipper.close(1)


def test_resumes_after_the_collector_restarts_empty(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    active = spool / "records-a-0.jsonl"
    active.write_bytes(_lines(1, 2))
    first = Collector(tmp_path / "first")
    shipper, _, registry = _shipper(spool, first.url, active=lambda: active)
    shipper.ship_once()
    port = first.port
    first.stop()
    # Down: the attempt fails, is counted, and the lines wait in the spool.
    with active.open("ab") as f:
        f.write(_lines(3))
    assert shipper.ship_once() is False
    assert 'shadow_records_ship_failures_total{reason="unreachable"} 1' in registry.render()
    # Back on the same address with an empty directory (an emptyDir after a restart): the 409 says
    # where it is, and the shipper sends again what its spool still holds.
    second = Collector(tmp_path / "second", port=port)
    try:
        shipper.ship_once()
        assert second.records() == _lines(1, 2, 3)
    finally:
        shipper.close(1)
        second.stop()


def test_the_spool_is_bounded_while_the_collector_is_down(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    for index in range(5):
        path = spool / f"records-a-{index}.jsonl"
        path.write_bytes(_lines(*range(10)))  # 10 records, 100 bytes
        os.utime(path, (1000 + index, 1000 + index))
    active = spool / "records-a-4.jsonl"
    dead = f"http://127.0.0.1:{free_port()}"
    shipper, dropped, _ = _shipper(spool, dead, active=lambda: active, spool_bytes=250)
    shipper.ship_once()
    assert sorted(p.name for p in spool.iterdir()) == ["records-a-3.jsonl", "records-a-4.jsonl"]
    assert sum(dropped) == 30  # the three oldest files' records, counted
    shipper.close(0.2)


def test_close_ships_what_the_sink_wrote_last(tmp_path, collector):
    """The sink's close (SIGTERM) writes the queue, closes the file and ships it within the deadline."""
    metrics = ShadowMetrics()
    spool = tmp_path / "spool"
    sink = RecordSink(spool, metrics, rotate_bytes=2048, collector=collector.url, ship_interval=3600)
    side = SideResult("ok", 1.0, 200, 1)
    for i in range(200):
        sink.submit(pair_record("ns/x", f"id-{i}", 0.0, {}, {}, side, side))
    sink.close()
    ids = sorted(json.loads(line)["id"] for line in collector.records().splitlines())
    assert ids == sorted(f"id-{i}" for i in range(200))
    assert list(spool.iterdir()) == []  # every file shipped and deleted
    assert "shadow_records_shipped_total 200" in metrics.registry.render()


def test_source_names_are_what_the_collector_accepts():
    assert source_name("recommender-router-7d9f-abcde") == "recommender-router-7d9f-abcde"
    assert source_name("../weird host/") == "-weird-host-"
    assert source_name("") != ""


def test_the_running_collector_deletes_records_past_both_retention_limits_on_real_files_and_time(tmp_path):
    """`collector.run` as `shadowctl collector` runs it: tiny limits, the real clock, files on disk."""
    from shadow_operator.router.collector import run

    root = tmp_path / "records"
    port = free_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    args = (str(root), ("127.0.0.1", port), ("127.0.0.1", 0))
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            loop.run_until_complete(run(*args, retention_bytes=300, retention_age=1.0, stop=stop, retention_every=0.1))
        ),
        daemon=True,
    )
    thread.start()

    def post(name: str, offset: int, body: bytes) -> int:
        for _ in range(100):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("POST", f"/v1/records/pod-1/{name}?offset={offset}", body=body)
                status = conn.getresponse().status
                conn.close()
                return status
            except ConnectionRefusedError:
                time.sleep(0.05)
        raise AssertionError("collector never listened")

    def on_disk() -> dict[str, int]:
        return {p.name: p.stat().st_size for p in (root / "pod-1").glob("*.jsonl")}

    try:
        # Bytes: three 100-byte files fit, a fourth pushes the oldest out at once.
        for index in range(4):
            assert post(f"records-{index}.jsonl", 0, _lines(*range(10))) == 200
            time.sleep(0.02)
        assert on_disk() == {f"records-{i}.jsonl": 100 for i in (1, 2, 3)}
        assert sum(on_disk().values()) <= 300
        # Age: nothing written for a second, the timer deletes everything left.
        deadline = time.monotonic() + 10
        while on_disk() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert on_disk() == {}
        assert list(root.rglob("*.jsonl")) == []
        # A fresh write is kept again (retention deletes what is old, not what arrives).
        assert post("records-5.jsonl", 0, _lines(1)) == 200
        assert on_disk() == {"records-5.jsonl": 10}
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
    assert result == [0]


def test_a_collector_answer_nested_past_the_recursion_limit_is_a_failed_ship_not_a_dead_thread(tmp_path):
    """Before: RecursionError from json.loads escaped _post (it caught ValueError only)."""
    deep = b"[" * 60_000 + b"]" * 4_000  # under the 64 KiB the shipper reads, far past the recursion limit
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1 << 16)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(deep) + deep)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "records-a-0.jsonl").write_bytes(_lines(1, 2))
    shipper, dropped, _ = _shipper(spool, f"http://127.0.0.1:{port}")
    try:
        assert shipper.ship_once() is False
        assert (spool / "records-a-0.jsonl").exists() and dropped == []  # kept for the next attempt
        assert shipper.metrics.failures.get("http_error") == 1
    finally:
        thread.join(5)
        server.close()  # refused from here on: close()'s last attempt fails at once
        shipper.close(0.2)
