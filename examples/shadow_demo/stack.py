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

    def start(self, name: str, argv: list[str], timeout: float = 30) -> list[str]:
        """Start and wait for its `listening <port> ...` line (the only thing it prints); that line's words."""
        log = self.workdir / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": f"{EXAMPLES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        with log.open("w") as stderr:  # the child keeps its own copy of the file
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, bufsize=1)
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


SCRAPE_JOB = "shadow-router"


class Prometheus:
    """Debian's Prometheus on a free loopback port with its own config and storage, scraping
    `targets` every second (a system-wide Prometheus on 9090 is never involved)."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        binary: str = PROMETHEUS,
        scrape_configs: list[dict] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """`scrape_configs` replaces the static job over `targets` (e.g. kubernetes_sd_configs on a real node);
        `host` is the one address it listens on."""
        self.binary, self.workdir, self.port, self.host = binary, workdir, free_port(), host
        self.log = workdir / "prometheus.log"
        self.process: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "prometheus.yml"
        jobs = scrape_configs or [{"job_name": SCRAPE_JOB, "static_configs": [{"targets": list(targets)}]}]
        self.config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": jobs,
                }
            )
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        argv = [
            self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise StartError(f"prometheus did not become ready on {self.url}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process, 10)


def start_prometheus(stack: Stack, targets: list[str]) -> str:
    """A Prometheus the stack stops with everything else; its URL once it is ready."""
    prometheus = Prometheus(stack.workdir / "prometheus", targets)
    prometheus.start()
    stack.processes.append(("prometheus", prometheus.process))
    prometheus.wait_ready()
    return prometheus.url


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
