"""`shadowctl router --workers 2` over real sockets (loopback, no cluster): the port shared by two
worker processes (SO_REUSEPORT), one /metrics view summed by the parent, one record file per
worker, a killed worker started again, SIGTERM draining both (router/workers.py)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shadow_operator.contract import metric_names as m

from .test_router import _read_request, start, upstreams  # noqa: F401  (fixtures: router processes, upstreams)

pytestmark = pytest.mark.timeout(90)

WORKERS = ("--workers", "2")


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def _wait(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _send(router, ids: list[str]) -> list[int]:
    """One request per id, each on a connection of its own (so the kernel spreads them), 16 at a time."""

    def one(request_id: str) -> int:
        try:
            return router.post({"x": 1}, request_id=request_id)[0]
        except (OSError, http.client.HTTPException):  # refused once the listeners are closed (drain)
            return 0

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, ids))


def _slots(router) -> Counter:
    """Records per worker slot, from the file names (records-<host>-w<slot>-<pid>-...)."""
    counts: Counter = Counter()
    for path in router.records.glob("records-*.jsonl"):
        slot = path.name.split("-w", 1)[1].split("-", 1)[0] if "-w" in path.name else "?"
        counts[slot] += sum(1 for _ in path.open())
    return counts


def _totals(router, role: str) -> tuple[float, float, float]:
    labels = {"role": role, "segment": m.ALL_SEGMENTS}
    return (
        router.metric(m.REQUESTS_TOTAL, outcome="ok", **labels),
        router.metric(f"{m.REQUEST_DURATION}_count", **labels),
        router.metric(f"{m.REQUEST_DURATION}_bucket", le="+Inf", **labels),
    )


def test_two_workers_share_the_port_and_the_metrics_add_up_exactly(start):  # noqa: F811
    router = start(*WORKERS, "--mirror-percent", "100", name="spread")
    assert len(_children(router.process.pid)) == 2
    ids = [f"req-{i}" for i in range(200)]
    assert _send(router, ids) == [200] * len(ids)

    # Every request counted once: not lost, not twice (each value lives in one worker only).
    assert _wait(lambda: router.metric("shadow_records_written_total") >= len(ids))
    for role in ("primary", "candidate"):
        assert _totals(router, role) == (len(ids),) * 3, role
    assert router.metric(m.MIRROR_TOTAL, result="sampled") == len(ids)
    assert router.metric("shadow_records_written_total") == len(ids)
    assert router.metric("shadow_router_workers") == 2
    assert router.metric("shadow_mirror_in_flight") == 0
    # Both workers answered a share of the connections: a record file each, together all of them.
    slots = _slots(router)
    assert set(slots) == {"0", "1"} and all(n > 0 for n in slots.values()), slots
    assert sum(slots.values()) == len(ids)
    # The view is stable: a second scrape of the idle router says the same.
    assert _totals(router, "primary") == (len(ids),) * 3

    records = router.stop()
    assert sorted(r["id"] for r in records) == sorted(ids)
    assert all(r["primary"]["outcome"] == "ok" and r["candidate"]["outcome"] == "ok" for r in records)


def test_a_killed_worker_is_started_again_and_no_count_goes_back(start):  # noqa: F811
    router = start(*WORKERS, "--mirror-percent", "100", name="kill")
    first = [f"before-{i}" for i in range(60)]
    assert _send(router, first) == [200] * len(first)
    assert _wait(lambda: router.metric("shadow_records_written_total") == len(first))
    assert _totals(router, "primary") == (len(first),) * 3  # this scrape is what the parent keeps of it

    workers = _children(router.process.pid)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    assert _wait(lambda: len(_children(router.process.pid) - {victim}) == 2), "the worker was not started again"
    assert _wait(lambda: router.metric("shadow_router_workers") == 2)
    assert sum(router.metric("shadow_router_worker_restarts_total", worker=str(i)) for i in (0, 1)) == 1
    # What the dead worker counted stays in the totals: no counter goes back (no reset seen by Prometheus).
    assert _totals(router, "primary") == (len(first),) * 3

    second = [f"after-{i}" for i in range(60)]
    assert _send(router, second) == [200] * len(second)
    total = len(first) + len(second)
    assert _wait(lambda: _totals(router, "primary")[0] == total)
    assert _wait(lambda: _totals(router, "candidate")[0] == total)
    assert _totals(router, "primary") == (total,) * 3
    assert router.metric(m.MIRROR_TOTAL, result="sampled") == total

    records = router.stop()
    assert sorted(r["id"] for r in records) == sorted(first + second)


def test_sigterm_drains_every_worker(start, upstreams):  # noqa: F811
    """SIGTERM to the parent while requests are in flight in both workers: each is answered, its
    pair written; the parent exits 0 after its workers."""
    received = []

    async def slow_primary(reader, writer):
        while True:
            await _read_request(reader)
            received.append(1)
            await asyncio.sleep(1.0)
            body = b'{"prediction": 1}'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    upstreams.serve("slow-primary", slow_primary)
    router = start(*WORKERS, "--mirror-percent", "100", "--primary", upstreams.url("slow-primary"), name="drain")
    workers = _children(router.process.pid)
    assert len(workers) == 2
    ids = [f"drain-{i}" for i in range(24)]
    statuses: list[int] = []
    sender = threading.Thread(target=lambda: statuses.extend(_send(router, ids)))
    sender.start()
    assert _wait(lambda: len(received) >= 16)  # the pool's 16 requests are at the primary
    router.process.send_signal(signal.SIGTERM)
    sender.join(60)
    # Some of the last 8 may have been refused (the listeners close at once); none that was in flight.
    answered = [s for s in statuses if s == 200]
    assert len(answered) >= 16

    records = router.stop()
    assert not any(_children(router.process.pid)) and not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert len(records) == len(answered) and len({r["id"] for r in records}) == len(records)
    assert {r["candidate"]["outcome"] for r in records} == {"ok"}
    slots = _slots(router)
    assert set(slots) == {"0", "1"}, slots  # both workers had requests in flight, both drained


def test_one_worker_is_the_single_process_router(start):  # noqa: F811
    router = start("--workers", "1", name="one")
    assert _children(router.process.pid) == set()
    assert router.post({"x": 1}, request_id="solo")[0] == 200
    assert router.wait_metric(m.REQUESTS_TOTAL, 1, role="primary", segment=m.ALL_SEGMENTS, outcome="ok") == 1
    assert router.metric("shadow_router_workers") == 0  # no parent: the metric does not exist
    assert [r["id"] for r in router.stop()] == ["solo"]
    assert all("-w" not in p.name.split("-", 2)[2] for p in router.records.glob("*.jsonl"))


def test_worker_count_must_be_positive(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "shadow_operator.cli", "router", "--primary", "http://127.0.0.1:1",
         "--candidate", "http://127.0.0.1:2", "--workers", "0", "--records", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 3 and "--workers" in out.stderr


def test_a_keep_alive_connection_stays_on_its_worker(start):  # noqa: F811
    """Keep-alive connections stay on the worker that accepted them: many requests on one connection."""
    router = start(*WORKERS, "--mirror-percent", "100", name="keepalive")
    conn = router.connection()
    for i in range(20):
        conn.request("POST", "/predict", body=json.dumps({"x": i}), headers={"content-type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["prediction"] == i
    conn.close()
    assert router.wait_metric(m.REQUESTS_TOTAL, 20, role="primary", segment=m.ALL_SEGMENTS, outcome="ok") == 20
    router.stop()
    assert sum(_slots(router).values()) == 20
