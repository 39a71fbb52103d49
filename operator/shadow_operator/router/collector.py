"""`shadowctl collector`: one per ShadowDeployment; the routers and recorders push records to it.

Why push to a collector: the router and recorder Pods write into an emptyDir of their own, which
the comparison job's Pod cannot mount, and ReadWriteMany volumes are rare. Each writer ships the
whole lines of its files here (router/shipper.py); the job downloads them (`GET /v1/records`).
Only this Pod mounts `recording.sink.volume`, so ReadWriteOnce is enough (docs/records.md).

The protocol makes retries safe. A file is addressed by its writer (`source`, the Pod name) and
its local name, and every append says at which offset of that file it starts:

    POST /v1/records/<source>/<file>?offset=N   body: whole JSON Lines
      N == stored size          -> appended, 200 {"size": new size}
      N + len(body) <= size     -> a retry of what is stored, 200 {"size": size}, nothing written
      N < size < N + len(body)  -> the part beyond size is appended (it starts at a line boundary)
      N > size                  -> 409 {"size": size}: the shipper resumes from there
    GET /v1/records             every retained file, concatenated (chunked)
    GET /v1/files               [{"source", "file", "size", "mtime"}], for tests and operators

Hostile input is bounded and refused, never a crash: names are `[A-Za-z0-9._-]` and short (no
path can leave the directory), bodies are capped (413), a header block over 64 KiB is refused
(431), a slow client times out, and connections beyond the cap are answered 503 at once.

Retention deletes whole files, least recently written first: past `retention_bytes` in total
(checked after every append) or older than `retention_age` (checked on a timer). A deleted file
leaves a tombstone with its size, so a writer still appending to it continues in a new part
(`<file>@<offset>`) instead of resending what retention just removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from ..contract.records import RECORD_SUFFIX
from .metrics import Registry

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")  # no leading dot: refuses "." and ".."
FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,191}\.jsonl$")
PART = re.compile(r"^(?P<stem>.+)@(?P<base>[0-9]{1,20})\.jsonl$")  # a continuation after a retention delete
MAX_BODY_BYTES = 8 << 20
MAX_HEADER_BYTES = 64 * 1024
MAX_CONNECTIONS = 16  # each may hold one body in memory: 16 x 8 MiB bounds the collector's memory
HEADER_TIMEOUT = 10.0  # seconds to send a request's head; also the idle keep-alive limit
BODY_TIMEOUT = 60.0  # seconds to send a body of up to MAX_BODY_BYTES, even over a slow link
MAX_TOMBSTONES = 100_000
READ_CHUNK = 1 << 20


@dataclass
class StoredFile:
    """One file on disk: `size` bytes of the writer's file starting at `base` (0 unless a continuation)."""

    source: str
    name: str  # the writer's file name
    path: Path
    base: int
    length: int
    mtime: float

    @property
    def size(self) -> int:
        return self.base + self.length


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = r = Registry()
        self.received_bytes = r.counter("shadow_collector_received_bytes_total", "Record bytes appended.")
        self.received_records = r.counter("shadow_collector_received_records_total", "Records appended.")
        self.duplicate_bytes = r.counter(
            "shadow_collector_duplicate_bytes_total", "Bytes received again after a retry and not stored twice."
        )
        self.files = r.gauge("shadow_collector_files", "Record files retained.")
        self.stored_bytes = r.gauge("shadow_collector_stored_bytes", "Bytes of record files retained.")
        self.retention_files = r.counter(
            "shadow_collector_retention_deleted_files_total", "Files deleted by retention.", ("reason",)
        )
        self.retention_bytes = r.counter(
            "shadow_collector_retention_deleted_bytes_total", "Bytes deleted by retention.", ("reason",)
        )
        self.rejected = r.counter("shadow_collector_rejected_total", "Requests refused, by reason.", ("reason",))
        self.served_bytes = r.counter("shadow_collector_served_bytes_total", "Record bytes sent to readers.")


