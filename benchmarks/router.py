"""`make bench-router`: the builtin router beside a direct connection and nginx (with and without `mirror`).

Everything runs on 127.0.0.1 and every row is measured in the same run, one after another:

  primary     nginx answering `{"prediction": 1}` from its config (benchmarks/upstreams.py),
              started once; one worker, so it is not what limits the rows in front of it
  candidates  asyncio servers (uvloop when importable), one process per behaviour: fast,
              50 ms, 200 ms, failing (500 KeyError), resetting, hanging
  nginx       a fresh nginx per row (own prefix and config in a temp dir, one worker),
              proxy_pass to the primary over a keepalive upstream; the mirror rows add
              `mirror` to a location that proxies to the candidate with 2 s connect/read
              timeouts, so a hanging candidate costs at most 2 s per request
  router      a fresh `shadowctl router` per row, --candidate-timeout 2s --max-in-flight 256,
              --mirror-percent 0 (no mirror) or 100, pair records into a temp dir

Load, all POST /predict with a small JSON body, keep-alive:

  closed loop     wrk -t1 -cC -dSs --latency (default -c32, S = --seconds): throughput and
                  the primary path's latency (what the client sees) for every row
  one connection  wrk -t1 -c1 for S/2 s: the per-request overhead of each hop
  open loop       500 requests/s for S s, latency when nothing is saturated, twice:
                  evenly spaced: a small asyncio client sends one request every 2 ms whatever
                    the answers do (a pool of keep-alive connections); the targets use these
                  hey -c 10 -q 50 (-q is per worker): hey's workers tick together, so this is
                    bursts of 10 requests every 20 ms; shown for information (0.1 ms resolution)

Each row is warmed up (1-2 s of the same load) before it is measured. One table
(benchmarks/table.py), one line per measurement: the router's value beside the same measurement
of its reference in the same run (nginx with the same mirroring and process count, the direct
connection, or for the isolation targets the router's own fast-candidate row), the ratio, the
target and whether it is met. Under it: nginx's own behaviour with slow candidates, for contrast,
and what the router did with the copies.

  --seconds S   seconds per row (default 10; --seconds 2 for a quick look)
  --soak N      instead of the table: drive the router with the resetting candidate (--soak-candidate) for N s
                and sample its RSS and open fds every 10 s (flat = last within 10% of first)
  --only TEXT   only rows whose name contains TEXT (plus the direct and nginx reference rows)
  --keep        keep the temp dir (configs, logs, records) and print its path
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port

from benchmarks import table, upstreams

HOST = "127.0.0.1"
PATH = "/predict"
BODY = '{"features": {"purchase_count": 3, "last_seen_days": 12}}'
CONNECTIONS = 32
OPEN_RATE = 500
OPEN_WORKERS = 10  # hey -c 10 -q 50: 500/s; hey's workers tick together, so bursts of 10 every 20 ms
CANDIDATE_TIMEOUT = "2s"
MAX_IN_FLIGHT = 256
SOAK_INTERVAL = 10.0

# name -> (behaviour, delay ms)
CANDIDATES = {
    "fast": ("fast", 0.0),
    "50 ms": ("delay", 50.0),
    "200 ms": ("delay", 200.0),
    "failing": ("error", 0.0),
    "resetting": ("reset", 0.0),
    "hanging": ("hang", 0.0),
}
NGINX_MIRROR_CANDIDATES = ("fast", "50 ms", "200 ms", "hanging")
ROUTER_CANDIDATES = ("fast", "50 ms", "200 ms", "failing", "resetting", "hanging")
DEGRADED = ("50 ms", "200 ms", "failing", "resetting", "hanging")

# Targets.
P99_WITHIN = 1.1  # primary p99 with a bad candidate <= 1.1x of its p99 with a fast one
RPS_WITHIN = 0.9  # throughput with a bad candidate >= 0.9x of it with a fast one
ADDED_P50_ONE_CONN_MS = 1.0
ADDED_P50_OPEN_MS = 1.0
ADDED_P99_OPEN_MS = 3.0
# Issue 13 ("Performance at production scale"), in the closed-loop rows (one process each) and the scaling rows
# (--workers N beside nginx `worker_processes N`).
SCALING_WORKERS = (1, 2)
RPS_VS_NGINX_SAME_WORKERS = 0.8  # router without mirroring >= 0.8x nginx without, same process count
RPS_VS_NGINX_MIRROR = 1.0  # router mirroring every request >= 1.0x nginx's own `mirror`, same process count
SOAK_FLAT = 0.10

WRK_SCRIPT = f"""\
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {{\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, \\"max_us\\": %d, "
    .. "\\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class BenchError(RuntimeError):
    pass


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def wait_port(port: int, proc: Proc, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise BenchError(f"{proc.name}: nothing listens on {HOST}:{port} after {timeout:.0f}s\n{proc.log_tail()}")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class Proc:
    """A process this benchmark started, in its own session so it can be stopped with its children."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict | None = None):
        self.name = name
        self.argv = argv
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  | {line}" for line in text[-lines:])

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise BenchError(
                f"{self.name} exited with {self.popen.returncode}: {' '.join(self.argv)}\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)
        else:
            # the leader is gone; its group may still hold children (nginx workers)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        self._log_file.close()


class Procs:
    """Every process started; stop_all() in a finally stops them in reverse order."""

    def __init__(self):
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], log: Path, env: dict | None = None) -> Proc:
        proc = Proc(name, argv, log, env)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        while self.procs:
            proc = self.procs.pop()
            with contextlib.suppress(Exception):
                proc.stop()


# ---- load generators ----------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx responses plus socket errors and timeouts
    detail: str = ""


def run_wrk(url: str, connections: int, seconds: float, script: Path, log: Path | None = None) -> Result:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if log is not None:
        with open(log, "a") as f:
            f.write(" ".join(argv) + "\n" + out.stdout + out.stderr + "\n")
    match = re.search(r"^BENCH (\{.*\})$", out.stdout, re.M)
    if out.returncode != 0 or not match:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    data = json.loads(match.group(1))
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    detail = []
    if data["status"]:
        detail.append(f"non-2xx {data['status']}")
    if socket_errors:
        detail.append(
            f"socket errors connect {data['connect']} read {data['read']} write {data['write']} timeout {data['timeout']}"
        )
    return Result(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000.0,
        p99_ms=data["p99_us"] / 1000.0,
        requests=data["requests"],
        errors=data["status"] + socket_errors,
        detail=", ".join(detail),
    )


def run_hey(url: str, rate: int, workers: int, seconds: float, log: Path | None = None) -> Result:
    per_worker = rate / workers
    argv = [
        "hey",
        "-z",
        f"{max(1, round(seconds))}s",
        "-c",
        str(workers),
        "-q",
        f"{per_worker:g}",
        "-t",
        "10",
        "-m",
        "POST",
        "-T",
        "application/json",
        "-d",
        BODY,
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if log is not None:
        with open(log, "a") as f:
            f.write(" ".join(argv) + "\n" + out.stdout + out.stderr + "\n")
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%+ in ([\d.]+) secs", text, re.M)
    p99 = re.search(r"^\s+99%+ in ([\d.]+) secs", text, re.M)
    if out.returncode != 0 or not (rps and p50 and p99):
        raise BenchError(f"hey failed ({out.returncode}): {out.stdout}{out.stderr}")
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    error_block = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    socket_errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", error_block, re.M))
    ok = sum(n for code, n in statuses.items() if 200 <= code < 300)
    bad = sum(statuses.values()) - ok
    detail = []
    if bad:
        detail.append(f"non-2xx {bad}")
    if socket_errors:
        detail.append(f"errors {socket_errors}")
    return Result(
        rps=float(rps.group(1)),
        p50_ms=float(p50.group(1)) * 1000.0,
        p99_ms=float(p99.group(1)) * 1000.0,
        requests=sum(statuses.values()) + socket_errors,
        errors=bad + socket_errors,
        detail=", ".join(detail),
    )


async def _paced(host: str, port: int, rate: float, seconds: float, timeout: float = 10.0) -> Result:
    import asyncio

    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n{BODY}"
    ).encode()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened: list[asyncio.StreamWriter] = []
    latencies: list[float] = []
    errors = {"status": 0, "socket": 0}

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:].strip())
        if length:
            await reader.readexactly(length)
        return status

    async def one() -> None:
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(host, port)
            opened.append(writer)
        started = time.perf_counter()
        try:
            status = await asyncio.wait_for(exchange(reader, writer), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors["socket"] += 1
            writer.close()
            return
        latencies.append(time.perf_counter() - started)
        if not 200 <= status < 300:
            errors["status"] += 1
        idle.append((reader, writer))

    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    tasks = []
    begin = loop.time() + 0.05
    for i in range(total):
        delay = begin + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - begin
    for writer in opened:
        writer.close()
    latencies.sort()

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000.0 if latencies else float("nan")

    detail = []
    if errors["status"]:
        detail.append(f"non-2xx {errors['status']}")
    if errors["socket"]:
        detail.append(f"socket errors {errors['socket']}")
    detail.append(f"{len(opened)} connections")
    return Result(
        rps=len(latencies) / elapsed,
        p50_ms=q(0.50),
        p99_ms=q(0.99),
        requests=total,
        errors=errors["status"] + errors["socket"],
        detail=", ".join(detail),
    )


def run_paced(url: str, rate: float, seconds: float) -> Result:
    """Open loop: one request every 1/rate s, evenly spaced, whatever the answers do (a pool of keep-alive connections)."""
    import asyncio

    hostport = url.split("//", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    try:
        import uvloop  # type: ignore[import-not-found]

        return uvloop.run(_paced(host, int(port), rate, seconds))
    except ImportError:
        return asyncio.run(_paced(host, int(port), rate, seconds))


# ---- the bench ------------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    name: str
    kind: str  # direct | nginx | router
    candidate: str | None = None  # a CANDIDATES key; None = no mirror
    result: Result | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)
    workers: int = 1  # nginx worker_processes / router --workers


def mirror_results(admin: int | None) -> dict[str, float]:
    """The router's mirror counter by result (`*mirror*_total{result=...}`) and its candidate answers by outcome
    (`*requests_total{role="candidate", outcome=...}`), from /metrics."""
    if admin is None:
        return {}
    try:
        text = http_get(f"http://{HOST}:{admin}/metrics")[1]
    except OSError:
        return {}
    out: dict[str, float] = {}
    for name, labels, value in re.findall(r"^(\w+)\{([^}]*)\} (\S+)$", text, re.M):
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if "mirror" in name and name.endswith("_total") and "result" in label:
            key = f"mirror {label['result']}"
        elif name.endswith("requests_total") and label.get("role") == "candidate" and "outcome" in label:
            key = f"candidate {label['outcome']}"
        else:
            continue
        out[key] = out.get(key, 0.0) + float(value)
    return out


def shadowctl_path() -> str | None:
    local = Path(sys.executable).parent / "shadowctl"
    if local.exists():
        return str(local)
    return shutil.which("shadowctl")


def router_available(shadowctl: str | None) -> tuple[bool, str]:
    if not shadowctl:
        return False, "shadowctl not found"
    try:
        out = subprocess.run([shadowctl, "router", "--help"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if out.returncode != 0:
        return False, (out.stderr.strip().splitlines() or ["`shadowctl router --help` failed"])[-1]
    return True, ""


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, procs: Procs):
        self.args = args
        self.workdir = workdir
        self.procs = procs
        self.script = workdir / "post.lua"
        self.script.write_text(WRK_SCRIPT)
        self.load_log = workdir / "load.log"
        self.primary_port = 0
        self.candidate_ports: dict[str, int] = {}
        self.shadowctl = shadowctl_path()
        self.counter = 0

    # upstreams, started once

    def start_upstreams(self, candidates: tuple[str, ...]) -> None:
        prefix = self.workdir / "primary"
        self.primary_port = free_port()
        proc = self.procs.start(
            "primary nginx",
            upstreams.nginx_argv(prefix, upstreams.nginx_primary_conf(prefix, self.primary_port)),
            self.workdir / "primary.log",
        )
        wait_port(self.primary_port, proc)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
        started = []
        for name in candidates:
            behaviour, delay = CANDIDATES[name]
            port = free_port()
            proc = self.procs.start(
                f"candidate {name}",
                upstreams.candidate_argv(port, behaviour, delay),
                self.workdir / f"candidate-{behaviour}-{int(delay)}.log",
                env,
            )
            started.append((port, proc))
            self.candidate_ports[name] = port
        for port, proc in started:
            wait_port(port, proc)

    # per-row front ends

    def _next(self, stem: str) -> Path:
        self.counter += 1
        path = self.workdir / f"{self.counter:02d}-{stem}"
        path.mkdir(parents=True)
        return path

    @contextlib.contextmanager
    def nginx(self, candidate: str | None, workers: int = 1):
        prefix = self._next("nginx-" + (candidate or "nomirror").replace(" ", "") + f"-x{workers}")
        port = free_port()
        conf = upstreams.nginx_proxy_conf(
            prefix, port, self.primary_port, self.candidate_ports[candidate] if candidate else None
        )
        if workers > 1:  # one listening socket per worker (SO_REUSEPORT), like the router's workers
            conf = conf.replace("worker_processes 1;", f"worker_processes {workers};", 1)
            conf = conf.replace(f"listen {HOST}:{port} backlog", f"listen {HOST}:{port} reuseport backlog", 1)
        proc = self.procs.start("nginx proxy", upstreams.nginx_argv(prefix, conf), prefix / "stdout.log")
        try:
            wait_port(port, proc)
            yield f"http://{HOST}:{port}{PATH}", proc
        finally:
            self.procs.stop(proc)

    @contextlib.contextmanager
    def router(self, candidate: str | None, workers: int = 1):
        assert self.shadowctl
        workdir = self._next("router-" + (candidate or "nomirror").replace(" ", "") + f"-x{workers}")
        port, admin = free_port(), free_port()
        records = workdir / "records"
        records.mkdir()
        argv = [
            self.shadowctl,
            "router",
            "--primary",
            f"http://{HOST}:{self.primary_port}",
            "--candidate",
            f"http://{HOST}:{self.candidate_ports[candidate or 'fast']}",
            "--listen",
            f"{HOST}:{port}",
            "--admin-listen",
            f"{HOST}:{admin}",
            "--mirror-percent",
            "100" if candidate else "0",
            "--candidate-timeout",
            CANDIDATE_TIMEOUT,
            "--max-in-flight",
            str(MAX_IN_FLIGHT),
            "--records",
            str(records),
            "--workers",
            str(workers),
        ]
        proc = self.procs.start("router", argv, workdir / "router.log")
        try:
            wait_port(port, proc, timeout=30)
            deadline = time.monotonic() + 30
            while True:
                proc.check_alive()
                with contextlib.suppress(OSError):
                    if http_get(f"http://{HOST}:{admin}/readyz")[0] == 200:
                        break
                if time.monotonic() > deadline:
                    raise BenchError(f"router: /readyz not 200 after 30s\n{proc.log_tail()}")
                time.sleep(0.1)
            yield f"http://{HOST}:{port}{PATH}", proc, admin, workdir
        finally:
            with contextlib.suppress(Exception):
                (workdir / "metrics.txt").write_text(http_get(f"http://{HOST}:{admin}/metrics")[1])
            self.procs.stop(proc)
            if not self.args.keep:
                shutil.rmtree(records, ignore_errors=True)

    @contextlib.contextmanager
    def front(self, row: Row):
        """Yields the URL to load and the router's admin port (None for direct and nginx)."""
        if row.kind == "direct":
            yield f"http://{HOST}:{self.primary_port}{PATH}", None
        elif row.kind == "nginx":
            with self.nginx(row.candidate, row.workers) as (url, _):
                yield url, None
        else:
            with self.router(row.candidate, row.workers) as (url, _proc, admin, _workdir):
                yield url, admin

    # measuring

    def measure(self, row: Row, load: str, seconds: float) -> None:
        warmup = min(2.0, max(1.0, seconds / 5))
        connections = 1 if load == "one" else self.args.connections

        def run(duration: float, log: Path | None) -> Result:
            if load == "open":
                return run_paced(url, OPEN_RATE, duration)
            if load == "hey":
                return run_hey(url, OPEN_RATE, OPEN_WORKERS, duration, log)
            return run_wrk(url, connections, duration, self.script, log)

        with self.front(row) as (url, admin):
            run(warmup, None)
            before = mirror_results(admin)  # mirrors still in flight from the warm-up land in the row
            row.result = run(seconds, self.load_log)
            after = mirror_results(admin)
            row.extra["mirror"] = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def build_rows(args: argparse.Namespace, with_router: bool) -> list[tuple[str, str, float, list[Row]]]:
    seconds = args.seconds
    one = max(1.0, seconds / 2)
    closed = f"closed loop: wrk -t1 -c{args.connections} -d{seconds:g}s"
    single = f"one connection: wrk -t1 -c1 -d{one:g}s"
    paced = f"open loop {OPEN_RATE} req/s, evenly spaced (python, keep-alive pool), {seconds:g}s"
    bursty = f"open loop {OPEN_RATE} req/s: hey -c {OPEN_WORKERS} -q {OPEN_RATE // OPEN_WORKERS} -z {seconds:g}s (bursts of {OPEN_WORKERS})"

    def open_rows(title: str) -> list[Row]:
        return [
            Row(title, "direct", "direct"),
            Row(title, "nginx, no mirror", "nginx"),
            Row(title, "router, fast candidate", "router", "fast"),
            Row(title, "router, 200 ms candidate", "router", "200 ms"),
        ]

    sections = [
        (
            closed,
            "closed",
            seconds,
            [Row(closed, "direct", "direct"), Row(closed, "nginx, no mirror", "nginx")]
            + [Row(closed, f"nginx mirror, {c} candidate", "nginx", c) for c in NGINX_MIRROR_CANDIDATES]
            + [Row(closed, "router, no mirror", "router")]
            + [Row(closed, f"router, {c} candidate", "router", c) for c in ROUTER_CANDIDATES],
        ),
        (
            single,
            "one",
            one,
            [
                Row(single, "direct", "direct"),
                Row(single, "nginx, no mirror", "nginx"),
                Row(single, "router, no mirror", "router"),
            ],
        ),
        (paced, "open", seconds, open_rows(paced)),
        (bursty, "hey", seconds, open_rows(bursty)),
    ]
    scaling = (
        f"scaling: wrk -t1 -c{args.connections} -d{seconds:g}s, router --workers N beside nginx worker_processes N"
    )
    scaling_rows = []
    for n in SCALING_WORKERS:
        scaling_rows += [
            Row(scaling, f"x{n} nginx, no mirror", "nginx", workers=n),
            Row(scaling, f"x{n} router, no mirror", "router", workers=n, extra={"ref": f"x{n} nginx, no mirror"}),
            Row(scaling, f"x{n} nginx mirror, fast candidate", "nginx", "fast", workers=n),
            Row(scaling, f"x{n} router, fast candidate", "router", "fast", workers=n,
                extra={"ref": f"x{n} nginx mirror, fast candidate"}),
        ]  # fmt: skip
    if args.scaling:
        sections = []
    sections.append((scaling, "scaling", seconds, scaling_rows))
    for _, _, _, rows in sections:
        for row in rows:
            if row.kind == "router" and not with_router:
                row.note = "router: not available"
            elif args.only and row.kind != "direct" and row.name != "nginx, no mirror" and args.only not in row.name:
                row.note = "skipped (--only)"
    return sections


# ---- output ---------------------------------------------------------------------------------


def mirror_lines(sections) -> list[str]:
    """What the router did with the copies, per mirroring row (its /metrics, over the measured seconds)."""
    lines = []
    for _title, load, _seconds, rows in sections:
        for row in rows:
            if row.kind == "router" and row.candidate and row.result and row.extra.get("mirror"):
                counts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(row.extra["mirror"].items()))
                lines.append(f"  {load:<6} {row.name:<28} {counts}")
    return (
        ["router mirror decisions and candidate outcomes during each measured row (its /metrics):", *lines]
        if lines
        else []
    )


_UNITS = {"rps": ("req/s", "req/s"), "p50_ms": ("p50", "ms"), "p99_ms": ("p99", "ms")}


def report(sections) -> table.Table:
    """Every measurement of the run as one table (benchmarks/table.py): the router's value, beside it the same
    measurement of its reference (nginx with the same mirroring and process count, a direct connection, or the
    router's own fast-candidate row for the isolation targets), the ratio, the target and whether it is met."""
    t = table.Table(
        "Router (shadowctl router) beside nginx and a direct connection, all in one run", "nginx, no mirror"
    )
    results = {(key, row.name): row.result for _, key, _, rows in sections for row in rows}

    def add(measure: str, load: str, name: str, what: str, ref: str | None, target: str = "", met=None, note=""):
        ours, base = results.get((load, name)), results.get((load, ref)) if ref else None
        if ours is None:
            return None
        label, unit = _UNITS[what]
        notes = [note] if note else []
        if ours.errors:
            notes.append(f"{ours.errors} errors ({ours.detail})")
            met = False if target else met
        return t.row(
            f"{measure}: {label}",
            getattr(ours, what),
            unit,
            ref=getattr(base, what) if base else None,
            ref_name=ref or "",
            target=target,
            met=met,
            note="; ".join(notes),
        )

    def added(load: str, name: str, what: str, limit: float, info: bool = False):
        ours, base = results.get((load, name)), results.get((load, "direct"))
        if ours is None or base is None:
            return None
        diff = getattr(ours, what) - getattr(base, what)
        target = f"added < {limit:g} ms" + (" (info)" if info else "")
        return add(
            name.removeprefix("router, "), load, name, what, "direct", target, diff < limit, f"added {diff:.2f} ms"
        )

    for title, key, _, _rows in sections:
        t.section(title)
        if key == "closed":
            add("no mirror", key, "router, no mirror", "rps", "nginx, no mirror", f"≥ {RPS_VS_NGINX_SAME_WORKERS}x")
            add("no mirror", key, "router, no mirror", "p50_ms", "nginx, no mirror")
            add("no mirror", key, "router, no mirror", "p99_ms", "nginx, no mirror")
            add("no mirror", key, "router, no mirror", "rps", "direct")
            for c in ROUTER_CANDIDATES:
                nginx = f"nginx mirror, {c} candidate" if c in NGINX_MIRROR_CANDIDATES else None
                target = f"≥ {RPS_VS_NGINX_MIRROR}x" if c == "fast" else ""
                add(f"{c} candidate, all mirrored", key, f"router, {c} candidate", "rps", nginx, target)
                add(f"{c} candidate, all mirrored", key, f"router, {c} candidate", "p99_ms", nginx)
                if c == "fast":
                    add("fast candidate, all mirrored", key, "router, fast candidate", "rps", "nginx, no mirror")
            t.section(f"{title}: a bad candidate beside the fast one (isolation)")
            for c in DEGRADED:
                name = f"router, {c} candidate"
                add(f"{c} candidate", key, name, "p99_ms", "router, fast candidate", f"≤ {P99_WITHIN}x")
                add(f"{c} candidate", key, name, "rps", "router, fast candidate", f"≥ {RPS_WITHIN}x")
            nfast = results.get((key, "nginx mirror, fast candidate"))
            for c in NGINX_MIRROR_CANDIDATES[1:]:
                res = results.get((key, f"nginx mirror, {c} candidate"))
                if nfast and res:
                    held = res.p99_ms / nfast.p99_ms <= P99_WITHIN and res.rps / nfast.rps >= RPS_WITHIN
                    t.note(
                        f"nginx mirror, {c} candidate (for contrast): p99 {res.p99_ms / nfast.p99_ms:.1f}x, "
                        f"req/s {res.rps / nfast.rps:.3f}x of its fast-candidate row, p50 {res.p50_ms:.1f} ms: "
                        f"{'holds' if held else 'does not hold'}"
                    )
        elif key == "one":
            added(key, "router, no mirror", "p50_ms", ADDED_P50_ONE_CONN_MS)
            add("no mirror", key, "router, no mirror", "p99_ms", "direct")
            add("no mirror", key, "router, no mirror", "rps", "direct")
            add("no mirror", key, "router, no mirror", "p50_ms", "nginx, no mirror")
        elif key in ("open", "hey"):
            for name in ("router, fast candidate", "router, 200 ms candidate"):
                added(key, name, "p50_ms", ADDED_P50_OPEN_MS, info=key == "hey")
                added(key, name, "p99_ms", ADDED_P99_OPEN_MS, info=key == "hey")
                add(name.removeprefix("router, "), key, name, "p50_ms", "nginx, no mirror")
        elif key == "scaling":
            for n in SCALING_WORKERS:
                for mirrored, ref, target in (
                    ("no mirror", f"x{n} nginx, no mirror", RPS_VS_NGINX_SAME_WORKERS),
                    ("fast candidate", f"x{n} nginx mirror, fast candidate", RPS_VS_NGINX_MIRROR),
                ):
                    name = f"x{n} router, {mirrored}"
                    add(f"x{n} {mirrored}", key, name, "rps", ref, f"≥ {target}x")
                    add(f"x{n} {mirrored}", key, name, "p99_ms", ref)
    for line in mirror_lines(sections):
        t.note(line)
    return t


# ---- soak -------------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _sample_once(pid: int) -> tuple[float, int]:
    rss_kib, fds = 0, 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kib += int(line.split()[1])
            fds += len(os.listdir(f"/proc/{p}/fd"))
    return rss_kib / 1024.0, fds


def sample(pid: int, reads: int = 5) -> tuple[float, int]:
    """RSS (MiB) and open fds of the process and its children: the median of `reads` reads 0.1 s apart
    (the fd count moves with the connections in flight)."""
    taken = []
    for i in range(reads):
        if i:
            time.sleep(0.1)
        taken.append(_sample_once(pid))
    rss = sorted(t[0] for t in taken)[reads // 2]
    fds = sorted(t[1] for t in taken)[reads // 2]
    return rss, fds


def soak(bench: Bench, seconds: float, candidate: str) -> int:
    print(
        f"soak: router with the {candidate} candidate, wrk -c{bench.args.connections} for {seconds:g}s, sampling every {SOAK_INTERVAL:g}s"
    )
    with bench.router(candidate) as (url, proc, _admin, workdir):
        wrk_argv = [
            "wrk",
            "-t1",
            f"-c{bench.args.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(bench.script),
            url,
        ]
        with open(bench.load_log, "a") as log:
            wrk = subprocess.Popen(wrk_argv, stdout=subprocess.PIPE, stderr=log, text=True)
        samples = []
        try:
            start = time.monotonic()
            next_at = start + SOAK_INTERVAL
            while wrk.poll() is None:
                time.sleep(max(0.0, min(1.0, next_at - time.monotonic())))
                if time.monotonic() >= next_at and wrk.poll() is None and time.monotonic() - start < seconds - 2:
                    proc.check_alive()
                    rss, fds = sample(proc.pid)
                    samples.append((time.monotonic() - start, rss, fds))
                    print(f"  t={samples[-1][0]:6.0f}s  rss {rss:8.1f} MiB  fds {fds:5d}", flush=True)
                    next_at += SOAK_INTERVAL
            out = wrk.communicate(timeout=30)[0]
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        match = re.search(r"^BENCH (\{.*\})$", out or "", re.M)
        if match:
            data = json.loads(match.group(1))
            print(
                f"  load: {data['requests'] / (data['duration_us'] / 1e6):.0f} req/s, p50 {data['p50_us'] / 1000:.2f} ms, "
                f"p99 {data['p99_us'] / 1000:.2f} ms, non-2xx {data['status']}, "
                f"socket errors {data['connect'] + data['read'] + data['write'] + data['timeout']}"
            )
        size = sum(f.stat().st_size for f in (workdir / "records").rglob("*") if f.is_file())
        print(f"  pair records written: {size / 2**20:.1f} MiB")
    if len(samples) < 2:
        print("soak: fewer than 2 samples (run it for at least 25 s)")
        return 1
    # Upstream pools open a connection per concurrent request in a burst and close them once idle for
    # 30 s, so the fd count follows the load up and down; a leak raises its floor. Judged after the
    # first third of the run (warm-up): RSS at the end against then, the fds' floor in the last third
    # against their floor in the middle third.
    third = seconds / 3
    middle = [s for s in samples if third <= s[0] < 2 * third] or samples
    last = [s for s in samples if s[0] >= 2 * third] or samples[-1:]
    (t0, rss0, _), (t1, rss1, _) = middle[0], samples[-1]
    floor0, floor1 = min(s[2] for s in middle), min(s[2] for s in last)
    print(
        f"  rss    t={samples[0][0]:.0f}s {samples[0][1]:.1f} MiB (warming up), t={t0:.0f}s {rss0:.1f}, t={t1:.0f}s {rss1:.1f}"
    )
    print(f"  fds    lowest {floor0} in the middle third, {floor1} in the last; highest {max(s[2] for s in samples)}")
    rss_ok = rss1 <= rss0 * (1 + SOAK_FLAT)
    fd_ok = floor1 <= floor0 * (1 + SOAK_FLAT)
    print(
        f"  rss flat (last within {SOAK_FLAT:.0%} of t={t0:.0f}s): {'met' if rss_ok else 'NOT MET'} ({rss1 / rss0:.2f}x)"
    )
    print(
        f"  fds flat (lowest in the last third within {SOAK_FLAT:.0%} of the middle third's): "
        f"{'met' if fd_ok else 'NOT MET'} ({floor1 / max(floor0, 1):.2f}x)"
    )
    return 0 if rss_ok and fd_ok else 1


# ---- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.router",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per row (default 10)")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="wrk connections for the closed-loop rows")
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="run only the soak, for SECONDS")
    parser.add_argument(
        "--soak-candidate", choices=sorted(CANDIDATES), default="resetting", help="the soak's candidate behaviour"
    )
    parser.add_argument(
        "--only", default="", help="only rows whose name contains this (plus direct and nginx, no mirror)"
    )
    parser.add_argument("--no-router", action="store_true", help="skip the router rows")
    parser.add_argument(
        "--scaling", action="store_true", help="only the scaling rows: --workers 1 and 2 beside nginx with as many"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, records)")
    table.add_arguments(parser)
    args = parser.parse_args(argv)

    missing = [tool for tool in ("nginx", "wrk", "hey") if not shutil.which(tool)]
    if missing:
        print(f"missing tools: {', '.join(missing)} (make bench-deps installs them)", file=sys.stderr)
        return 2
    with_router, why = (False, "--no-router") if args.no_router else router_available(shadowctl_path())
    if args.soak and not with_router:
        print(f"router: not available ({why}); the soak needs it", file=sys.stderr)
        return 2

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="bench-router-"))
    procs = Procs()
    bench = Bench(args, workdir, procs)
    try:
        if args.soak:
            bench.start_upstreams((args.soak_candidate,))
            return soak(bench, args.soak, args.soak_candidate)

        sections = build_rows(args, with_router)
        needed = {row.candidate for _, _, _, rows in sections for row in rows if row.candidate and not row.note}
        needed.add("fast")  # the router's candidate URL when it does not mirror
        bench.start_upstreams(tuple(c for c in CANDIDATES if c in needed))
        setup = (
            f"POST {PATH} ({len(BODY)} B JSON), keep-alive; primary: nginx return 200, 1 worker; "
            f"router: --candidate-timeout {CANDIDATE_TIMEOUT} --max-in-flight {MAX_IN_FLIGHT}"
        )
        print(setup, file=sys.stderr, flush=True)
        if not with_router:
            print(f"router: not available ({why})", flush=True)
        for _title, load, seconds, rows in sections:
            for row in rows:
                if row.note:
                    continue
                print(f"  measuring {load:<6} {row.name} ...", file=sys.stderr, flush=True)
                try:
                    bench.measure(row, load, seconds)
                except BenchError as e:
                    row.note = "failed"
                    print(f"  {row.name}: {e}", file=sys.stderr, flush=True)
                if row.result and row.result.detail:
                    print(f"    {row.name}: {row.result.detail}", file=sys.stderr, flush=True)
        t = report(sections)
        t.notes.insert(0, setup)
        t.print()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
