"""`shadowctl router --workers N`: N worker processes behind one port, one admin view.

One Python process serves at most one core (one event loop, the GIL), so the router scales out
with processes, each the whole single-process router (its own event loop, upstream pools, sink
thread and shipper):

- Listening: every worker binds the same HOST:PORT with SO_REUSEPORT and the kernel spreads new
  connections over their accept queues (a hash of the 4-tuple), without a shared accept lock or
  thundering herd. The parent binds it first (SO_REUSEPORT, never listening): that checks the
  address, resolves port 0, and keeps the port ours while a worker restarts.
- Metrics: the parent alone owns the admin port. Each worker keeps its own registry and answers
  "dump" on a socketpair the parent created for it (inherited fd, so nothing on the filesystem
  and no name another process could connect to), with its raw values; the parent sums them
  (metrics.merge_dumps: counters, histogram buckets/sums/counts and gauges, which all count
  something per process) and renders the text format. Each scrape asks every worker at that
  moment, so the view is exact; nothing is counted twice because every value lives in exactly
  one process. Shared memory would avoid the round trip but needs fixed slots for label sets
  that are only known at run time (segments); a scrape every few seconds costs far less than
  that complexity. When a worker exits, the counters and histograms it last reported are kept
  (`retired`) and added to every later view, so a restart never makes a counter go down (what
  it counted after the parent's last look, at most POLL_SECONDS, is lost with it; Prometheus
  sees no reset).
- Records: one sink per worker in the same directory, files named `records-<host>-w<i>-<pid>-...`
  (sink.py), so no two processes ever write one file and the readers' flat `*.jsonl` glob still
  finds them all. Each worker's shipper ships and deletes only its slot's files (a restarted
  worker picks up those of the one it replaces); the spool bound is split between them.
- Limits: maxInFlight and maxConnections bound the Pod's memory and the candidate's load, so
  each worker gets its share (rounded up).
- Supervision: a worker that exits is started again (backoff from 0.1 s to 5 s while it keeps
  dying young); SIGTERM to the parent answers /readyz 503, keeps serving --drain-delay, then
  sends SIGTERM to every worker, each of which drains as the single-process router does, and
  waits for them. A worker whose parent is gone stops (PR_SET_PDEATHSIG, and EOF on its socket).

`--workers 1` is the single-process router, unchanged (cli.run with no worker link).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..contract import metric_names as m
from .admin import AdminServer, stop_on_signals
from .metrics import Registry, merge_dumps

log = logging.getLogger(__name__)

WORKER_ENV = "SHADOW_ROUTER_WORKER"  # the worker's spec, JSON (set by the parent only)
START_TIMEOUT = 60.0  # seconds a new worker may take to listen
DUMP_TIMEOUT = 2.0  # seconds a worker may take to answer a scrape (else its last dump is used)
POLL_SECONDS = 5.0  # the parent refreshes every worker's dump this often between scrapes
MAX_BACKOFF = 5.0
STABLE_SECONDS = 10.0  # a worker that lived this long resets the backoff
_READ_LIMIT = 64 << 20  # a dump is one JSON line


def cpu_limit() -> int:
    """The container's CPU limit in whole cores (cgroup v2 cpu.max, v1 cfs quota), rounded up and
    at most the CPUs this process may run on (sched_getaffinity); 1 without a limit.

    Without a limit the only number is the node's core count, which has nothing to do with what
    the Pod may use (its memory limit is sized for a few workers, not for 64): one process, as
    before, unless --workers says otherwise.
    """
    quota = _cgroup_quota()
    if quota is None:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, math.ceil(quota)))


def _cgroup_quota() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if text[0] == "max" else int(text[0]) / int(text[1])
    with contextlib.suppress(OSError, ValueError):
        base = Path("/sys/fs/cgroup/cpu")
        quota = int((base / "cpu.cfs_quota_us").read_text())
        period = int((base / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    return None


def reuseport_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def reserve(host: str, port: int) -> socket.socket:
    """Bind HOST:PORT with SO_REUSEPORT without listening: the workers bind it too."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def share(limit: int, count: int) -> int:
    return max(1, math.ceil(limit / count))


# --- the worker's side -------------------------------------------------------------------------


