"""SIGTERM to `shadowctl router` with a request in flight, over real sockets (loopback only, no cluster):
the in-flight request completes (answer and record), idle keep-alive connections are closed, new
connections are refused, and the process exits 0 within its grace."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading

import pytest

from .harness import stop_loop, wait_for
from .test_router import Router, Upstreams, _answer, _read_request

pytestmark = pytest.mark.timeout(90)

GRACE_SECONDS = 30  # ShadowProxy.stop's default, plus the candidate timeout for pending copies


class Gate:
    """Holds /slow requests in the model until released; tells the test when one has arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.arrived = threading.Event()
        self.release = asyncio.Event()

    def open(self) -> None:
        self.loop.call_soon_threadsafe(self.release.set)

    async def primary(self, reader, writer) -> None:
        await self._serve(reader, writer, gated=True)

    async def candidate(self, reader, writer) -> None:
        await self._serve(reader, writer, gated=False)

    async def _serve(self, reader, writer, gated: bool) -> None:
        while True:
            line, _, body = await _read_request(reader)
            if gated and b"/slow" in line:
                self.arrived.set()
                await self.release.wait()
            writer.write(_answer(200, json.dumps({"prediction": json.loads(body or b"{}").get("x")}).encode()))
            await writer.drain()


@pytest.fixture
def world(tmp_path):
    upstreams = Upstreams()
    gate = Gate(upstreams.loop)
    upstreams.serve("primary", gate.primary)
    upstreams.serve("candidate", gate.candidate)
    router = Router(
        ["--primary", upstreams.url("primary"), "--candidate", upstreams.url("candidate"), "--mirror-percent", "100"],
        tmp_path / "records",
    )
    yield router, gate
    gate.open()
    if router.process.poll() is None:
        router.process.kill()
        router.process.wait()
    stop_loop(upstreams.loop, upstreams.thread)


def _request(target: str, x: int, request_id: str) -> bytes:
    body = json.dumps({"x": x}).encode()
    return (
        b"POST %s HTTP/1.1\r\nhost: m\r\nx-request-id: %s\r\ncontent-length: %d\r\n\r\n"
        % (target.encode(), request_id.encode(), len(body))
    ) + body


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_in_flight_requests_finish_refuses_new_ones_and_exits(world):
    router, gate = world
    idle = socket.create_connection(("127.0.0.1", router.port), timeout=10)
    idle.sendall(_request("/predict", 1, "before"))
    assert idle.recv(65536).startswith(b"HTTP/1.1 200")  # now an idle keep-alive connection
    busy = socket.create_connection(("127.0.0.1", router.port), timeout=10)
    busy.sendall(_request("/slow", 7, "in-flight"))
    assert gate.arrived.wait(10), "the request reached the primary"

    router.process.send_signal(signal.SIGTERM)

    wait_for(lambda: _refused(router.port), timeout=10, what="the listener closed: new connections refused")
    assert _read_all(idle) == b"", "an idle connection is closed, with nothing sent"
    assert router.process.poll() is None, "still running while a request is in flight"

    gate.open()
    answer = _read_all(busy)  # the whole answer, then the router closes the connection
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and json.loads(body) == {"prediction": 7}
    assert router.process.wait(GRACE_SECONDS + 5) == 0
    idle.close()
    busy.close()

    records = {record["id"]: record for record in router.stop()}
    assert set(records) == {"before", "in-flight"}, "the in-flight request's pair record was written on the way out"
    assert records["in-flight"]["primary"]["outcome"] == records["in-flight"]["candidate"]["outcome"] == "ok"
