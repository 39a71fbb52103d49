"""The builtin router's answers framed right, over real sockets (loopback only, no cluster): a primary
that does not answer in time is a 504; HEAD, 204 and 304 answers carry no body and keep the length the
model gave (or none); after each, the same client connection serves the next request.

(413 past traffic.bodyLimitBytes is asserted already, declared and chunked, by
test_router_hostile.test_body_limit_refuses_with_413_and_connection_limit_with_503.)
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from shadow_operator.contract import metric_names as m

from .harness import stop_loop
from .test_router import Router, Upstreams, _answer, _read_request

pytestmark = pytest.mark.timeout(60)

PREDICTION = b'{"prediction": 1}'


async def _model(reader, writer) -> None:
    while True:
        line, _, _ = await _read_request(reader)
        method, target = line.split()[:2]
        if target == b"/hang":
            await asyncio.Event().wait()  # never answers
        elif method == b"HEAD":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1234\r\n\r\n")
        elif target == b"/no-content":
            writer.write(b"HTTP/1.1 204 No Content\r\nx-model: primary\r\n\r\n")
        elif target == b"/not-modified":
            writer.write(b'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 42\r\n\r\n')
        else:
            writer.write(_answer(200, PREDICTION, b"content-type: application/json\r\n"))
        await writer.drain()


@pytest.fixture(scope="module")
def models():
    upstreams = Upstreams()
    upstreams.serve("model", _model)
    yield upstreams
    stop_loop(upstreams.loop, upstreams.thread)


@pytest.fixture
def router(tmp_path, models):
    started = Router(
        ["--primary", models.url("model"), "--candidate", models.url("model"), "--mirror-percent", "0",
         "--primary-timeout", "500ms"],
        tmp_path / "records",
    )  # fmt: skip
    yield started
    started.stop()


class Client:
    """One keep-alive connection, reading answers by HTTP/1.1's framing rules (RFC 9112 section 6.3)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.stream = self.sock.makefile("rb")

    def exchange(self, method: str, target: str, body: bytes = b"") -> tuple[int, list[tuple[str, str]], bytes]:
        length = b"content-length: %d\r\n" % len(body) if body or method == "POST" else b""
        self.sock.sendall(
            b"%s %s HTTP/1.1\r\nhost: model\r\n%s\r\n" % (method.encode(), target.encode(), length) + body
        )
        status_line = self.stream.readline()
        assert status_line.startswith(b"HTTP/1.1 "), f"not the start of an answer: {status_line!r}"
        status = int(status_line.split()[1])
        headers = []
        while (line := self.stream.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers.append((name.strip().lower(), value.strip()))
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        declared = [int(v) for n, v in headers if n == "content-length"]
        assert len(declared) == 1 and not [v for n, v in headers if n == "transfer-encoding"], headers
        return status, headers, self.stream.read(declared[0])

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for n, value in headers if n == name]


@pytest.mark.parametrize(
    ("method", "target", "status", "content_length"),
    [
        ("HEAD", "/predict", 200, ["1234"]),  # what a GET would say, no body
        ("POST", "/no-content", 204, []),  # RFC 9110 8.6: a 204 has no Content-Length
        ("GET", "/not-modified", 304, ["42"]),  # may say the 200's length, has no body
    ],
    ids=["HEAD", "204", "304"],
)
def test_answers_without_a_body_are_framed_and_the_connection_serves_the_next_request(
    router, method, target, status, content_length
):
    client = Client(router.port)
    try:
        answer_status, headers, body = client.exchange(method, target)
        assert (answer_status, body) == (status, b"")
        assert _values(headers, "content-length") == content_length
        assert _values(headers, "transfer-encoding") == [] and _values(headers, "connection") == []
        if status == 304:
            assert _values(headers, "etag") == ['"v1"']
        # Had the router sent any body bytes, they would be read here as the next answer's status line.
        for _ in range(2):
            assert client.exchange("POST", "/predict", b'{"x": 1}')[::2] == (200, PREDICTION)
    finally:
        client.close()


def test_a_primary_that_does_not_answer_in_time_is_a_504_and_the_connection_goes_on(router):
    client = Client(router.port)
    try:
        status, headers, body = client.exchange("POST", "/hang", b'{"x": 1}')
        assert (status, body) == (504, b"upstream timeout\n")
        assert _values(headers, "connection") == [], "a timeout of the primary is not the client's fault"
        assert client.exchange("POST", "/predict", b'{"x": 2}')[::2] == (200, PREDICTION)
    finally:
        client.close()
    assert router.metric(m.REQUESTS_TOTAL, role="primary", segment="all", outcome="timeout") == 1
