"""Ships a router's or recorder's record files to the collector (router/collector.py).

The sink keeps writing local files; its directory is a spool. Every `interval` a thread sends
each file's bytes beyond what the collector acknowledged, whole lines only (up to the last
newline), in chunks of at most `chunk_bytes`, and deletes a file that is no longer being
written once all of it is acknowledged. The collector's offsets make every retry idempotent,
so after a restart (offsets forgotten) the first chunk of each file just learns where the
collector is.

When the collector cannot be reached the files wait, with backoff between attempts, and the
spool is bounded: past `spool_bytes`, the oldest closed files are deleted and their unshipped
records counted as dropped (reason spool_full), so a long outage costs records, never the
Pod's disk. close() makes a last attempt under a deadline, after the sink has written
everything: a Pod deleted mid-run loses only what the collector did not take in that time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

from ..contract.records import RECORD_SUFFIX
from .metrics import Registry

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 << 20  # half the collector's body cap: room for one long line past a chunk's end
MAX_LINE_BYTES = 8 << 20  # the collector's body cap: a longer line can never be shipped
MAX_BACKOFF = 30.0
MAX_ROUNDS = 64  # chunks per file per pass: 256 MiB, four default rotateBytes files


class ShipError(Exception):
    pass


def source_name(hostname: str | None = None) -> str:
    """The Pod's name as the collector accepts it (unique per Pod: files of two Pods never mix)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", hostname or socket.gethostname()).lstrip(".")[:128]
    return name or "unknown"


class ShipperMetrics:
    def __init__(self, registry: Registry) -> None:
        self.bytes = registry.counter("shadow_records_shipped_bytes_total", "Record bytes the collector acknowledged.")
        self.records = registry.counter("shadow_records_shipped_total", "Records the collector acknowledged.")
        self.failures = registry.counter(
            "shadow_records_ship_failures_total", "Attempts to reach the collector that failed, by reason.", ("reason",)
        )
        self.spool = registry.gauge("shadow_records_spool_bytes", "Record bytes on local disk not yet deleted.")


