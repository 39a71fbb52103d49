"""`shadowctl collector`: one per ShadowDeployment; the routers and recorders push records to it.

Why push to a collector: the router and recorder Pods write into an emptyDir of their own, which
the comparison job's Pod cannot mount, and ReadWriteMany volumes are rare. Each writer ships the
whole lines of its files here (router/shipper.py); the job reads them back. Only this Pod mounts
`recording.sink.volume`, so ReadWriteOnce is enough (docs/records.md). This module is the HTTP
side; the files and their retention are router/collector_store.py.

The protocol makes retries safe. A file is addressed by its writer (`source`, the Pod name) and
its local name, and every append says at which offset of that file it starts:

    POST /v1/records/<source>/<file>?offset=N   body: whole JSON Lines
      N == stored size          -> appended, 200 {"size": new size}
      N + len(body) <= size     -> a retry of what is stored, 200 {"size": size}, nothing written
      N < size < N + len(body)  -> the part beyond size is appended (it starts at a line boundary)
      N > size                  -> 409 {"size": size}: the shipper resumes from there
    GET /v1/files               {"files": [{"source", "file", "part", "size", "bytes", "mtime", "head"}], "bytes"}
    GET /v1/records/<source>/<part>?offset=N&end=E
                                the part's bytes [N, E) (E: its length when left out); both ends line
                                boundaries, else 416; a part retention deleted is 404
    GET /v1/records             every retained file, concatenated (chunked)

The comparison job reads only what is new: a cursor per part, a range read from it
(job/remote.py, job/record_sources.py). `head` is a hash of the part's first 4 KiB, so the job tells
a part that was replaced (a collector restarted on an emptyDir) from one that grew.

Hostile input is bounded and refused, never a crash: names are `[A-Za-z0-9._-]` and short (no
path can leave the directory), offsets are decimal digits (at most 19), bodies are capped (413),
a header block over 64 KiB is refused (431), a slow client times out, and connections beyond the
cap are answered 503 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from urllib.parse import parse_qs

from ..contract.collector_protocol import END, FILES_PATH, OFFSET, RECORDS_PATH, parse_offset
from .collector_store import READ_CHUNK, CollectorMetrics, RecordStore, Rejected
from .listener import Listener

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 << 20
MAX_HEADER_BYTES = 64 * 1024
MAX_CONNECTIONS = 16  # each may hold one body in memory: 16 x 8 MiB bounds the collector's memory
HEADER_TIMEOUT = 10.0  # seconds to send a request's head; also the idle keep-alive limit
BODY_TIMEOUT = 60.0  # seconds to send a body of up to MAX_BODY_BYTES, even over a slow link

__all__ = ["CollectorMetrics", "CollectorServer", "RecordStore", "Rejected", "run"]


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    411: b"Length Required",
    413: b"Content Too Large",
    416: b"Range Not Satisfiable",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
    507: b"Insufficient Storage",
}


class CollectorServer(Listener):
    head_limit = MAX_HEADER_BYTES
    close_timeout = 2.0

    def __init__(
        self,
        store: RecordStore,
        metrics: CollectorMetrics,
        max_connections: int = MAX_CONNECTIONS,
        max_body: int = MAX_BODY_BYTES,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        super().__init__()
        self.store, self.metrics = store, metrics
        self.max_connections, self.max_body = max_connections, max_body
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        self.connections = 0

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections:
            self.metrics.rejected.inc("too_many_connections")
            with contextlib.suppress(OSError):
                writer.write(_response(503, {"error": "too many connections, retry later"}, keep_alive=False))
                await asyncio.wait_for(writer.drain(), 1)
            writer.close()
            return
        self.connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections -= 1
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection stays open for another."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.header_timeout)
        except asyncio.IncompleteReadError as eof:
            if eof.partial.strip():
                self.metrics.rejected.inc("bad_request")
            return False
        except TimeoutError:
            return False  # idle keep-alive, or a head sent too slowly: close without answering
        except asyncio.LimitOverrunError:
            return self._refuse(writer, Rejected(431, "headers_too_large", "request head over 64 KiB"))
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return self._refuse(writer, Rejected(400, "bad_request", "not an HTTP/1.x request line"))
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        path, _, query = target.partition("?")
        if method == "POST" and path.startswith("/v1/records/"):
            return await self._post(reader, writer, path, query, headers, keep_alive)
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            return self._refuse(writer, Rejected(400, "bad_request", "unexpected request body"))
        if method != "GET":
            return self._refuse(writer, Rejected(405, "bad_method", f"{method} {path} is not served"))
        if path == RECORDS_PATH:
            await self._stream_records(writer)
            return False
        if path.startswith(RECORDS_PATH + "/"):
            return await self._read_part(writer, path, query, keep_alive)
        if path == FILES_PATH:
            writer.write(_response(200, self._listing(), keep_alive))
            await writer.drain()
            return keep_alive
        return self._refuse(writer, Rejected(404, "not_found", f"{path}: no such resource"))

    def _listing(self) -> dict[str, object]:
        files = []
        for f in self.store.listing():
            try:
                head = f.head()
            except OSError:
                continue  # deleted since: not retained
            files.append({"source": f.source, "file": f.name, "part": f.path.name, "size": f.size, "bytes": f.length,
                          "mtime": f.mtime, "head": head})  # fmt: skip
        return {"files": files, "bytes": self.store.total_bytes()}

    async def _post(self, reader, writer, path, query, headers, keep_alive) -> bool:
        segments = path.split("/")  # "", "v1", "records", source, file
        if len(segments) != 5:
            return self._refuse(writer, Rejected(400, "bad_name", "use POST /v1/records/<source>/<file>?offset=N"))
        source, name = segments[3], segments[4]
        if "transfer-encoding" in headers:
            return self._refuse(writer, Rejected(411, "no_length", "send a Content-Length, not chunks"))
        length_text = headers.get("content-length", "")
        offsets = parse_qs(query).get("offset", [])
        if not length_text.isdigit() or len(length_text) > 12:
            return self._refuse(writer, Rejected(411, "no_length", "a Content-Length is required"))
        length = int(length_text)
        if length > self.max_body:
            self.metrics.rejected.inc("too_large")
            writer.write(_response(413, {"error": f"body over {self.max_body} bytes: send smaller chunks"}, False))
            await writer.drain()
            return False  # the unread body makes the connection unusable
        try:
            body = await asyncio.wait_for(reader.readexactly(length), self.body_timeout)
        except TimeoutError:
            return self._refuse(writer, Rejected(408, "timeout", "body not received in time"), keep_alive=False)
        offset = parse_offset(offsets[0]) if len(offsets) == 1 else None
        if offset is None:
            return self._refuse(writer, Rejected(400, "bad_offset", "give exactly one ?offset=N, N >= 0"), keep_alive)
        try:
            size = self.store.append(source, name, offset, body)
        except Rejected as rejected:
            return self._refuse(writer, rejected, keep_alive)
        writer.write(_response(200, {"size": size}, keep_alive))
        await writer.drain()
        return keep_alive

    async def _read_part(self, writer: asyncio.StreamWriter, path: str, query: str, keep_alive: bool) -> bool:
        """`GET /v1/records/<source>/<part>?offset=N[&end=E]`: the part's whole lines from N (to E, else its end)."""
        segments = path.split("/")  # "", "v1", "records", source, part
        try:
            if len(segments) != 5:
                raise Rejected(400, "bad_name", "use GET /v1/records/<source>/<part>?offset=N")
            stored = self.store.part(segments[3], segments[4])
            fields = parse_qs(query, keep_blank_values=True)
            if set(fields) - {OFFSET, END}:
                raise Rejected(400, "bad_offset", f"unknown parameter; only ?{OFFSET}=N and &{END}=E are read")
            offsets, ends = fields.get(OFFSET, []), fields.get(END, [])
            offset = parse_offset(offsets[0]) if len(offsets) == 1 else None
            end = parse_offset(ends[0]) if len(ends) == 1 else (None if not ends else -1)
            if offset is None or end == -1:
                raise Rejected(400, "bad_offset", f"give exactly one ?{OFFSET}=N (and at most one &{END}=E), N, E >= 0")
            start, stop = self.store.read_range(stored, offset, end)
        except Rejected as rejected:
            return self._refuse(writer, rejected, keep_alive)
        try:
            file = open(stored.path, "rb")  # noqa: SIM115  (an open file outlives a retention delete)
        except OSError:
            return self._refuse(writer, Rejected(404, "not_found", f"{path}: just deleted by retention"), keep_alive)
        with file:
            file.seek(start)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncontent-length: %d\r\n"
                b"x-shadow-part-bytes: %d\r\nconnection: %s\r\n\r\n"
                % (stop - start, stored.length, b"keep-alive" if keep_alive else b"close")
            )
            remaining = stop - start
            while remaining > 0:
                chunk = file.read(min(READ_CHUNK, remaining))
                if not chunk:  # cannot happen to a part that only grows; never send less than announced
                    return False
                remaining -= len(chunk)
                writer.write(chunk)
                self.metrics.served_bytes.inc(amount=len(chunk))
                await writer.drain()
        return keep_alive

    def _refuse(self, writer: asyncio.StreamWriter, rejected: Rejected, keep_alive: bool = False) -> bool:
        self.metrics.rejected.inc(rejected.reason)
        payload: dict[str, object] = {"error": str(rejected)}
        if rejected.size is not None:
            payload["size"] = rejected.size
        writer.write(_response(rejected.status, payload, keep_alive))
        return keep_alive

    async def _stream_records(self, writer: asyncio.StreamWriter) -> None:
        """Every retained file up to its size now (whole lines), as one chunked body."""
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n"
            b"connection: close\r\n\r\n"
        )
        for stored in self.store.listing():
            remaining = stored.length
            try:
                file = open(stored.path, "rb")  # noqa: SIM115  (an open file outlives a retention delete)
            except OSError:
                continue  # deleted since the listing
            with file:
                while remaining > 0:
                    chunk = file.read(min(READ_CHUNK, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.metrics.served_bytes.inc(amount=len(chunk))
                    await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _response(status: int, payload: object, keep_alive: bool) -> bytes:
    body = json.dumps(payload).encode() + b"\n"
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: %s\r\n\r\n"
        % (status, _REASONS.get(status, b"Error"), len(body), b"keep-alive" if keep_alive else b"close")
        + body
    )


async def run(
    records: str,
    listen: tuple[str, int],
    admin_listen: tuple[str, int],
    retention_bytes: int,
    retention_age: float,
    stop: asyncio.Event | None = None,
    retention_every: float = 60.0,
) -> int:
    """Serve until SIGTERM/SIGINT (or `stop`); retention on every append and every `retention_every` s."""

    from .admin import AdminServer, stop_on_signals

    metrics = CollectorMetrics()
    try:
        store = RecordStore(records, metrics, retention_bytes, retention_age)
    except OSError as error:
        print(f"shadowctl collector: cannot use {records}: {error} (is the volume writable by this user?)",
              file=sys.stderr)  # fmt: skip
        return 3
    store.enforce_age()
    store.enforce_bytes()
    server = CollectorServer(store, metrics)
    admin = AdminServer(metrics.registry, ready=lambda: server.server is not None)
    stop = stop_on_signals(stop)
    try:
        port = await server.start(*listen)
        admin_port = await admin.start(*admin_listen)
    except OSError as error:
        print(f"shadowctl collector: cannot listen: {error}", file=sys.stderr)
        return 3
    log.info(
        "collector: %d files, %d bytes in %s; listening on %s:%d, admin on %s:%d",
        len(store.files), store.total_bytes(), records, listen[0], port, admin_listen[0], admin_port,
    )  # fmt: skip
    print(f"listening {port} admin {admin_port}", flush=True)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retention_every)
        store.enforce_age()
        store.enforce_bytes()
    await server.stop()
    await admin.stop()
    return 0
