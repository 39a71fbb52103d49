"""The client side of the router and the recorder: HTTP/1 connections parsed with httptools.

What a hostile client can do is bounded here:

- time: a request's headers must arrive within the header timeout (from the connection's
  opening or the request's first byte), its body within the body timeout after the headers, and
  a keep-alive connection may wait for its next request for the idle timeout; one `Reaper` task
  checks every connection's deadline a few times per timeout (no timer per request);
- memory: bodies up to maxBodyBytes are buffered while the bodies being received in all
  connections together stay under BUFFER_BUDGET; any other body is a `BodyStream`, written to
  the primary as it arrives, reading paused while STREAM_HIGH_WATER bytes wait; bodies past
  bodyLimitBytes are refused (413); headers past MAX_HEADER_BYTES too (431);
- connections: past maxConnections a new one is answered 503 and closed;
- meaning: inbound x-shadow-* headers are removed (only the router marks its copies), a
  `Connection` header cannot remove Host or the request-id header, absolute-form targets become
  origin-form with the authority as Host, and duplicate Host, HTTP/0.9 (and any version but
  1.0 and 1.1), CONNECT and targets of no known form are refused (400).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httptools

from .upstream import Headers

if TYPE_CHECKING:
    from .server import ProxyServer

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade",
    b"content-length", b"expect",
})  # fmt: skip
SHADOW_PREFIX = b"x-shadow-"  # the router's own marking: never taken from a client
MAX_HEADER_BYTES = 64 * 1024
# Bytes of partly received bodies buffered in all connections together; a body that would pass it
# is streamed to the primary instead (not mirrored), so slow clients cannot make the router hold
# maxConnections x maxBodyBytes.
BUFFER_BUDGET = 64 * 1024 * 1024
STREAM_HIGH_WATER = 256 * 1024  # a streamed body's bytes waiting for the primary before reading pauses
MAX_PIPELINED = 8  # complete requests queued on one connection before reading pauses
_VERSIONS = frozenset({"1.1", "1.0"})
_INF = float("inf")

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large",
            431: b"Request Header Fields Too Large", 501: b"Not Implemented", 502: b"Bad Gateway",
            503: b"Service Unavailable", 504: b"Gateway Timeout"}  # fmt: skip

# What a timer found when it closed a connection (the reason label of the closed-connections counter)
HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT, OVER_LIMIT = "header_timeout", "body_timeout", "idle_timeout", "limit"
_HEADER, _BODY, _IDLE, _BUSY = HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT, "busy"


class BadRequest(ValueError):
    """A request the router refuses; `status` is the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BodyAborted(Exception):
    """A streamed body did not arrive: the client left, was too slow or sent too much."""


def simple_response(status: int, body: bytes, keep_alive: bool) -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n"
        % (status, _REASONS.get(status, b"Error"), len(body), b"" if keep_alive else b"connection: close\r\n")
    ) + body


def inbound_headers(headers: Headers, id_header: bytes) -> tuple[Headers, bytes | None, bytes | None, int, bool, bool]:
    """One pass over a request's headers: what is forwarded, and what the router needs from them.

    Returns the forwarded headers (hop-by-hop, x-shadow-* and what `Connection` names removed,
    Host and the request-id header always kept), the request id, the Host value, the declared
    Content-Length (-1 when none), whether the body is chunked and whether the client expects
    100-continue. Raises BadRequest for
    a duplicate Host header. `id_header` is lower case.
    """
    forwarded: Headers = []
    request_id = host = connection = None
    length, chunked, expect = -1, False, False
    for name, value in headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            if lowered == b"connection":
                connection = value if connection is None else connection + b"," + value
            elif lowered == b"content-length":
                length = int(value)  # llhttp has checked it is one plain number
            elif lowered == b"transfer-encoding":
                chunked = True
            elif lowered == b"expect":
                expect = value.lower() == b"100-continue"
            continue
        if lowered.startswith(SHADOW_PREFIX):
            continue
        if lowered == b"host":
            if host is not None:
                raise BadRequest(400, "duplicate Host header")
            host = value
        elif lowered == id_header and request_id is None:
            request_id = value
        forwarded.append((name, value))
    if connection is not None:
        named = {token.strip().lower() for token in connection.split(b",")}
        named -= {b"close", b"keep-alive", b"host", id_header, b""}
        if named:
            forwarded = [(n, v) for n, v in forwarded if n.lower() not in named]
    return forwarded, request_id, host, length, chunked, expect