class Rejected(Exception):
    """A request refused with `status`; `reason` is the metrics label."""

    def __init__(self, status: int, reason: str, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.size = status, reason, size


class RecordStore:
    """Record files under `root/<source>/`, with retention; every method runs on the event loop thread.

    Appends write synchronously: one loop thread serialises every append to a file without
    locks, and a write of at most MAX_BODY_BYTES lands in the page cache in milliseconds.
    """

    def __init__(self, root: str | Path, metrics: CollectorMetrics, retention_bytes: int, retention_age: float) -> None:
        self.root = Path(root)
        self.metrics = metrics
        self.retention_bytes = retention_bytes
        self.retention_age = retention_age
        self.files: dict[tuple[str, str], StoredFile] = {}
        self.tombstones: dict[tuple[str, str], int] = {}
        self.root.mkdir(parents=True, exist_ok=True)
        self._scan()

    def _scan(self) -> None:
        """Rebuild the index from disk (a restart on a persistent volume keeps everything)."""
        for source_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and NAME.match(p.name)):
            for path in sorted(source_dir.iterdir()):
                match = PART.match(path.name)
                name, base = (match["stem"] + RECORD_SUFFIX, int(match["base"])) if match else (path.name, 0)
                if not path.is_file() or not FILE_NAME.match(name):
                    continue
                length = _truncate_partial_line(path)
                key = (source_dir.name, name)
                previous = self.files.get(key)
                if previous is not None and previous.base > base:
                    continue  # the newest part of a file is the one appended to
                self.files[key] = StoredFile(source_dir.name, name, path, base, length, path.stat().st_mtime)
        self._gauges()

    def total_bytes(self) -> int:
        return sum(f.length for f in self.files.values())

    def _gauges(self) -> None:
        self.metrics.files.set(value=len(self.files))
        self.metrics.stored_bytes.set(value=self.total_bytes())

    def size(self, source: str, name: str) -> int:
        stored = self.files.get((source, name))
        return stored.size if stored is not None else self.tombstones.get((source, name), 0)

    def append(self, source: str, name: str, offset: int, body: bytes) -> int:
        """Store `body` at `offset` of the writer's file; the stored size after it. Raises Rejected."""
        if not NAME.match(source):
            raise Rejected(400, "bad_name", "source must match [A-Za-z0-9._-], at most 128 characters")
        if not FILE_NAME.match(name):
            raise Rejected(
                400, "bad_name", "file must match [A-Za-z0-9._-] and end with .jsonl, at most 198 characters"
            )
        key = (source, name)
        size = self.size(source, name)
        if offset > size:
            raise Rejected(409, "offset_ahead", f"offset {offset} is past the stored size {size}", size)
        if offset + len(body) <= size:
            self.metrics.duplicate_bytes.inc(amount=len(body))
            return size
        skip = size - offset
        if skip and body[skip - 1 : skip] != b"\n":
            # Not the same bytes as stored (a different file under a reused name): resend from size.
            raise Rejected(409, "offset_mismatch", f"offset {size} is not a line boundary of this body", size)
        if skip:
            self.metrics.duplicate_bytes.inc(amount=skip)
            body = body[skip:]
        if not body.endswith(b"\n"):
            raise Rejected(400, "partial_line", "the body must be whole JSON Lines, ending with a newline")
        stored = self.files.get(key)
        if stored is None:
            directory = self.root / source
            directory.mkdir(exist_ok=True)
            path = directory / (name if size == 0 else f"{name[: -len(RECORD_SUFFIX)]}@{size}{RECORD_SUFFIX}")
            stored = StoredFile(source, name, path, size, 0, time.time())
        try:
            with open(stored.path, "ab") as file:
                file.write(body)
        except OSError as error:
            # A partial write leaves a tail the next scan truncates; the shipper retries from `size`.
            with contextlib.suppress(OSError):
                os.truncate(stored.path, stored.length)
            raise Rejected(507, "write_error", f"cannot store records: {error}") from None
        stored.length += len(body)
        stored.mtime = time.time()
        self.files[key] = stored
        self.tombstones.pop(key, None)
        self.metrics.received_bytes.inc(amount=len(body))
        self.metrics.received_records.inc(amount=body.count(b"\n"))
        self.enforce_bytes()
        self._gauges()
        return stored.size

    def enforce_bytes(self) -> None:
        total = self.total_bytes()
        if total <= self.retention_bytes:
            return
        for stored in sorted(self.files.values(), key=lambda f: f.mtime):
            if total <= self.retention_bytes:
                break
            total -= stored.length
            self._delete(stored, "bytes")

    def enforce_age(self, now: float | None = None) -> None:
        cutoff = (time.time() if now is None else now) - self.retention_age
        for stored in [f for f in self.files.values() if f.mtime < cutoff]:
            self._delete(stored, "age")
        self._gauges()

    def _delete(self, stored: StoredFile, reason: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            stored.path.unlink()
        key = (stored.source, stored.name)
        del self.files[key]
        if len(self.tombstones) >= MAX_TOMBSTONES:  # oldest first: dicts keep insertion order
            self.tombstones.pop(next(iter(self.tombstones)))
        self.tombstones[key] = stored.size
        self.metrics.retention_files.inc(reason)
        self.metrics.retention_bytes.inc(reason, amount=stored.length)
        log.info("retention (%s): deleted %s/%s (%d bytes)", reason, stored.source, stored.path.name, stored.length)

    def listing(self) -> list[StoredFile]:
        """Retained files, oldest write first: the order GET /v1/records sends them in."""
        return sorted(self.files.values(), key=lambda f: (f.mtime, f.source, f.name))


def _truncate_partial_line(path: Path) -> int:
    """Cut a tail without its newline (a write interrupted by a crash) so appends stay whole lines."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as file:
        position = size
        while position > 0:
            step = min(READ_CHUNK, position)
            file.seek(position - step)
            chunk = file.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                end = position - step + newline + 1
                if end != size:
                    file.truncate(end)
                    log.warning("%s: dropped a partial last line (%d bytes)", path, size - end)
                return end
            position -= step
        file.truncate(0)
        return 0


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    411: b"Length Required",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
    507: b"Insufficient Storage",
}


class CollectorServer:
    def __init__(
        self,
        store: RecordStore,
        metrics: CollectorMetrics,
        max_connections: int = MAX_CONNECTIONS,
        max_body: int = MAX_BODY_BYTES,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.store, self.metrics = store, metrics
        self.max_connections, self.max_body = max_connections, max_body
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEADER_BYTES)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

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
        if path == "/v1/records":
            await self._stream_records(writer)
            return False
        if path == "/v1/files":
            files = [
                {"source": f.source, "file": f.name, "part": f.path.name, "size": f.size, "bytes": f.length,
                 "mtime": f.mtime}
                for f in self.store.listing()
            ]  # fmt: skip
            writer.write(_response(200, {"files": files, "bytes": self.store.total_bytes()}, keep_alive))
            await writer.drain()
            return keep_alive
        return self._refuse(writer, Rejected(404, "not_found", f"{path}: no such resource"))

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
        if len(offsets) != 1 or not offsets[0].isdigit() or len(offsets[0]) > 19:
            return self._refuse(writer, Rejected(400, "bad_offset", "give exactly one ?offset=N, N >= 0"), keep_alive)
        try:
            size = self.store.append(source, name, int(offsets[0]), body)
        except Rejected as rejected:
            return self._refuse(writer, rejected, keep_alive)
        writer.write(_response(200, {"size": size}, keep_alive))
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
