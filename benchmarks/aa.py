"""`make bench-aa`: an A/A run through the real router, with and without CPU contention.

The primary and the candidate are the same model server (this module's `serve`, two processes
of the same code), so every latency ratio the comparison job reports should be 1.0 within its
interval; anything else is the router's measurement bias (docs/verdict.md, "How latency is
measured"). One run:

  - two model servers (`python -m benchmarks.aa serve`) and `shadowctl router` in front of them,
    mirroring 100%, all on 127.0.0.1;
  - optionally a CPU hog: one process spinning on one core, stopping by itself after the run's
    duration (and killed when the run ends);
  - `--requests` requests from `--concurrency` keep-alive client connections;
  - the router stopped (its records flushed), then the job's own pipeline on the records:
    job.dataset.load -> job.stats.compute_slices -> job.checks.latency_ratio_check
    at p50, p95 and p99 on every slice of the whole period.

    python -m benchmarks.aa [--requests 4000] [--concurrency 4] [--runs 3]

Prints one table (benchmarks/table.py): the p50/p95/p99 rows of all traffic and the p50 row of each
segment, the candidate's latency beside the primary's (the reference) and their ratio, for one model
server playing both roles and for two, each quiet and with a busy core. With one server a row meets
its target when the ratio's interval contains 1.0 and the latency check does not fail; the rows of
two servers have no target (the second process can be scheduled later on a small machine: the
model's latency there, measured correctly, not the router's bias; docs/verdict.md). AA_OPERATOR=<dir> measures the
router of another checkout's operator/ directory (e.g. before a change).

tests/integration/test_router_aa.py runs the same thing under contention and asserts the
intervals contain 1.0 and no latency check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port

from . import table

REPO = Path(__file__).resolve().parents[1]
SHADOW = "shop/aa"
CONFIG = {
    "name": "aa",
    "namespace": "shop",
    "traffic": {"router": "builtin", "mirrorPercent": 100, "candidateTimeout": "2s", "maxInFlight": 256},
    "recording": {
        "predictionPath": "$.prediction",
        "segments": [{"name": "history", "path": "$.features.purchase_count", "bounds": [1, 20]}],
        "features": ["$.features.purchase_count"],
    },
}
SEGMENTS = ["history"]
FEATURES = ["$.features.purchase_count"]
# What the check is run against: the limits a realistic spec uses, and the job's default confidence.
LIMITS = {"p50": 1.2, "p95": 1.3, "p99": 1.5}
CONFIDENCE = 0.95
MIN_SAMPLES = 100


# --- the model server (both roles) ------------------------------------------------------------


def predict(request: dict) -> dict:
    """A small, deterministic model: some arithmetic over the features (tens of microseconds)."""
    features = request.get("features") or {}
    count = float(features.get("purchase_count") or 0)
    score = 0.0
    for i in range(200):
        score = (score * 0.97 + count * (i % 7) + 1.0) % 1000.0
    return {"prediction": int(count) % 3, "score": round(score, 6)}


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            try:
                payload = json.dumps(predict(json.loads(body) if body else {})).encode()
                status = b"200 OK"
            except Exception as error:  # a model bug is an answer, not a dropped connection
                payload, status = json.dumps({"error": repr(error)}).encode(), b"500 Internal Server Error"
            writer.write(
                b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (status, len(payload), payload)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _serve(port: int) -> None:
    server = await asyncio.start_server(_serve_connection, "127.0.0.1", port, backlog=1024)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


# --- processes --------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    # AA_OPERATOR: another checkout's operator/ directory, to measure its router (e.g. before a change)
    operator = os.environ.get("AA_OPERATOR") or str(REPO / "operator")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([operator, str(REPO)])}


def start_model() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.aa", "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True, cwd=REPO,
    )  # fmt: skip
    line = process.stdout.readline()
    if not line.startswith("listening"):
        process.kill()
        raise RuntimeError(f"model server did not start: {line!r} {process.stderr.read()}")
    return process, int(line.split()[1])


def start_router(primary: int, candidate: int, workdir: Path) -> tuple[subprocess.Popen, int]:
    port, admin = free_port(), free_port()
    config = workdir / "router.json"
    config.write_text(json.dumps(CONFIG))
    process = subprocess.Popen(
        [sys.executable, "-m", "shadow_operator.cli", "router", "--config", str(config),
         "--primary", f"http://127.0.0.1:{primary}", "--candidate", f"http://127.0.0.1:{candidate}",
         "--records", str(workdir / "records"), "--listen", f"127.0.0.1:{port}",
         "--admin-listen", f"127.0.0.1:{admin}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True, cwd=REPO,
    )  # fmt: skip
    line = process.stdout.readline()
    if not line.startswith("listening"):
        process.kill()
        raise RuntimeError(f"router did not start: {line!r} {process.stderr.read()}")
    return process, port


def start_hog(seconds: float) -> subprocess.Popen:
    """One process keeping one core busy; it stops by itself after `seconds`."""
    code = f"import time\nend = time.monotonic() + {seconds!r}\nwhile time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def stop(process: subprocess.Popen, timeout: float = 15) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return process.returncode


# --- load -------------------------------------------------------------------------------------


def _body(i: int) -> bytes:
    return json.dumps({"features": {"purchase_count": i % 40}, "user": {"id": i}}).encode()


async def _client(port: int, ids: list[int], deadline: float, answered: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in ids:
            if time.monotonic() > deadline:
                return
            body = _body(i)
            writer.write(
                b"POST /predict HTTP/1.1\r\nhost: model\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            answered.append(int(head.split(b" ", 2)[1]))
    finally:
        writer.close()


def send(port: int, requests: int, concurrency: int, timeout: float) -> list[int]:
    """`requests` POSTs over `concurrency` keep-alive connections, within `timeout` seconds: the statuses."""
    answered: list[int] = []

    async def main() -> None:
        deadline = time.monotonic() + timeout
        shares = [list(range(k, requests, concurrency)) for k in range(concurrency)]
        await asyncio.wait_for(
            asyncio.gather(*(_client(port, share, deadline, answered) for share in shares)), timeout + 5
        )

    asyncio.run(main())
    return answered


# --- analysis ---------------------------------------------------------------------------------


@dataclass
class Ratio:
    slice: str
    percentile: str
    primary_ms: float | None
    candidate_ms: float | None
    ratio: float | None
    low: float | None
    high: float | None
    passed: bool | None
    message: str

    def contains_one(self) -> bool:
        return self.low is not None and self.high is not None and self.low <= 1.0 <= self.high


def latency_ratios(records: Path) -> tuple[int, list[Ratio]]:
    """The job's pipeline on the records: the pair count and every whole-period slice's latency checks."""
    from shadow_operator.job import checks, stats
    from shadow_operator.job import dataset as datasets
    from shadow_operator.job.intervals import ratio_interval

    out: list[Ratio] = []
    with datasets.load([records], SHADOW) as loaded:
        slices = stats.compute_slices(loaded, SEGMENTS, FEATURES, regression=False)
        pairs = loaded.pairs
    for item in slices:
        if item.hour is not None:
            continue
        for percentile, limit in LIMITS.items():
            check = checks.latency_ratio_check(item, percentile, limit, MIN_SAMPLES, CONFIDENCE)
            level = 1 - (1 - CONFIDENCE) / 2
            bounds = [checks._latency_bounds(side, percentile, level) for side in (item.candidate, item.primary)]
            low = high = None
            if None not in bounds:
                (_, c_low, c_high), (_, p_low, p_high) = bounds
                low, high = ratio_interval(c_low, c_high, p_low, p_high)
            ratio = check.candidate / check.primary if check.candidate and check.primary else None
            out.append(
                Ratio(item.segment, percentile, check.primary, check.candidate, ratio, low, high,
                      check.passed, check.message)
            )  # fmt: skip
    return pairs, out


@dataclass
class RunResult:
    pairs: int
    answered: int
    seconds: float
    ratios: list[Ratio]


def run_aa(
    workdir: Path, requests: int, concurrency: int, contention: bool, shared: bool = False, timeout: float = 60
) -> RunResult:
    """One A/A run (see the module's docstring); every process it starts is stopped before it returns.

    `shared`: one model server plays both roles (the router's two pools connect to the same port),
    so a model process descheduled by the hog delays both answers alike; else two servers.
    """
    processes: list[subprocess.Popen] = []
    hog = None
    try:
        primary, primary_port = start_model()
        processes.append(primary)
        candidate_port = primary_port
        if not shared:
            candidate, candidate_port = start_model()
            processes.append(candidate)
        router, router_port = start_router(primary_port, candidate_port, workdir)
        processes.insert(0, router)
        send(router_port, 200, concurrency, timeout)  # warm-up: pools, caches; left out below
        time.sleep(0.2)
        if contention:
            hog = start_hog(timeout + 5)
            time.sleep(0.2)
        began = time.monotonic()
        statuses = send(router_port, requests, concurrency, timeout)
        seconds = time.monotonic() - began
        if hog is not None:
            hog.kill()
            hog.wait()
        time.sleep(0.3)  # the last copies answered
        code = stop(router)
        if code != 0:
            raise RuntimeError(f"router exited {code}")
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
            hog.wait()
        for process in processes:
            stop(process, timeout=5)
    # the warm-up's records are in the same files: leave out the first 200 lines
    records = workdir / "records"
    lines = [line for f in sorted(records.glob("records-*.jsonl")) for line in f.read_text().splitlines()]
    judged = workdir / "judged"
    judged.mkdir()
    ordered = sorted(lines, key=lambda line: json.loads(line).get("ts", 0))
    (judged / "records-0.jsonl").write_text("".join(line + "\n" for line in ordered[200:]))
    pairs, ratios = latency_ratios(judged)
    return RunResult(pairs=pairs, answered=len(statuses), seconds=seconds, ratios=ratios)


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}" if unit else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aa")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run one model server (both roles use it)")
    serve.add_argument("--port", type=int, default=0)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    table.add_arguments(parser)
    args = parser.parse_args()
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.port))
        return
    t = table.Table(
        f"A/A through the router: {args.requests} requests x {args.concurrency} connections, "
        f"candidate = primary, 95% intervals",
        reference="primary",
    )
    for shared, contention in ((True, False), (True, True), (False, False), (False, True)):
        t.section(
            f"{'one model server in both roles' if shared else 'two model servers'}, "
            f"{'one core kept busy' if contention else 'quiet'}"
        )
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-aa-") as tmp:
                result = run_aa(Path(tmp), args.requests, args.concurrency, contention, shared=shared)
            for r in result.ratios:
                if r.slice != "all" and r.percentile != "p50":
                    continue
                verdict = {True: "pass", False: "FAIL", None: "inconclusive"}[r.passed]
                t.row(
                    f"run {run + 1}, {r.slice} {r.percentile}: candidate latency",
                    r.candidate_ms,
                    "ms",
                    ref=r.primary_ms,
                    digits=3,
                    # The A/A target is the shared server's: with two model processes the one off the client's
                    # critical path may be scheduled later, which is the model's latency, not the router's bias.
                    target="interval ∋ 1" if shared else "",
                    met=r.contains_one() and r.passed is not False if shared and r.ratio is not None else None,
                    note=f"interval {_fmt(r.low)}-{_fmt(r.high)}, check {verdict}",
                )
    t.print()


if __name__ == "__main__":
    main()
