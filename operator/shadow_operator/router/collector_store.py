"""The collector's record files: where they are kept, how appends and reads stay whole lines, and retention.

Files live under `root/<source>/`, one per writer file (router/collector.py says why a collector
and how the protocol makes retries safe). Retention deletes whole files, least recently written
first: past `retention_bytes` in total (checked after every append) or older than `retention_age`
(checked on a timer). A deleted file leaves a tombstone with its size, so a writer still appending
to it continues in a new part (`<file>@<offset>`) instead of resending what retention just removed.

Reads (`read_range`, `head`) are what the comparison job's incremental analysis needs: the bytes
of one part from an offset, and a hash of the part's first bytes (contract/collector_protocol.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..contract.collector_protocol import FILE_NAME, HEAD_BYTES, SOURCE_NAME, head_digest, writer_file
from ..contract.records import RECORD_SUFFIX
from .metrics import Registry

log = logging.getLogger(__name__)

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

    head_cache: str = ""  # the head, once the part holds HEAD_BYTES (from then on it cannot change)

    @property
    def size(self) -> int:
        return self.base + self.length

    def head(self) -> str:
        """A hash of the part's first min(length, HEAD_BYTES) bytes (read at most once per part past that)."""
        if self.head_cache:
            return self.head_cache
        with open(self.path, "rb") as file:
            digest = head_digest(file.read(min(self.length, HEAD_BYTES)))
        if self.length >= HEAD_BYTES:
            self.head_cache = digest
        return digest


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
        for source_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and SOURCE_NAME.match(p.name)):
            for path in sorted(source_dir.iterdir()):
                served = writer_file(path.name)
                if not path.is_file() or served is None:
                    continue
                name, base = served
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
        if not SOURCE_NAME.match(source):
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

    def part(self, source: str, part: str) -> StoredFile:
        """The retained part `<source>/<part>` (its name on disk, as GET /v1/files lists it). Raises Rejected."""
        served = writer_file(part) if SOURCE_NAME.match(source) else None
        if served is None:
            raise Rejected(400, "bad_name", "use GET /v1/records/<source>/<part>, names as GET /v1/files lists them")
        stored = self.files.get((source, served[0]))
        if stored is None or stored.path.name != part:
            raise Rejected(404, "not_found", f"{source}/{part} is not retained (deleted by retention, or never stored)")
        return stored

    def read_range(self, stored: StoredFile, offset: int, end: int | None) -> tuple[int, int]:
        """The byte range [offset, end) of `stored` that may be served, whole lines only. Raises Rejected (416).

        `end` defaults to the part's length now. Both ends must be line boundaries (0, the length,
        or just after a newline): the job asks only for its own cursors and the listed sizes, and a
        range cut inside a line would hand it half a record.
        """
        end = stored.length if end is None else end
        if offset > stored.length or end > stored.length or offset > end:
            raise Rejected(
                416, "bad_range", f"range {offset}-{end} is outside the part's {stored.length} bytes", stored.length
            )
        try:
            with open(stored.path, "rb") as file:
                for boundary in (offset, end):
                    if 0 < boundary < stored.length:
                        file.seek(boundary - 1)
                        if file.read(1) != b"\n":
                            raise Rejected(
                                416, "bad_range", f"offset {boundary} is not the start of a line", stored.length
                            )
        except FileNotFoundError:
            raise Rejected(404, "not_found", f"{stored.source}/{stored.path.name} was just deleted") from None
        return offset, end


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