class Shipper:
    def __init__(
        self,
        directory: str | Path,
        url: str,
        registry: Registry,
        active: Callable[[], Path | None],
        on_drop: Callable[[int], None],
        interval: float = 2.0,
        spool_bytes: int = 512 << 20,
        chunk_bytes: int = CHUNK_BYTES,
        source: str | None = None,
        timeout: float = 10.0,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        # Which record files (by name) are this shipper's to send and delete: all of the directory's,
        # or one worker's where several share it (sink.py).
        self.owns = owns or (lambda name: True)
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"collector URL {url!r}: use http://host:port")
        self.host, self.port = parts.hostname, parts.port or 80
        self.url = url
        self.directory = Path(directory)
        self.metrics = ShipperMetrics(registry)
        self.active = active  # the file the sink writes now (never deleted here)
        self.on_drop = on_drop  # records lost to the spool cap
        self.interval = interval
        self.spool_bytes = spool_bytes
        self.chunk_bytes = chunk_bytes
        self.source = source or source_name()
        self.timeout = timeout
        self.acked: dict[str, int] = {}  # file name -> bytes the collector holds
        self.poisoned: set[str] = set()  # files with a line the collector can never take
        self.failures = 0
        self.next_attempt = 0.0
        self.conn: http.client.HTTPConnection | None = None
        self.logged_down = False
        self.lock = threading.Lock()  # one ship pass at a time: the timer thread's or close()'s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="shadow-shipper", daemon=True)
        self.thread.start()

    def close(self, deadline: float = 5.0) -> bool:
        """Stop the timer and ship what is left within `deadline` seconds; whether all of it got through."""
        self.stopped.set()
        self.thread.join(deadline)
        end = time.monotonic() + deadline
        done = False
        while not done and time.monotonic() < end:
            done = self.ship_once(deadline=end)
            if not done:
                time.sleep(min(0.2, max(0.0, end - time.monotonic())))
        if not done:
            log.warning("shutdown: records not yet shipped to %s stay in %s and are lost with the Pod",
                        self.url, self.directory)  # fmt: skip
        self._disconnect()
        return done

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            if time.monotonic() >= self.next_attempt:
                self.ship_once()

    # --- one pass ---

    def ship_once(self, deadline: float | None = None) -> bool:
        """Ship every file's new whole lines; True when nothing is left to ship."""
        with self.lock:
            try:
                done = self._pass(deadline)
            except (OSError, ShipError, http.client.HTTPException) as error:
                self._failed(error)
                return False
            self.failures, self.next_attempt = 0, 0.0
            if self.logged_down:
                log.info("collector %s reachable again", self.url)
                self.logged_down = False
            return done

    def _files(self) -> list[Path]:
        try:
            files = [
                p
                for p in self.directory.iterdir()
                if p.name.endswith(RECORD_SUFFIX) and self.owns(p.name) and p.is_file()
            ]
        except FileNotFoundError:
            return []
        # Oldest first: the sink numbers its files in order; the mtime orders those of earlier processes.
        return sorted(files, key=lambda p: (_mtime(p), p.name))

    def _pass(self, deadline: float | None) -> bool:
        self._enforce_spool()
        done = True
        for path in self._files():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            name = path.name
            if name in self.poisoned:
                self._retire(path, poisoned=True)
                continue
            # Read before the size: the sink names its next file before creating it, so a file that
            # is not the active one now will never grow again and the size read next is final.
            closed = path != self.active()
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            offset = self.acked.get(name, 0)
            for _ in range(MAX_ROUNDS):  # bounded: a confused collector cannot keep one pass going
                if offset >= size:
                    break
                chunk = _whole_lines(path, offset, size, self.chunk_bytes)
                if chunk is None:
                    log.error("%s: a record line over %d bytes cannot be shipped; skipping the file", path,
                              MAX_LINE_BYTES)  # fmt: skip
                    self.poisoned.add(name)
                    break
                if not chunk:
                    if closed:  # a line torn by a crash of the process that wrote it: never completed
                        self.on_drop(1)
                        self.acked[name] = size
                    break  # otherwise the rest is a line still being written
                offset = self._send(name, offset, chunk, size)
                self.acked[name] = offset
            if name not in self.poisoned and self.acked.get(name, 0) < size and closed:
                done = False
            self._retire(path)
        self._update_spool_gauge()
        return done

    def _send(self, name: str, offset: int, chunk: bytes, local_size: int) -> int:
        target = f"/v1/records/{quote(self.source)}/{quote(name)}?offset={offset}"
        status, payload = self._post(target, chunk)
        size = payload.get("size") if isinstance(payload, dict) else None
        if status == 200 and isinstance(size, int):
            shipped = max(0, min(size, offset + len(chunk)) - offset)
            self.metrics.bytes.inc(amount=shipped)
            self.metrics.records.inc(amount=chunk[:shipped].count(b"\n"))
            return size if size <= local_size else local_size
        if status == 409 and isinstance(size, int):
            # The collector holds a different amount (it restarted, or retention removed the file):
            # resume where it is. More than this file has: nothing left to send from here.
            return min(size, local_size)
        raise ShipError(f"collector answered {status}: {payload}")

    def _post(self, target: str, body: bytes) -> tuple[int, object]:
        for attempt in (1, 2):  # a kept-alive connection the collector closed fails once, harmlessly
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", target, body=body, headers={"content-type": "application/x-ndjson"})
                response = self.conn.getresponse()
                data = response.read(1 << 16)
                if response.will_close:
                    self._disconnect()
            except (OSError, http.client.HTTPException):
                self._disconnect()
                if attempt == 2:
                    raise
                continue
            try:
                return response.status, json.loads(data or b"null")
            except (ValueError, RecursionError):  # not JSON, or nested past Python's recursion limit
                return response.status, data[:200].decode("latin-1")
        raise AssertionError("unreachable")

    def _retire(self, path: Path, poisoned: bool = False) -> None:
        """Delete a file the sink no longer writes once the collector has all of it."""
        if path == self.active():
            return
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            self.acked.pop(path.name, None)
            return
        if poisoned:
            self.on_drop(_count_lines(path, self.acked.get(path.name, 0)))
        elif self.acked.get(path.name, 0) < size:
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.acked.pop(path.name, None)
        self.poisoned.discard(path.name)

    def _enforce_spool(self) -> None:
        files = self._files()
        total = sum(_size(p) for p in files)
        active = self.active()
        for path in files:
            if total <= self.spool_bytes:
                break
            if path == active:
                continue
            size = _size(path)
            lost = _count_lines(path, self.acked.get(path.name, 0))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self.acked.pop(path.name, None)
            total -= size
            if lost:
                self.on_drop(lost)
                log.warning("spool over %d bytes: dropped %s (%d records never shipped)", self.spool_bytes,
                            path.name, lost)  # fmt: skip

    def _update_spool_gauge(self) -> None:
        self.metrics.spool.set(value=sum(_size(p) for p in self._files()))

    def _failed(self, error: Exception) -> None:
        self._disconnect()
        self.failures += 1
        reason = "http_error" if isinstance(error, ShipError) else "unreachable"
        self.metrics.failures.inc(reason)
        # 2 s, 4 s, ... 30 s between attempts: a collector that is restarting is not hammered.
        self.next_attempt = time.monotonic() + min(self.interval * 2 ** (self.failures - 1), MAX_BACKOFF)
        if not self.logged_down:
            log.warning("cannot ship records to %s: %s (retrying; records wait in %s)", self.url, error,
                        self.directory)  # fmt: skip
            self.logged_down = True
        with contextlib.suppress(OSError):
            self._update_spool_gauge()

    def _disconnect(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _whole_lines(path: Path, offset: int, size: int, chunk_bytes: int) -> bytes | None:
    """Bytes from `offset` up to the last newline within `chunk_bytes` (b"" when none yet).

    A single line longer than a chunk is sent alone, up to MAX_LINE_BYTES; None past that.
    """
    with open(path, "rb") as file:
        file.seek(offset)
        data = file.read(min(chunk_bytes, size - offset))
        end = data.rfind(b"\n")
        if end >= 0:
            return data[: end + 1]
        if len(data) < chunk_bytes:
            return b""
        more = file.read(min(MAX_LINE_BYTES, size - offset) - len(data))
        data += more
        end = data.find(b"\n")
        if end >= 0:
            return data[: end + 1]
        return None if len(data) >= MAX_LINE_BYTES else b""


def _count_lines(path: Path, offset: int) -> int:
    count = 0
    with contextlib.suppress(OSError), open(path, "rb") as file:
        file.seek(offset)
        while block := file.read(1 << 20):
            count += block.count(b"\n")
    return count


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
