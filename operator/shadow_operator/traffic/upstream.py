"""A small keep-alive HTTP/1.1 client: one pool of connections per upstream, httptools parsing.

Bodies are buffered (the router forwards whole requests); the answer is returned as status,
reason, raw header list (names and values as the upstream sent them) and body bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import httptools

from .config import Upstream

Headers = list[tuple[bytes, bytes]]


# RFC 9110 idempotent methods: safe to send again when a pooled connection turned out dead.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


class UpstreamError(ConnectionError):
    """The upstream reset, refused, closed early or answered something that is not HTTP."""


@dataclass
class UpstreamResponse:
    status: int
    reason: bytes
    headers: Headers
    body: bytes
    keep_alive: bool


class _State:
    __slots__ = ("body", "done", "headers", "headers_done", "limit", "reason", "size")

    def __init__(self, limit: int | None) -> None:
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
        self.done = True


def _has_length(headers: Headers) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            return True
    return False


class UpstreamPool:
    def __init__(self, upstream: Upstream, max_idle: int = 64, max_response_bytes: int | None = None) -> None:
        self.upstream = upstream
        self.max_idle = max_idle
        self.max_response_bytes = max_response_bytes
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open: set[asyncio.StreamWriter] = set()

    async def request(self, method: bytes, target: bytes, headers: Headers, body: bytes) -> UpstreamResponse:
        lines = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        if body or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
            lines += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        lines.append(b"\r\n")
        payload = b"".join(lines) + body
        head = method == b"HEAD"
        for attempt in (0, 1):
            conn, reused = self._take_idle(), True
            if conn is None:
                reused = False
                try:
                    conn = await asyncio.open_connection(self.upstream.host, self.upstream.port)
                except OSError as error:
                    raise UpstreamError(f"connect {self.upstream.netloc}: {error}") from None
                self.open.add(conn[1])
            reader, writer = conn
            state = _State(self.max_response_bytes)
            try:
                writer.write(payload)
                response = await self._read(reader, state, head)
            except BaseException as error:
                self._close(writer)
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
            if response.keep_alive and len(self.idle) < self.max_idle and not head:
                self.idle.append(conn)
            else:
                self._close(writer)
            return response
        raise UpstreamError("unreachable")  # pragma: no cover

    async def _read(self, reader: asyncio.StreamReader, state: _State, head: bool) -> UpstreamResponse:
        parser = httptools.HttpResponseParser(state)
        keep_alive = True
        while not state.done:
            data = await reader.read(65536)
            if not data:
                if state.headers_done and not _has_length(state.headers):
                    keep_alive = False  # read-until-close body
                    break
                raise UpstreamError("upstream closed the connection before a full answer")
            parser.feed_data(data)
            if head and state.headers_done:
                keep_alive = False
                break
        keep_alive = keep_alive and parser.should_keep_alive()
        return UpstreamResponse(parser.get_status_code(), state.reason, state.headers, b"".join(state.body), keep_alive)

    def _take_idle(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while self.idle:
            reader, writer = self.idle.pop()
            if reader.at_eof() or writer.is_closing():
                self._close(writer)
                continue
            return reader, writer
        return None

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self.open.discard(writer)
        with contextlib.suppress(Exception):
            writer.close()

    async def aclose(self) -> None:
        for writer in list(self.open):
            self._close(writer)
        self.idle.clear()
