"""Records from every router replica reach the comparison job through the collector: real
`shadowctl collector`, `shadowctl router` (two replicas) and `shadowctl analyze --records-from`
processes on loopback, no cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from .test_router import REPO, Router, Upstreams, _candidate, _primary, free_port

pytestmark = pytest.mark.timeout(120)
ENV = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
SHADOW = {
    "apiVersion": "shadow.mlops.dev/v1alpha1",
    "kind": "ShadowDeployment",
    "metadata": {"name": "recommender", "namespace": "shop"},
    "spec": {
        "service": {"name": "recommender", "port": 80},
        "primary": {"image": "registry.example/recsys:1"},
        "candidate": {"image": "registry.example/recsys:2"},
        "traffic": {"router": "builtin"},
        "analysis": {"minSamples": 10, "thresholds": {"maxErrorRate": 0.01}},
    },
}


class Collector:
    def __init__(self, records: Path, port: int | None = None) -> None:
        self.port, self.admin_port = port or free_port(), free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shadow_operator.cli", "collector", "--records", str(records),
             "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline()
        assert line.startswith("listening"), self.process.stderr.read()
        self.url = f"http://127.0.0.1:{self.port}"

    def records(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/v1/records", timeout=10) as response:
            return [json.loads(line) for line in response.read().splitlines()]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(10) == 0
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture(scope="module")
def upstreams():
    ups = Upstreams()
    ups.serve("primary", _primary)
    ups.serve("candidate", _candidate)
    yield ups
    ups.loop.call_soon_threadsafe(ups.loop.stop)


def _router(upstreams: Upstreams, records: Path, collector: str) -> Router:
    return Router(
        ["--primary", upstreams.url("primary"), "--candidate", upstreams.url("candidate"), "--mirror-percent", "100",
         "--shadow", "shop/recommender", "--collector", collector, "--ship-interval", "0.2s"],
        records,
    )  # fmt: skip


def _wait(condition, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_every_record_of_every_router_reaches_the_collector_and_the_job(tmp_path, upstreams):
    collector = Collector(tmp_path / "collector")
    routers = [_router(upstreams, tmp_path / f"spool-{i}", collector.url) for i in range(2)]
    try:
        sent = []
        for i in range(200):
            router = routers[i % 2]
            request_id = f"req-{i}"
            body = {"x": i % 3, "mode": "500"} if i % 10 == 0 else {"x": i % 3}
            assert router.post(body, request_id=request_id)[0] == 200
            sent.append(request_id)
        # Shipped while the routers run: every record written so far reaches the collector.
        _wait(lambda: len(collector.records()) == 200)
        assert sorted(r["id"] for r in collector.records()) == sorted(sent)
        # The second router is deleted mid-run: its last records go out on SIGTERM, before it exits.
        for i in range(200, 230):
            assert routers[1].post({"x": 1}, request_id=f"req-{i}")[0] == 200
            sent.append(f"req-{i}")
        left_behind = routers[1].stop()  # SIGTERM: drain, write, final ship
        assert left_behind == []  # its spool is empty: everything was shipped and deleted
        assert sorted(r["id"] for r in collector.records()) == sorted(sent)
        files = json.loads(urllib.request.urlopen(f"{collector.url}/v1/files", timeout=5).read())["files"]
        assert len({f["source"] for f in files}) == 1  # one Pod name here; the file names tell the routers apart
        assert len({f["file"] for f in files}) >= 2

        # The comparison job, as the CronJob runs it, against the collector.
        shadow_file = tmp_path / "shadow.yaml"
        shadow_file.write_text(yaml.safe_dump(SHADOW))
        job = subprocess.run(
            [sys.executable, "-m", "shadow_operator.cli", "analyze", "--file", str(shadow_file),
             "--records-from", collector.url, "--format", "json"],
            capture_output=True, text=True, env=ENV, timeout=60,
        )  # fmt: skip
        assert job.returncode == 0, job.stderr
        report = json.loads(job.stdout)
        assert report["coverage"]["samples"] == 230
        # Every tenth request made the candidate fail: the job sees it in the records of both routers.
        assert (report["verdict"]["result"], report["verdict"]["reason"]) == ("Failed", "CandidateErrors")
    finally:
        for router in routers:
            if router.process.poll() is None:
                router.process.kill()
        collector.stop()


def test_an_unreachable_collector_is_insufficient_data_naming_the_url(tmp_path):
    shadow_file = tmp_path / "shadow.yaml"
    analysis = {"thresholds": {"maxErrorRate": 0.01}}  # the default minSamples: no threshold warning
    shadow_file.write_text(yaml.safe_dump({**SHADOW, "spec": {**SHADOW["spec"], "analysis": analysis}}))
    url = f"http://127.0.0.1:{free_port()}"
    job = subprocess.run(
        [sys.executable, "-m", "shadow_operator.cli", "analyze", "--file", str(shadow_file), "--records-from", url,
         "--format", "json"],
        capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr
    report = json.loads(job.stdout)
    assert report["verdict"]["result"] == "Inconclusive"
    assert report["verdict"]["reason"] == "InsufficientData"
    assert f"cannot read records from {url}/v1/records" in report["verdict"]["message"]
    assert report["problems"][0]["code"] == "RecordsUnavailable"
