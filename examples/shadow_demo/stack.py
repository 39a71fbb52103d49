"""The demo's processes on loopback: models, the builtin router, Prometheus; all stopped on exit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

EXAMPLES = Path(__file__).resolve().parent.parent
SHADOWCTL = str(Path(sys.executable).with_name("shadowctl"))
PROMETHEUS = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or "/usr/bin/prometheus"


class StartError(RuntimeError):
    """A process did not come up; the message points at its log."""


class Stack:
    """Starts processes that print `listening <port> ...` once ready; stops them all on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[tuple[str, subprocess.Popen]] = []
        workdir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> list[str]:
        """Start and wait for its `listening <port> ...` line; that line's words."""
        log = self.workdir / f"{name}.log"
        out: IO[str] = log.open("w")
        environment = {**os.environ, "PYTHONPATH": f"{EXAMPLES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=out, text=True, env={**environment, **(env or {})}, bufsize=1
        )
        self.processes.append((name, process))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("listening "):
                return line.split()
            if not line and process.poll() is not None:
                break
        raise StartError(f"{name} did not start (log: {log}):\n{log.read_text()[-1500:]}")

    def model(self, version: str) -> int:
        return int(self.start(f"model-{version}", [sys.executable, "-m", "shadow_demo.serve", "--version", version])[1])

    def router(self, config: dict, primary: int, candidate: int, records: Path, admin: int = 0) -> tuple[int, int]:
        """The builtin router from the router.json the operator mounts; (proxy port, admin port)."""
        path = self.workdir / "router.json"
        path.write_text(json.dumps(config))
        argv = [
            SHADOWCTL, "router", "--config", str(path),
            "--primary", f"http://127.0.0.1:{primary}", "--candidate", f"http://127.0.0.1:{candidate}",
            "--listen", "127.0.0.1:0", "--admin-listen", f"127.0.0.1:{admin}", "--records", str(records),
        ]  # fmt: skip
        words = self.start("router", argv)  # listening <port> admin <port>
        return int(words[1]), int(words[3])

    def stop(self, name: str, timeout: float = 15) -> None:
        for entry in list(self.processes):
            if entry[0] == name:
                _terminate(entry[1], timeout)
                self.processes.remove(entry)

    def stop_all(self) -> None:
        for _, process in reversed(self.processes):
            _terminate(process, 10)
        self.processes.clear()


def _terminate(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def prometheus_available() -> bool:
    return Path(PROMETHEUS).exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_prometheus(stack: Stack, targets: list[str]) -> str:
    """Debian's Prometheus scraping `targets` every second, with its own config and storage."""
    port = free_port()
    directory = stack.workdir / "prometheus"
    directory.mkdir(exist_ok=True)
    (directory / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: shadow-router\n    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
    )
    argv = [
        PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ]  # fmt: skip
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen(argv, stdout=log, stderr=log)
    stack.processes.append(("prometheus", process))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    return url
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    raise StartError(f"prometheus did not start (log: {directory / 'prometheus.log'})")


def scraped_up_to(url: str, after: float, timeout: float = 10) -> bool:
    """Wait until Prometheus holds a scrape of the router newer than `after` (unix time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/query?query=timestamp(up)", timeout=2) as answer:
                result = json.load(answer)["data"]["result"]
            if result and all(float(r["value"][1]) > after for r in result):
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.25)
    return False