class WorkerLink:
    """A worker's end of its socketpair to the parent: says when it listens, answers "dump"."""

    def __init__(self, index: int, count: int, fd: int) -> None:
        self.index, self.count, self.fd = index, count, fd
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None

    async def start(self, registry: Registry, stop: asyncio.Event, port: int) -> None:
        reader, self.writer = await asyncio.open_connection(sock=socket.socket(fileno=self.fd), limit=_READ_LIMIT)
        self._send({"listening": port, "pid": os.getpid()})
        self.task = asyncio.get_running_loop().create_task(self._serve(reader, registry, stop))

    def _send(self, message: object) -> None:
        self.writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def _serve(self, reader: asyncio.StreamReader, registry: Registry, stop: asyncio.Event) -> None:
        try:
            while line := await reader.readline():
                word, _, seq = line.decode("latin-1").strip().partition(" ")
                if word == "dump":  # the sequence number pairs it with its request (one may time out)
                    self._send({"seq": int(seq or 0), "dump": registry.dump()})
                    await self.writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        if not stop.is_set():
            log.warning("the parent process is gone: stopping")
            stop.set()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()


def worker_main() -> int:
    """A worker process: `python -c ...workers import worker_main` with WORKER_ENV set by the parent."""
    spec = json.loads(os.environ.pop(WORKER_ENV))
    _die_with_parent(spec["parent"])
    from argparse import Namespace

    from .cli import serve_worker

    link = WorkerLink(spec["index"], spec["count"], spec["fd"])
    return serve_worker(Namespace(**spec["args"]), link)


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the prctl
        sys.exit(1)


# --- the parent's side -------------------------------------------------------------------------


