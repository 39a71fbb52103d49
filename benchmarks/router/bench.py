"""Running `make bench-router`'s rows: the upstreams started once, a fresh nginx or router per row, the measurement.

`Bench` starts the primary and the candidates once, then for each row the front end under test
(a fresh nginx with its own prefix, or a fresh `shadowctl router` with its own records directory),
warms it up, runs the row's load generator for the measured seconds and keeps the Result, the
router's mirror counters over those seconds, and the CPU each process used (cpu.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support.ports import free_port

from benchmarks import upstreams

from . import cpu
from .load import HOST, PATH, WRK_SCRIPT, Result, run_hey, run_paced, run_wrk
from .processes import BenchError, Proc, Procs, http_get, wait_port
from .scenarios import CANDIDATE_TIMEOUT, CANDIDATES, MAX_IN_FLIGHT, OPEN_RATE, OPEN_WORKERS, Row


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
        self.primary: Proc | None = None
        self.candidate_procs: dict[str, Proc] = {}
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
        wait_port(HOST, self.primary_port, proc)
        self.primary = proc
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
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
            self.candidate_procs[name] = proc
        for port, proc in started:
            wait_port(HOST, port, proc)

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
            wait_port(HOST, port, proc)
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
            wait_port(HOST, port, proc, timeout=30)
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
        """Yields the URL to load, the router's admin port (None for direct and nginx) and the process in front
        of the primary (None for direct)."""
        if row.kind == "direct":
            yield f"http://{HOST}:{self.primary_port}{PATH}", None, None
        elif row.kind == "nginx":
            with self.nginx(row.candidate, row.workers) as (url, proc):
                yield url, None, proc
        else:
            with self.router(row.candidate, row.workers) as (url, proc, admin, _workdir):
                yield url, admin, proc

    # measuring

    def measure(self, row: Row, load: str, seconds: float) -> None:
        """Warm the row's front end up, then measure it: the load's Result, the mirror counters' change and the CPU
        every process used over the measured seconds (cpu.py)."""
        warmup = min(2.0, max(1.0, seconds / 5))
        connections = 1 if load == "one" else self.args.connections

        def run(duration: float, log: Path | None) -> Result:
            if load == "open":
                return run_paced(url, OPEN_RATE, duration)
            if load == "hey":
                return run_hey(url, OPEN_RATE, OPEN_WORKERS, duration, log)
            return run_wrk(url, connections, duration, self.script, log)

        with self.front(row) as (url, admin, proc):
            pids = {"primary": self.primary.pid} if self.primary else {}
            if proc is not None:
                pids["proxy"] = proc.pid
            if row.candidate in self.candidate_procs:
                pids["candidate"] = self.candidate_procs[row.candidate].pid
            run(warmup, None)
            before = mirror_results(admin)  # mirrors still in flight from the warm-up land in the row
            cpu_before = cpu.read(pids)
            row.result = run(seconds, self.load_log)
            cpu_after = cpu.read(pids)
            after = mirror_results(admin)
            row.extra["mirror"] = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}
            row.cpu = cpu.Usage.between(cpu_before, cpu_after, row.result.requests, row.result.cpu_s)
