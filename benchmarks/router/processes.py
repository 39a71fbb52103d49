"""Process management for `make bench-router`: starting and stopping its processes and finding their children.

Every process runs in its own session, so stopping one stops its children too (nginx's workers,
the router's worker processes); `tree` finds those children in /proc for the CPU and RSS readings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


class BenchError(RuntimeError):
    pass


def terminate(signum, frame):
    """SIGTERM/SIGHUP handler: unwind like Ctrl-C, so every started process is stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


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


def wait_port(host: str, port: int, proc: Proc, timeout: float = 15.0) -> None:
    """Until something listens on host:port, or raise (with the log's tail) when `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise BenchError(f"{proc.name}: nothing listens on {host}:{port} after {timeout:.0f}s\n{proc.log_tail()}")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def proc_stats() -> dict[int, list[str]]:
    """Every process's /proc/PID/stat fields after the command name (state, ppid, ..., utime at [11]), by pid."""
    out: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                out[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
    return out


def tree(pid: int, stats: dict[int, list[str]] | None = None) -> list[int]:
    """`pid` and every process below it (children, their children, ...), from /proc (or `stats`, one proc_stats())."""
    children: dict[int, list[int]] = {}
    for child, fields in (proc_stats() if stats is None else stats).items():
        with contextlib.suppress(IndexError, ValueError):
            children.setdefault(int(fields[1]), []).append(child)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out
