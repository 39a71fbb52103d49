"""The data path's programs (`shadowctl router`, `shadowctl recorder`) as test subprocesses."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from shadow_operator.contract import metric_names as m

from .ports import free_port

REPO = Path(__file__).resolve().parents[2]


class Router:
    """`shadowctl router` (or, with command="recorder", the recorder sidecar) as a subprocess on
    loopback, exactly as its Pod runs it: started, asked, stopped with SIGTERM."""

    def __init__(self, args: list[str], records: Path, command: str = "router") -> None:
        self.port, self.admin_port, self.records = free_port(), free_port(), records
        env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shadow_operator.cli", command, *args, "--records", str(records),
             "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline()
        assert line.startswith("listening"), self.process.stderr.read()

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def post(self, body: object, path: str = "/predict", request_id: str | None = None, conn=None):
        own = conn is None
        conn = conn or self.connection()
        headers = {"content-type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers=headers)
        response = conn.getresponse()
        result = response.status, response.getheaders(), response.read()
        if own:
            conn.close()
        return result

    def metrics(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text

    def metric(self, name: str, **labels: str) -> float:
        """The series of `name` with exactly these labels, besides the constant `shadow` one."""
        for line in self.metrics().splitlines():
            series, _, value = line.rpartition(" ")
            found, _, label_text = series.partition("{")
            pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
            pairs.pop(m.SHADOW_LABEL, None)
            if found == name and pairs == labels:
                return float(value)
        return 0.0

    def wait_metric(self, name: str, value: float, timeout: float = 5, **labels: str) -> float:
        deadline = time.monotonic() + timeout
        while (current := self.metric(name, **labels)) != value and time.monotonic() < deadline:
            time.sleep(0.05)
        return current

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stop(self) -> list[dict]:
        """SIGTERM, exit 0, and every record written."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(15) == 0, self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return [json.loads(line) for f in sorted(self.records.glob("records-*.jsonl")) for line in f.open()]