class Slot:
    """One worker position: its current process, channel and last dump."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()
        self.last: list[dict] | None = None  # the current process's latest dump
        self.listening = False
        self.restarts = 0
        self.seq = 0

    async def dump(self) -> None:
        """Refresh `last` from the worker (kept as it was when it does not answer in time)."""
        if not self.listening or self.writer is None:
            return
        process, reader = self.process, self.reader
        try:
            async with self.lock:
                self.seq += 1
                self.writer.write(b"dump %d\n" % self.seq)
                async with asyncio.timeout(DUMP_TIMEOUT):
                    while True:  # answers to requests that timed out before come first: skipped
                        line = await reader.readline()
                        if not line:
                            return
                        answer = json.loads(line)
                        if answer.get("seq") == self.seq:
                            break
        except (OSError, TimeoutError, asyncio.LimitOverrunError, ValueError, AttributeError):
            return
        if process is self.process and self.listening:
            self.last = answer["dump"]


class Supervisor:
    def __init__(self, spec_args: dict, count: int, shadow: str | None, drain_delay: float) -> None:
        self.spec_args = spec_args
        self.count = count
        self.drain_delay = drain_delay
        self.slots = [Slot(i) for i in range(count)]
        self.retired: list[dict] = []  # counters and histograms of the workers that exited
        self.registry = Registry({m.SHADOW_LABEL: shadow} if shadow else None)
        self.alive = self.registry.gauge("shadow_router_workers", "Router worker processes listening.")
        self.restarted = self.registry.counter(
            "shadow_router_worker_restarts_total", "Router worker processes started again after exiting.", ("worker",)
        )
        self.stopping = False
        self.started = asyncio.Event()
        self.failed: str | None = None  # why the first start of a worker failed
        self.exit_codes: list[int] = []

    # scrape

    async def render(self) -> str:
        await asyncio.gather(*(slot.dump() for slot in self.slots))
        # No await from here on: a worker retired meanwhile is either in `last` or in `retired`, never both.
        live = [slot.last for slot in self.slots if slot.last is not None]
        self.alive.set(value=sum(1 for slot in self.slots if slot.listening))
        merged = merge_dumps([*live, self.retired, self.registry.dump()])
        return Registry.from_dump(merged).render()

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            await asyncio.gather(*(slot.dump() for slot in self.slots))

    # processes

    async def run_slot(self, slot: Slot) -> None:
        failures = 0
        while not self.stopping:
            began = time.monotonic()
            try:
                code = await self._one_process(slot)
            except OSError as error:  # could not start a process at all (fds, memory)
                log.error("worker %d: cannot start: %s", slot.index, error)
                code = -1
            if self.stopping:
                break
            if not self.started.is_set():
                self.failed = f"worker {slot.index} exited with {code} before listening"
                self.started.set()
                return
            failures = 0 if time.monotonic() - began >= STABLE_SECONDS else failures + 1
            delay = 0.1 if failures <= 1 else min(MAX_BACKOFF, 0.1 * 2 ** (failures - 1))
            log.warning("worker %d exited with %s; starting it again in %.1fs", slot.index, code, delay)
            await asyncio.sleep(delay)
            if not self.stopping:
                slot.restarts += 1
                self.restarted.inc(str(slot.index))

    async def _one_process(self, slot: Slot) -> int:
        ours, theirs = socket.socketpair()
        spec = {
            "index": slot.index, "count": self.count, "fd": theirs.fileno(), "parent": os.getpid(),
            "args": self.spec_args,
        }  # fmt: skip
        try:
            slot.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import sys; from shadow_operator.router.workers import worker_main; sys.exit(worker_main())",
                "router-worker",
                f"{slot.index}/{self.count}",
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env={**os.environ, WORKER_ENV: json.dumps(spec)},
            )
        finally:
            theirs.close()
        process = slot.process
        slot.reader, slot.writer = await asyncio.open_connection(sock=ours, limit=_READ_LIMIT)
        try:
            hello = await asyncio.wait_for(slot.reader.readline(), START_TIMEOUT)
            if hello and "listening" in json.loads(hello):
                slot.listening = True
                log.info("worker %d listening (pid %d)", slot.index, process.pid)
                if all(s.listening for s in self.slots):
                    self.started.set()
        except (OSError, TimeoutError, ValueError) as error:
            log.error("worker %d did not start: %s", slot.index, error or type(error).__name__)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        code = await process.wait()
        # Synchronously: its last counters move from `last` to `retired` in one step (see render()).
        slot.listening = False
        if slot.last is not None:
            self.retired = merge_dumps([self.retired, slot.last], gauges=False)
            slot.last = None
        slot.writer.close()
        slot.reader = slot.writer = None
        return code

    def signal_all(self, sig: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(sig)


async def supervise(
    spec_args: dict,
    count: int,
    listen: tuple[str, int],
    admin_listen: tuple[str, int],
    shadow: str | None,
    drain_delay: float,
    stop: asyncio.Event | None = None,
) -> int:
    """The parent: reserve the port, start `count` workers, serve the merged admin view, restart
    workers that exit; on SIGTERM drain (not ready for `drain_delay`, then SIGTERM every worker)."""
    host, port = listen
    try:
        placeholder = reserve(host, port)
    except OSError as error:
        print(f"shadowctl: cannot listen: {error}", file=sys.stderr)
        return 3
    port = placeholder.getsockname()[1]
    spec_args = {**spec_args, "listen": f"[{host}]:{port}" if ":" in host else f"{host}:{port}"}
    supervisor = Supervisor(spec_args, count, shadow, drain_delay)
    draining = asyncio.Event()
    admin = ParentAdmin(
        supervisor.render,
        ready=lambda: supervisor.started.is_set() and not draining.is_set()
        and any(s.listening for s in supervisor.slots),
    )  # fmt: skip
    stop = stop_on_signals(stop)
    try:
        admin_port = await admin.start(*admin_listen)
    except OSError as error:
        print(f"shadowctl: cannot listen: {error}", file=sys.stderr)
        placeholder.close()
        return 3
    tasks = [asyncio.get_running_loop().create_task(supervisor.run_slot(slot)) for slot in supervisor.slots]
    poller = asyncio.get_running_loop().create_task(supervisor.poll())
    waiter = asyncio.get_running_loop().create_task(stop.wait())
    await asyncio.wait([waiter, asyncio.ensure_future(supervisor.started.wait())], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if supervisor.failed or not supervisor.started.is_set():
        if supervisor.failed:
            print(f"shadowctl router: {supervisor.failed}", file=sys.stderr)
            code = 3
    else:
        log.info("router: %d workers listening on %s:%d, admin on %s:%d", count, host, port, admin_listen[0],
                 admin_port)  # fmt: skip
        print(f"listening {port} admin {admin_port}", flush=True)
        await stop.wait()
        draining.set()
        if drain_delay > 0:
            log.info("stopping: not ready, still serving for %.1fs while endpoints converge", drain_delay)
            await asyncio.sleep(drain_delay)
    supervisor.stopping = True
    log.info("stopping: draining the workers")
    supervisor.signal_all(signal.SIGTERM)
    await asyncio.gather(*tasks, return_exceptions=True)
    poller.cancel()
    waiter.cancel()
    await admin.stop()
    placeholder.close()
    return code


class ParentAdmin(AdminServer):
    """The admin listener of the parent: /metrics merged from the workers, /healthz, /readyz."""

    def __init__(self, render: Callable, ready: Callable[[], bool]) -> None:
        super().__init__(Registry(), ready)
        self.render = render

    async def metrics_text(self) -> str:
        return await self.render()
