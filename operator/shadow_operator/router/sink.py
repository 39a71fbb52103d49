"""Rotating JSON Lines writer: a bounded queue in front of one background writer thread.

submit() never blocks and never raises: a full queue drops the record (counted queue_full),
sampling drops it (sampled_out), and a directory that cannot be written is logged once and
every lost record counted as sink_error.

With a collector URL the directory is a spool: a Shipper (router/shipper.py) sends the files'
whole lines to the collector and deletes the files the writer has closed once all of them is
acknowledged. Without one (local runs, `make demo`) the files stay where they are written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import re
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

from ..contract.records import RECORD_SUFFIX, dumps
from .metrics import ShadowMetrics

log = logging.getLogger(__name__)
_STOP = object()


class RecordSink:
    def __init__(
        self,
        directory: str | Path,
        metrics: ShadowMetrics,
        rotate_bytes: int = 64 << 20,
        sample_rate: float = 1.0,
        queue_size: int = 10000,
        batch: int = 256,
        seed: int | None = None,
        collector: str | None = None,
        ship_interval: float = 2.0,
        spool_bytes: int = 512 << 20,
        ship_deadline: float = 5.0,
        worker: tuple[int, int] | None = None,
    ) -> None:
        """`worker`: (index, count) under `shadowctl router --workers N` (router/workers.py): the
        files are named `records-<host>-w<index>-...` and this sink's shipper ships only its slot's."""
        self.directory = Path(directory)
        self.metrics = metrics
        self.rotate_bytes = rotate_bytes
        self.sample_rate = sample_rate
        self.batch = batch
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.random = random.Random(seed)
        # The token keeps names unique across restarts of a container, whose pid is often 1 every
        # time: the collector identifies a file by its name, and a reused name would read as a retry.
        slot = f"w{worker[0]}-" if worker else ""
        self.prefix = f"records-{socket.gethostname()}-{slot}{os.getpid()}-{secrets.token_hex(3)}-"
        self.index = 0
        self.file = None
        # Named before the file is created, so the shipper never takes a file being written for a closed one.
        self.current_path: Path | None = None
        self.ship_deadline = ship_deadline
        self.shipper = None
        if collector:
            from .shipper import Shipper

            self.shipper = Shipper(
                self.directory,
                collector,
                metrics.registry,
                active=lambda: self.current_path,
                on_drop=lambda n: metrics.records_dropped.inc("spool_full", amount=n),
                interval=ship_interval,
                spool_bytes=spool_bytes,
                # The workers share the directory (the readers glob it flat), but each shipper deletes
                # what it shipped: two must never take the same file, nor one another's being written.
                owns=(lambda name, index=worker[0], count=worker[1]: slot_of(name, count) == index) if worker else None,
            )
        self.size = 0
        self.error_logged = False
        self.thread = threading.Thread(target=self._run, name="shadow-sink", daemon=True)
        self.thread.start()

    def submit(self, record: dict[str, Any]) -> None:
        if self.sample_rate < 1.0 and self.random.random() >= self.sample_rate:
            self.metrics.records_dropped.inc("sampled_out")
            return
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.metrics.records_dropped.inc("queue_full")

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, close the file, stop the thread; then ship what is left (bounded)."""
        with contextlib.suppress(queue.Full):
            self.queue.put(_STOP, timeout=timeout)
        self.thread.join(timeout)
        if self.shipper is not None:
            # Below the Pod's 30 s terminationGracePeriodSeconds, after the proxy's drain.
            self.shipper.close(self.ship_deadline)

    def flush_wait(self, timeout: float = 5.0) -> None:
        """Block until everything queued so far is written (tests, shutdown)."""
        self.queue.join() if timeout is None else _join(self.queue, timeout)

    # --- writer thread ---

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self.queue.get()]
            while len(items) < self.batch:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            records = [i for i in items if i is not _STOP]
            stop = len(records) != len(items)
            if records:
                self._write(records)
            for _ in items:
                self.queue.task_done()
        self._close_file()

    def _write(self, records: list[dict[str, Any]]) -> None:
        try:
            text = "".join(dumps(r) for r in records).encode()
            if self.file is None or self.size >= self.rotate_bytes:
                self._open_next()
            self.file.write(text)
            self.file.flush()
            self.size += len(text)
            self.metrics.records_written.inc(amount=len(records))
        except Exception as error:
            self.metrics.records_dropped.inc("sink_error", amount=len(records))
            if not self.error_logged:
                log.error("cannot write records to %s: %s (records are dropped and counted)", self.directory, error)
                self.error_logged = True
            self._close_file()

    def _open_next(self) -> None:
        self._close_file()
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            path = self.directory / f"{self.prefix}{self.index}{RECORD_SUFFIX}"
            self.index += 1
            if not path.exists():
                break
        self.current_path = path
        self.file = open(path, "ab")  # noqa: SIM115  (kept open across batches)
        self.size = 0

    def _close_file(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None
        self.current_path = None


# records-<host>-w<slot>-<pid>-<token>-<n>.jsonl: the slot, read from the end (a host name may hold "-w1-")
_SLOT = re.compile(r"-w([0-9]+)-[0-9]+-[0-9a-f]{6}-[0-9]+" + re.escape(RECORD_SUFFIX) + "$")


def slot_of(name: str, count: int) -> int:
    """Which worker ships this file: the slot in its name; worker 0 takes those of no live slot
    (a single-process run before, or more workers than now)."""
    match = _SLOT.search(name)
    slot = int(match[1]) if match else 0
    return slot if slot < count else 0


def _join(q: queue.Queue, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    with q.all_tasks_done:
        while q.unfinished_tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            q.all_tasks_done.wait(remaining)
