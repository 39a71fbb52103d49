"""The client side of the router and the recorder: HTTP/1 connections parsed with httptools.

What a hostile client can do is bounded here:

- time: a request's headers must arrive within the header timeout (from the connection's
  opening or the request's first byte), its body within the body timeout after the headers, and
  a keep-alive connection may wait for its next request for the idle timeout; one `Reaper` task
  (reaper.py) checks every connection's deadline a few times per timeout (no timer per request);
- memory: bodies up to maxBodyBytes are buffered while the bodies being received in all
  connections together stay under BUFFER_BUDGET; any other body is a `BodyStream`, written to
  the primary as it arrives, reading paused while STREAM_HIGH_WATER bytes wait; bodies past
  bodyLimitBytes are refused (413); headers past MAX_HEADER_BYTES too (431);
- connections: past maxConnections a new one is answered 503 and closed;
- meaning (the rules are messages.py): inbound x-shadow-* headers are removed (only the router marks its copies), a
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

from .messages import BadRequest, inbound_headers, origin_form, simple_response
from .upstream import Headers

if TYPE_CHECKING:
    from .server import ProxyServer

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
# Bytes of partly received bodies buffered in all connections together; a body that would pass it
# is streamed to the primary instead (not mirrored), so slow clients cannot make the router hold
# maxConnections x maxBodyBytes.
BUFFER_BUDGET = 64 * 1024 * 1024
STREAM_HIGH_WATER = 256 * 1024  # a streamed body's bytes waiting for the primary before reading pauses
MAX_PIPELINED = 8  # complete requests queued on one connection before reading pauses
_VERSIONS = frozenset({"1.1", "1.0"})
_INF = float("inf")


# What a timer found when it closed a connection (the reason label of the closed-connections counter)
HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT, OVER_LIMIT = "header_timeout", "body_timeout", "idle_timeout", "limit"
_HEADER, _BODY, _IDLE, _BUSY = HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT, "busy"


class BodyAborted(Exception):
    """A streamed body did not arrive: the client left, was too slow or sent too much."""


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
