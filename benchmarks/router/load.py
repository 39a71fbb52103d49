"""Load generators for `make bench-router`: wrk (closed loop), hey and an evenly paced asyncio client (open loop).

Every one sends POST /predict with the same small JSON body over keep-alive connections and
returns a Result: throughput, the client's p50/p99, errors, and the CPU seconds the load
generator itself used (getrusage of the reaped wrk or hey; of this process for the paced client),
so a row can tell whether the client or the server under test was the bottleneck.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import BenchError

HOST = "127.0.0.1"
PATH = "/predict"
BODY = '{"features": {"purchase_count": 3, "last_seen_days": 12}}'

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


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx responses plus socket errors and timeouts
    detail: str = ""
    cpu_s: float | None = None  # user + system CPU seconds of the load generator


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], seconds: float, log: Path | None) -> tuple[subprocess.CompletedProcess, float]:
    """Run a load generator to its end; its output (appended to `log`) and the CPU seconds it used."""
    cpu = _children_cpu()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cpu = _children_cpu() - cpu
    if log is not None:
        with open(log, "a") as f:
            f.write(" ".join(argv) + "\n" + out.stdout + out.stderr + "\n")
    return out, cpu


def wrk_argv(url: str, connections: int, seconds: float, script: Path, latency: bool = True) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        *(["--latency"] if latency else []),
        "-s",
        str(script),
        url,
    ]


def wrk_summary(stdout: str) -> dict | None:
    """The BENCH line WRK_SCRIPT prints at the end (requests, duration_us, p50_us, p99_us, errors by kind)."""
    match = re.search(r"^BENCH (\{.*\})$", stdout or "", re.M)
    return json.loads(match.group(1)) if match else None


def socket_errors(data: dict) -> int:
    return data["connect"] + data["read"] + data["write"] + data["timeout"]


def run_wrk(url: str, connections: int, seconds: float, script: Path, log: Path | None = None) -> Result:
    out, cpu = _run(wrk_argv(url, connections, seconds, script), seconds, log)
    data = wrk_summary(out.stdout)
    if out.returncode != 0 or data is None:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    detail = []
    if data["status"]:
        detail.append(f"non-2xx {data['status']}")
    if socket_errors(data):
        detail.append(
            f"socket errors connect {data['connect']} read {data['read']} write {data['write']} timeout {data['timeout']}"
        )
    return Result(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000.0,
        p99_ms=data["p99_us"] / 1000.0,
        requests=data["requests"],
        errors=data["status"] + socket_errors(data),
        detail=", ".join(detail),
        cpu_s=cpu,
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
    out, cpu = _run(argv, seconds, log)
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%+ in ([\d.]+) secs", text, re.M)
    p99 = re.search(r"^\s+99%+ in ([\d.]+) secs", text, re.M)
    if out.returncode != 0 or not (rps and p50 and p99):
        raise BenchError(f"hey failed ({out.returncode}): {out.stdout}{out.stderr}")
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    error_block = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", error_block, re.M))
    ok = sum(n for code, n in statuses.items() if 200 <= code < 300)
    bad = sum(statuses.values()) - ok
    detail = []
    if bad:
        detail.append(f"non-2xx {bad}")
    if errors:
        detail.append(f"errors {errors}")
    return Result(
        rps=float(rps.group(1)),
        p50_ms=float(p50.group(1)) * 1000.0,
        p99_ms=float(p99.group(1)) * 1000.0,
        requests=sum(statuses.values()) + errors,
        errors=bad + errors,
        detail=", ".join(detail),
        cpu_s=cpu,
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
    cpu = time.process_time()
    try:
        import uvloop  # type: ignore[import-not-found]

        result = uvloop.run(_paced(host, int(port), rate, seconds))
    except ImportError:
        result = asyncio.run(_paced(host, int(port), rate, seconds))
    result.cpu_s = time.process_time() - cpu
    return result