def origin_form(target: bytes) -> tuple[bytes, bytes]:
    """An absolute-form target (`http://host:8080/p?q`) as origin-form and its authority: (b"/p?q", b"host:8080")."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or not scheme.isalpha() or scheme.lower() not in (b"http", b"https"):
        raise BadRequest(400, "request target is neither origin-form nor absolute-form")
    end = len(rest)
    for stop in (b"/", b"?", b"#"):
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    authority, path = rest[:end], rest[end:]
    authority = authority.rpartition(b"@")[2]  # userinfo is not part of Host
    if not authority:
        raise BadRequest(400, "absolute-form target without a host")
    path = path.partition(b"#")[0]
    if not path.startswith(b"/"):
        path = b"/" + path
    return path, authority


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    headers: Headers  # as forwarded: see inbound_headers
    request_id: bytes | None
    body: bytes
    keep_alive: bool
    streamed: bool  # not buffered whole (chunked on the wire, or past maxBodyBytes): primary only
    stream: BodyStream | None = None  # the body as it arrives, when it is not buffered
    length: int | None = None  # a stream's Content-Length (None: chunked)


class BodyStream:
    """A request body on its way to the primary while it arrives (upstream.BodySource)."""

    __slots__ = ("chunks", "conn", "done", "error", "interrupted", "size", "waiter")

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False  # the whole body arrived
        self.error: BodyAborted | None = None
        self.interrupted = False
        self.waiter: asyncio.Future | None = None

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        self._wake()

    def end(self) -> None:
        self.done = True
        self._wake()

    def fail(self, reason: str) -> None:
        if not self.done:
            self.error = BodyAborted(reason)
            self.chunks.clear()
            self.size = 0
            self._wake()

    def interrupt(self) -> None:
        self.interrupted = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes | None:
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.interrupted:
                return None
            if self.done:
                return b""
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.error is not None:
            raise self.error
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        self.conn.flow()
        return data


class Reaper:
    """Closes the connections whose deadline passed, checking a few times per shortest timeout,
    and the upstream connections idle for longer than their pool keeps them.

    Connections set their deadlines from `now`, which this task advances on each round: a coarse
    clock, so a request costs no clock reads; timeouts hold to within one round (at most 1 s).
    """

    def __init__(self, proxy: ProxyServer) -> None:
        config = proxy.config
        self.connections = proxy.connections
        self.metrics = proxy.metrics
        self.pools = proxy.pools  # read at each round: the subclass adds its pools after this is made
        self.header_timeout, self.body_timeout, self.idle_timeout = (
            config.header_timeout, config.body_timeout, config.idle_timeout,
        )  # fmt: skip
        self.round = min(1.0, max(0.05, min(self.header_timeout, self.body_timeout, self.idle_timeout) / 4))
        self.now = 0.0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time()
        self.task = loop.create_task(self._run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.round)
            self.now = now = loop.time()
            self.metrics.connections.set(value=len(self.connections))
            for pool in self.pools():
                pool.prune()
            expired = [conn for conn in self.connections if conn.deadline <= now]
            for conn in expired:
                try:
                    conn.expire()
                except Exception:
                    log.exception("error while closing a timed-out connection")


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, one at a time."""

    def __init__(self, proxy: ProxyServer) -> None:
        self.proxy = proxy
        self.reaper = proxy.reaper
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: asyncio.Queue[Request | None] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.busy = False
        self.closed = False
        self.closing = False
        self.paused = False
        self.rejected = 0  # the status a refused request is answered with; nothing more is read
        self.refuse = 0  # set by a parser callback before it raises
        self.phase = _HEADER
        self.deadline = _INF
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: Headers = []
        self.header_bytes = 0
        self.head: Request | None = None
        self.body: list[bytes] = []
        self.body_size = 0  # bytes of this body buffered (and counted in proxy.buffered)
        self.body_total = 0  # bytes of this body received
        self.stream: BodyStream | None = None
        self.in_message = False

    # --- asyncio callbacks ---

    def connection_made(self, transport) -> None:
        self.transport = transport
        proxy = self.proxy
        if len(proxy.connections) >= proxy.config.traffic.max_connections:
            self.closed = True
            proxy.closed_connection(OVER_LIMIT)
            transport.write(simple_response(503, b"too many connections\n", keep_alive=False))
            transport.close()
            return
        proxy.connections.add(self)
        self.deadline = self.reaper.now + self.reaper.header_timeout

    def connection_lost(self, exc) -> None:
        if self.closed and self not in self.proxy.connections:
            return
        self.closed = True
        self.proxy.connections.discard(self)
        self._drop_body("client disconnected")
        if self.worker is not None and not self.busy:
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        if self.rejected:
            return
        try:
            self.parser.feed_data(data)
        except Exception:
            self._reject(self.refuse or 400)

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self.in_message = True
        self.phase = _HEADER
        self.deadline = self.reaper.now + self.reaper.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self._count(len(name) + len(value) + 4)

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > MAX_HEADER_BYTES:
            self.refuse = 431
            raise ValueError("headers too large")

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method()
        try:
            if method == b"CONNECT":
                raise BadRequest(400, "CONNECT is not supported")
            if parser.get_http_version() not in _VERSIONS:
                raise BadRequest(400, "only HTTP/1.0 and HTTP/1.1")
            headers, request_id, host, length, chunked, expect = inbound_headers(self.headers, self.proxy.id_header)
            target = self.url
            if not target.startswith(b"/") and not (target == b"*" and method == b"OPTIONS"):
                target, authority = origin_form(target)
                headers = [(n, authority) if n.lower() == b"host" else (n, v) for n, v in headers]
                if host is None:
                    headers.append((b"host", authority))
        except BadRequest as error:
            self.refuse = error.status
            raise
        limit = self.proxy.body_limit
        if limit and length > limit:
            self.refuse = 413
            raise ValueError("body too large")
        if length > 0 or chunked:
            self.phase = _BODY
            self.deadline = self.reaper.now + self.reaper.body_timeout
        if expect:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.head = Request(
            method=method,
            target=target,
            headers=headers,
            request_id=request_id,
            body=b"",
            keep_alive=parser.should_keep_alive(),
            streamed=chunked,
            length=None if chunked else length,
        )
        if length > self.proxy.max_body_bytes:
            self._to_stream()

    def on_body(self, data: bytes) -> None:
        n = len(data)
        self.body_total += n
        limit = self.proxy.body_limit
        if limit and self.body_total > limit:
            self.refuse = 413
            raise ValueError("body too large")
        if self.stream is not None:
            self.stream.feed(data)
            if self.stream.size > STREAM_HIGH_WATER:
                self.flow()
            return
        self.body.append(data)
        self.body_size += n
        proxy = self.proxy
        proxy.buffered += n
        if self.body_size > proxy.max_body_bytes or proxy.buffered > BUFFER_BUDGET:
            self._to_stream()

    def _to_stream(self) -> None:
        """From here on the body goes to the primary as it arrives (what was buffered first)."""
        stream = self.stream = BodyStream(self)
        if self.body:
            stream.feed(b"".join(self.body))
        self._release()
        request = self.head
        request.streamed = True
        request.stream = stream
        self._enqueue(request)

    def on_message_complete(self) -> None:
        request = self.head
        if self.closing:
            request.keep_alive = False
        if self.stream is not None:
            self.stream.end()
        else:
            if self.body:
                request.body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            self._release()
            self._enqueue(request)
        self._reset()
        self.phase = _BUSY
        self.deadline = _INF

    # --- state ---

    def _enqueue(self, request: Request) -> None:
        self.pending.put_nowait(request)
        if self.pending.qsize() > MAX_PIPELINED:
            self.flow()
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._serve())

    def _release(self) -> None:
        self.proxy.buffered -= self.body_size
        self.body = []
        self.body_size = 0

    def _drop_body(self, reason: str) -> None:
        self._release()
        if self.stream is not None:
            self.stream.fail(reason)

    def flow(self) -> None:
        """Pause reading while too much waits (pipelined requests, a streamed body); resume after."""
        transport = self.transport
        if self.closed or transport is None:
            return
        full = self.pending.qsize() > MAX_PIPELINED or (
            self.stream is not None and self.stream.size > STREAM_HIGH_WATER
        )
        if full and not self.paused:
            self.paused = True
            transport.pause_reading()
        elif self.paused and not full:
            self.paused = False
            transport.resume_reading()

    def _reject(self, status: int) -> None:
        self.closing = True
        self.rejected = status
        self.deadline = _INF
        self._drop_body(f"refused with {status}")
        if not self.busy and self.pending.empty():
            self._finish(simple_response(status, b"", keep_alive=False))
        else:
            self.pending.put_nowait(None)

    def _finish(self, last: bytes = b"") -> None:
        """Write `last` and close; a client that does not read what it was sent is cut off."""
        transport = self.transport
        if last:
            transport.write(last)
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def expire(self) -> None:
        """The deadline passed: a client too slow with its headers or body, or idle too long."""
        phase = self.phase
        self.proxy.closed_connection(phase)
        if phase == _IDLE:
            self.deadline = _INF
            self.closing = True
            self._finish()
        else:
            self._reject(408)

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.busy and self.pending.empty() and not self.in_message:
            self.transport.close()

    async def _serve(self) -> None:
        try:
            while True:
                request = await self.pending.get()
                if request is None:  # a later request was refused
                    if not self.closed:
                        self._finish(simple_response(self.rejected, b"", keep_alive=False))
                    return
                self.busy = True
                wire = None
                try:
                    wire, account = await self.proxy.handle(request)
                    if wire is not None and not self.closed:
                        self.transport.write(wire)
                        if self.paused:
                            self.flow()
                except Exception:
                    log.exception("error while serving a request")
                    if not self.closed:
                        self.transport.write(simple_response(502, b"router error\n", keep_alive=False))
                    request.keep_alive = False
                    wire = b""
                else:
                    if account is not None:
                        try:
                            account()
                        except Exception:
                            log.exception("error while recording a request")
                finally:
                    self.busy = False
                if self.closed:
                    return
                if wire is None:  # the body was refused or timed out: its answer is queued next
                    continue
                if not request.keep_alive or (self.closing and self.pending.empty() and not self.in_message):
                    self._finish()
                    return
                if not self.in_message and self.pending.empty():
                    self.phase = _IDLE
                    self.deadline = self.reaper.now + self.reaper.idle_timeout
        except asyncio.CancelledError:
            pass
