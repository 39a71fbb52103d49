"""A small keep-alive HTTP/1.1 client: one pool of connections per upstream, httptools parsing.

Request bodies are either whole bytes (`request`) or a body still arriving from the client
(`stream`: written as it comes, with the upstream's flow control); the answer is returned as
status, reason, raw header list (names and values as the upstream sent them) and body bytes.

Each connection is a Protocol that feeds httptools straight from data_received and completes
one future per request: no StreamReader buffering and no wake-up per read on the hot path.

Latency (docs/verdict.md, "How latency is measured"): each answer carries `latency`, the seconds
from the moment the request's last byte was handed to the socket (stamped right after the
transport's write, in the same synchronous step) to the moment the answer's last byte was parsed
(stamped inside data_received, before any task wakes up). Both stamps are taken in this Protocol,
so the primary and the candidate are timed at the same points whatever the event loop does
between; connecting is outside them (a fresh connection is timed from its first write, like a
pooled one).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import httptools

from .config import Upstream

_clock = time.perf_counter

Headers = list[tuple[bytes, bytes]]


# Seconds a pooled connection may sit unused before it is closed: under the servers' own keep-alive
# timeout, so the router never writes a request onto a connection the model is closing. uvicorn
# (under MLServer, KServe's server and MLflow's) closes after 5 s; with 30 s here, 2 to 17 of 600
# mirrored POSTs per run were reset (tests/integration/test_model_servers.py), and a reset POST
# cannot be sent again: a candidate error, or a 502 for a user when it is the primary's.
IDLE_TIMEOUT = 4.0
# RFC 9110 idempotent methods: safe to send again when a pooled connection turned out dead.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_NO_BODY_METHODS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})


_JOIN_BODY_BYTES = 64 * 1024  # smaller bodies go out in one write with the head


class UpstreamError(ConnectionError):
    """The upstream reset, refused, closed early or answered something that is not HTTP."""


class BodySource(Protocol):
    """A request body still arriving (traffic/http1.BodyStream)."""

    async def read(self) -> bytes | None:
        """The bytes received since the last read; b"" at the end of the body; None once `interrupt` was called."""

    def interrupt(self) -> None:
        """Make a pending `read` return None (the upstream answered before the whole body was sent)."""


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    reason: bytes
    headers: Headers
    body: bytes
    keep_alive: bool
    # seconds from the request's last byte written to the answer's last byte parsed (module docstring)
    latency: float = 0.0


class _State:
    __slots__ = ("body", "done", "headers", "headers_done", "keep_alive", "limit", "parser", "reason", "size")

    def __init__(self, limit: int | None) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.keep_alive = False
        self.reason = b""
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.headers_done = False
        self.done = False

    def on_status(self, data: bytes) -> None:
        self.reason += data

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise UpstreamError(f"response body over {self.limit} bytes")
        self.body.append(data)

    def on_message_complete(self) -> None:
        # Asked here: once the message is complete llhttp has reset its flags and answers False.
        self.keep_alive = self.parser.should_keep_alive()
        self.done = True


def _has_length(headers: Headers) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            return True
    return False


class _Connection(asyncio.Protocol):
    """One upstream connection, one request at a time: `exchange` writes it and awaits the answer."""

    __slots__ = ("drained", "head", "idle_since", "sent", "state", "transport", "waiter")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.state: _State | None = None
        self.head = False
        self.idle_since = 0.0
        self.sent = 0.0  # clock when the request's last byte (so far) was written
        self.drained: asyncio.Future | None = None  # set while the transport's write buffer is full

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def exchange(self, payload: bytes, state: _State, head: bool, body: bytes = b"") -> asyncio.Future:
        self.state, self.head = state, head
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        if body:
            self.transport.write(body)
        self.sent = _clock()
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # asyncio callbacks

    def connection_made(self, transport) -> None:
        self.transport = transport

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # bytes nobody asked for: the connection is out of step
            self.transport.close()
            return
        state = self.state
        try:
            state.parser.feed_data(data)
        except Exception as error:  # not HTTP, or a body over the limit (raised from on_body)
            waiter.set_exception(error)
            return
        if state.done:
            self._answer(state.keep_alive)
        elif self.head and state.headers_done:
            self._answer(False)  # a HEAD answer has no body, whatever its content-length says

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.resume_writing()
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if exc is not None:
            waiter.set_exception(exc)
        elif self.state.headers_done and not _has_length(self.state.headers):
            self._answer(False)  # read-until-close body
        else:
            waiter.set_exception(UpstreamError("upstream closed the connection before a full answer"))

    def _answer(self, keep_alive: bool) -> None:
        latency = _clock() - self.sent  # first: nothing of ours is timed
        state, self.state = self.state, None
        status = state.parser.get_status_code()
        state.parser = None  # the parser and the state refer to each other: no cycle left for the GC
        self.waiter.set_result(
            UpstreamResponse(status, state.reason, state.headers, b"".join(state.body), keep_alive, latency)
        )


def _reusable(response: UpstreamResponse) -> bool:
    """Whether the connection may carry the next request: kept alive, and not after a server error.

    A server may close a connection after its 5xx without saying so: KServe's (uvicorn) did after
    a model's exception, and the next POST written onto it was reset before the FIN arrived (41 of
    600 copies to a failing candidate), which for a POST cannot be sent again. A fresh connection
    after each 5xx costs a connect, on a path that is already failing.
    """
    return response.keep_alive and response.status < 500


class Exchange:
    """A request on its way to one upstream (`UpstreamPool.send`): written already when the pool had
    an idle connection, else written once `UpstreamPool.answer` has connected."""

    __slots__ = ("body", "conn", "head", "method", "payload", "state", "waiter")

    def __init__(self, method: bytes, payload: bytes, body: bytes, head: bool) -> None:
        self.method = method
        self.payload = payload
        self.body = body
        self.head = head
        self.conn: _Connection | None = None
        self.state: _State | None = None
        self.waiter: asyncio.Future | None = None


class UpstreamPool:
    """Keep-alive connections to one upstream, most recently used first.

    A burst opens connections that steady traffic no longer needs; reusing the most recent one
    leaves those at the bottom of the stack, where they are closed once idle for `idle_timeout`
    (below the usual server-side keep-alive timeouts), so open connections follow the load back down.
    """

    def __init__(
        self,
        upstream: Upstream,
        max_idle: int = 64,
        max_response_bytes: int | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.upstream = upstream
        self.max_idle = max_idle
        self.max_response_bytes = max_response_bytes
        self.idle_timeout = idle_timeout
        self.idle: deque[_Connection] = deque()
        self.open: set[_Connection] = set()

    async def request(self, method: bytes, target: bytes, headers: Headers, body: bytes) -> UpstreamResponse:
        return await self.answer(self.send(method, target, headers, body))

    def send(self, method: bytes, target: bytes, headers: Headers, body: bytes) -> Exchange:
        """Write the request now on an idle pooled connection, if there is one (no await, no task):
        the router writes the primary's request and the candidate's copy back to back this way."""
        lines = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        if body or method not in _NO_BODY_METHODS:
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        if len(body) <= _JOIN_BODY_BYTES:
            lines.append(body)
            payload, body = b"".join(lines), b""
        else:  # written after the head: no second copy of a large body
            payload = b"".join(lines)
        exchange = Exchange(method, payload, body, method == b"HEAD")
        conn = self._take_idle()
        if conn is not None:
            state = _State(self.max_response_bytes)
            try:
                waiter = conn.exchange(payload, state, exchange.head, body)
            except Exception:  # the transport refused the write: `answer` connects a fresh one
                self._close(conn)
            else:
                exchange.conn, exchange.state, exchange.waiter = conn, state, waiter
        return exchange

    async def answer(self, exchange: Exchange) -> UpstreamResponse:
        """The upstream's answer to a `send`: connects first when no pooled connection was idle; a
        pooled connection the upstream had closed is retried once on a fresh one (idempotent methods)."""
        method, payload, body, head = exchange.method, exchange.payload, exchange.body, exchange.head
        for attempt in (0, 1):
            conn, reused = exchange.conn, True
            if attempt or conn is None:
                reused = False
                try:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        _Connection, self.upstream.host, self.upstream.port
                    )
                except OSError as error:
                    raise UpstreamError(f"connect {self.upstream.netloc}: {error}") from None
                self.open.add(conn)
                exchange.conn, exchange.state = conn, _State(self.max_response_bytes)
                exchange.waiter = conn.exchange(payload, exchange.state, head, body)
            state = exchange.state
            try:
                response = await exchange.waiter
            except BaseException as error:
                self._close(conn)
                # A pooled connection the upstream closed meanwhile: retry once on a fresh one,
                # only when nothing of an answer arrived and only for idempotent methods: the
                # upstream may have acted on the request already, and a model's POST can have
                # side effects (writes, charges) that must not happen twice.
                if (
                    reused
                    and attempt == 0
                    and method in _IDEMPOTENT
                    and isinstance(error, OSError)
                    and not state.reason
                    and not state.headers
                ):
                    continue
                if isinstance(error, httptools.HttpParserError):
                    raise UpstreamError(f"{self.upstream.netloc} answered something that is not HTTP") from None
                if isinstance(error, OSError) and not isinstance(error, UpstreamError):
                    raise UpstreamError(f"{self.upstream.netloc}: {error}") from None
                raise
            if _reusable(response) and len(self.idle) < self.max_idle and not head:
                conn.idle_since = now = time.monotonic()
                self.idle.append(conn)
                while now - self.idle[0].idle_since > self.idle_timeout:
                    self._close(self.idle.popleft())
            else:
                self._close(conn)
            return response
        raise UpstreamError("unreachable")  # pragma: no cover

    async def stream(
        self, method: bytes, target: bytes, headers: Headers, body: BodySource, length: int | None, timeout: float
    ) -> UpstreamResponse:
        """Send a request whose body is still arriving: `length` bytes, or chunked when None.

        Always a new connection, never retried (the body cannot be read twice). `timeout` is how long
        the answer may take once the whole body is sent; how long the body takes is the client's
        body timeout. An answer that arrives before the whole body was sent is returned at once, and
        the connection is closed (the upstream did not read the rest).
        """
        lines = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        lines.append(
            b"transfer-encoding: chunked\r\n\r\n" if length is None else b"content-length: %d\r\n\r\n" % length
        )
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Connection, self.upstream.host, self.upstream.port)
        except OSError as error:
            raise UpstreamError(f"connect {self.upstream.netloc}: {error}") from None
        self.open.add(conn)
        head = method == b"HEAD"
        waiter = conn.exchange(b"".join(lines), _State(self.max_response_bytes), head)
        waiter.add_done_callback(lambda _: body.interrupt())
        complete = False
        try:
            while not waiter.done():
                data = await body.read()
                if data is None or waiter.done():
                    break
                transport = conn.transport
                if transport is None:  # lost: the waiter has its exception
                    break
                if not data:
                    if length is None:
                        transport.write(b"0\r\n\r\n")
                        conn.sent = _clock()
                    complete = True
                    break
                if length is None:
                    transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
                else:
                    transport.write(data)
                conn.sent = _clock()
                if conn.drained is not None:
                    await conn.drained
            async with asyncio.timeout(timeout):
                response = await waiter
        except BaseException as error:
            if not waiter.done():
                waiter.cancel()  # nobody awaits it any more: no "exception never retrieved" later
            elif not waiter.cancelled():
                waiter.exception()
            self._close(conn)
            if isinstance(error, httptools.HttpParserError):
                raise UpstreamError(f"{self.upstream.netloc} answered something that is not HTTP") from None
            if isinstance(error, OSError) and not isinstance(error, UpstreamError):
                raise UpstreamError(f"{self.upstream.netloc}: {error}") from None
            raise
        if complete and _reusable(response) and len(self.idle) < self.max_idle and not head:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            self._close(conn)
        return response

    def prune(self) -> None:
        """Close the connections idle past `idle_timeout` (also without traffic: the router calls it)."""
        now = time.monotonic()
        while self.idle and now - self.idle[0].idle_since > self.idle_timeout:
            self._close(self.idle.popleft())

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if conn.usable and now - conn.idle_since <= self.idle_timeout:
                return conn
            self._close(conn)  # closed by the upstream, or idle long enough that it may be closing
        return None

    def _close(self, conn: _Connection) -> None:
        self.open.discard(conn)
        with contextlib.suppress(Exception):
            conn.close()

    async def aclose(self) -> None:
        for conn in list(self.open):
            self._close(conn)
        self.idle.clear()
