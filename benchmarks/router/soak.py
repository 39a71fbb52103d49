"""The soak of `make bench-router` (`--soak N`): the router under load for N s, its RSS and open fds sampled every 10 s.

Instead of the table: wrk against the router with one candidate behaviour (resetting by default)
for the whole run, the router's RSS and fds (with its children) read every SOAK_INTERVAL seconds,
and whether both stayed flat (the last within SOAK_FLAT of the level after warm-up).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

from .bench import Bench
from .load import socket_errors, wrk_argv, wrk_summary
from .processes import tree

SOAK_INTERVAL = 10.0
SOAK_FLAT = 0.10


def _sample_once(pid: int) -> tuple[float, int]:
    rss_kib, fds = 0, 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kib += int(line.split()[1])
            fds += len(os.listdir(f"/proc/{p}/fd"))
    return rss_kib / 1024.0, fds


def sample(pid: int, reads: int = 5) -> tuple[float, int]:
    """RSS (MiB) and open fds of the process and its children: the median of `reads` reads 0.1 s apart
    (the fd count moves with the connections in flight)."""
    taken = []
    for i in range(reads):
        if i:
            time.sleep(0.1)
        taken.append(_sample_once(pid))
    rss = sorted(t[0] for t in taken)[reads // 2]
    fds = sorted(t[1] for t in taken)[reads // 2]
    return rss, fds


def soak(bench: Bench, seconds: float, candidate: str) -> int:
    print(
        f"soak: router with the {candidate} candidate, wrk -c{bench.args.connections} for {seconds:g}s, sampling every {SOAK_INTERVAL:g}s"
    )
    with bench.router(candidate) as (url, proc, _admin, workdir):
        argv = wrk_argv(url, bench.args.connections, seconds, bench.script, latency=False)
        with open(bench.load_log, "a") as log:
            wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        samples = []
        try:
            start = time.monotonic()
            next_at = start + SOAK_INTERVAL
            while wrk.poll() is None:
                time.sleep(max(0.0, min(1.0, next_at - time.monotonic())))
                if time.monotonic() >= next_at and wrk.poll() is None and time.monotonic() - start < seconds - 2:
                    proc.check_alive()
                    rss, fds = sample(proc.pid)
                    samples.append((time.monotonic() - start, rss, fds))
                    print(f"  t={samples[-1][0]:6.0f}s  rss {rss:8.1f} MiB  fds {fds:5d}", flush=True)
                    next_at += SOAK_INTERVAL
            out = wrk.communicate(timeout=30)[0]
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        data = wrk_summary(out)
        if data:
            print(
                f"  load: {data['requests'] / (data['duration_us'] / 1e6):.0f} req/s, p50 {data['p50_us'] / 1000:.2f} ms, "
                f"p99 {data['p99_us'] / 1000:.2f} ms, non-2xx {data['status']}, "
                f"socket errors {socket_errors(data)}"
            )
        size = sum(f.stat().st_size for f in (workdir / "records").rglob("*") if f.is_file())
        print(f"  pair records written: {size / 2**20:.1f} MiB")
    if len(samples) < 2:
        print("soak: fewer than 2 samples (run it for at least 25 s)")
        return 1
    # Upstream pools open a connection per concurrent request in a burst and close them once idle for
    # 30 s, so the fd count follows the load up and down; a leak raises its floor. Judged after the
    # first third of the run (warm-up): RSS at the end against then, the fds' floor in the last third
    # against their floor in the middle third.
    third = seconds / 3
    middle = [s for s in samples if third <= s[0] < 2 * third] or samples
    last = [s for s in samples if s[0] >= 2 * third] or samples[-1:]
    (t0, rss0, _), (t1, rss1, _) = middle[0], samples[-1]
    floor0, floor1 = min(s[2] for s in middle), min(s[2] for s in last)
    print(
        f"  rss    t={samples[0][0]:.0f}s {samples[0][1]:.1f} MiB (warming up), t={t0:.0f}s {rss0:.1f}, t={t1:.0f}s {rss1:.1f}"
    )
    print(f"  fds    lowest {floor0} in the middle third, {floor1} in the last; highest {max(s[2] for s in samples)}")
    rss_ok = rss1 <= rss0 * (1 + SOAK_FLAT)
    fd_ok = floor1 <= floor0 * (1 + SOAK_FLAT)
    print(
        f"  rss flat (last within {SOAK_FLAT:.0%} of t={t0:.0f}s): {'met' if rss_ok else 'NOT MET'} ({rss1 / rss0:.2f}x)"
    )
    print(
        f"  fds flat (lowest in the last third within {SOAK_FLAT:.0%} of the middle third's): "
        f"{'met' if fd_ok else 'NOT MET'} ({floor1 / max(floor0, 1):.2f}x)"
    )
    return 0 if rss_ok and fd_ok else 1
