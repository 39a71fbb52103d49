"""Debian's Prometheus installed when missing, an exporter with exactly known counters, and
misbehaving endpoints. The private Prometheus itself is the demo's (`shadow_demo.stack.Prometheus`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PROMETHEUS = Path(os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus"))


def ensure_prometheus() -> Path:
    """Debian's prometheus binary, installed with apt-get when missing; RuntimeError saying why not."""
    if PROMETHEUS.exists():
        return PROMETHEUS
    prefix = ([] if os.geteuid() == 0 else ["sudo", "-n"]) + ["env", "DEBIAN_FRONTEND=noninteractive"]
    lock = ["-o", "DPkg::Lock::Timeout=300"]  # another apt-get may be running
    for command in (["apt-get", *lock, "update", "-qq"], ["apt-get", *lock, "install", "-y", "-qq", "prometheus"]):
        try:
            result = subprocess.run(prefix + command, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"cannot install prometheus ({' '.join(command)}): {error}") from error
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-1500:]
            raise RuntimeError(
                f"cannot install prometheus: `{' '.join(prefix + command)}` exited {result.returncode}:\n{output}\n"
                "Install it with `make test-deps` (or point PROMETHEUS_BIN at a prometheus binary)."
            )
    if not PROMETHEUS.exists():
        raise RuntimeError(f"apt-get installed prometheus but {PROMETHEUS} is still missing")
    return PROMETHEUS


# ---------------------------------------------------------------- small HTTP servers


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    @property
    def owner(self) -> Any:
        return self.server.owner  # type: ignore[attr-defined]

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server:
    """A ThreadingHTTPServer on a free loopback port, served from a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class Series:
    """One sample line `name{labels}` whose value grows by `per_second` from 0."""

    name: str
    labels: dict[str, str]
    per_second: float

    def line(self, seconds: float, timestamp_ms: int) -> str:
        labels = ",".join(f'{k}="{exposition_escape(v)}"' for k, v in self.labels.items())
        return f"{self.name}{{{labels}}} {self.per_second * seconds!r} {timestamp_ms}"


def exposition_escape(value: str) -> str:
    """A label value in the text exposition format (the same escapes as PromQL)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _ExporterHandler(_Handler):
    def do_GET(self):
        if self.path != "/metrics":
            self.reply(404, b"not found\n", "text/plain")
            return
        self.reply(200, self.owner.exposition().encode(), "text/plain; version=0.0.4")


class LinearExporter(_Server):
    """/metrics whose counters grow linearly at known rates, each sample stamped with its own time.

    The first scrape serves every series at 0 and fixes t0; each later scrape serves
    `per_second * (now - t0)` stamped `now` (an explicit timestamp, which Prometheus honours).
    All series share timestamps and start at zero, so any ratio of their rates (error rate,
    histogram quantile) is exact whatever the window. After `samples` distinct samples the
    exporter freezes and serves its last sample again (an identical duplicate, which
    Prometheus ignores): the first and last timestamps are then fixed and so is rate()'s
    extrapolation, which makes increase() exact too (see `expected_increase`).
    """

    def __init__(self, series: Sequence[Series], types: dict[str, str], samples: int = 5) -> None:
        super().__init__(_ExporterHandler)
        self.series = list(series)
        self.types = types  # metric family -> counter | histogram
        self.samples = samples
        self.timestamps: list[int] = []
        self._lock = threading.Lock()

    @property
    def frozen(self) -> bool:
        with self._lock:
            return len(self.timestamps) >= self.samples

    def exposition(self) -> str:
        with self._lock:
            now = int(time.time() * 1000)
            if len(self.timestamps) < self.samples and (not self.timestamps or now > self.timestamps[-1]):
                self.timestamps.append(now)
            timestamp = self.timestamps[-1]
            seconds = (timestamp - self.timestamps[0]) / 1000
        lines: list[str] = []
        for family, kind in self.types.items():
            members = [s for s in self.series if s.name == family or s.name.startswith(family + "_")]
            if members:
                lines.append(f"# TYPE {family} {kind}")
                lines += [s.line(seconds, timestamp) for s in members]
        return "\n".join(lines) + "\n"

    def expected_increase(self, per_second: float) -> float:
        """increase() over a window holding all samples, evaluated > 1.1 sample intervals after the last.

        Prometheus's extrapolatedRate: the series starts at 0, so nothing is added before the
        first sample; the end is far, so half an average sample interval is added after it.
        """
        with self._lock:
            first, last, count = self.timestamps[0], self.timestamps[-1], len(self.timestamps)
        sampled = (last - first) / 1000
        return per_second * (sampled + sampled / (count - 1) / 2)


class _CannedHandler(_Handler):
    def do_GET(self):
        owner = self.owner
        with owner.lock:
            owner.hits += 1
        self.reply(owner.status, owner.body, owner.content_type)


class CannedServer(_Server):
    """Answers every request with the same status and body; counts the requests."""

    def __init__(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        super().__init__(_CannedHandler)
        self.status, self.body, self.content_type = status, body, content_type
        self.hits = 0
        self.lock = threading.Lock()


class BlackHole:
    """A loopback port whose connects never complete: listening, backlog full, never accepting."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(3):  # Linux queues backlog + 1 connections, then drops SYNs
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self._fillers.append(filler)
        time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        for one in [*self._fillers, self._listener]:
            one.close()


class SilentServer:
    """Accepts connections and never answers (nor reads)."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()
        for one in self._held:
            one.close()
