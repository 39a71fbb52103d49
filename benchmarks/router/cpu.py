"""CPU accounting for `make bench-router`: the CPU seconds each process tree and the whole machine used in a window.

A process tree's CPU is user + system time from /proc/PID/stat (utime, stime: all its threads)
of the process and every live descendant, plus cutime and cstime (children that exited and were
reaped in the meantime), so the router's worker processes and nginx's master and workers count
with their parent. The machine's is every core's busy time from /proc/stat (all but idle, iowait
and steal). Of that, softirq is mostly the kernel's loopback TCP work for our own traffic (charged
to no process: 0.3 cores under wrk against the primary alone, 0.01 when idle), and what is left
after it and our processes is the rest of the machine (other work on the shared cores, and the
benchmark's own bookkeeping). The load generator is measured where it runs (load.py: getrusage of
the reaped wrk or hey, or of this process for the paced client).

Clock ticks are 1/SC_CLK_TCK s (10 ms), per process: fine for windows of seconds; a CPU per
request from fewer than MIN_TICKS ticks is not shown.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .processes import proc_stats, tree

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))
# the process trees a row can read, in the order the notes name them
ROLES = ("proxy", "load", "primary", "candidate")
MIN_TICKS = 5


@dataclass
class Reading:
    """Cumulative CPU seconds at one moment: per named process tree, and the machine's."""

    at: float  # time.monotonic()
    trees: dict[str, float]
    machine: float
    softirq: float


def machine_seconds() -> tuple[float, float]:
    """Busy CPU seconds of the whole machine since boot, all cores together, and the softirq part of them
    (/proc/stat's `cpu` line)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = (fields + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / CLK_TCK, softirq / CLK_TCK  # guest time is inside user


def read(pids: dict[str, int]) -> Reading:
    """CPU seconds so far of each named process and its descendants (one pass over /proc), and of the machine."""
    stats = proc_stats()
    trees = {}
    for name, pid in pids.items():
        ticks = 0
        for p in tree(pid, stats):
            fields = stats.get(p)
            if fields and len(fields) > 14:
                ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        trees[name] = ticks / CLK_TCK
    return Reading(time.monotonic(), trees, *machine_seconds())


@dataclass
class Usage:
    """CPU seconds used during a measured window by the roles of a row (proxy, load, primary, candidate) and the
    machine, and the requests served in it."""

    seconds: float  # the window, wall clock
    requests: int
    used: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds
    machine: float = 0.0
    softirq: float = 0.0

    @classmethod
    def between(cls, before: Reading, after: Reading, requests: int, load: float | None) -> Usage:
        used = {name: after.trees[name] - before.trees[name] for name in after.trees if name in before.trees}
        if load is not None:
            used["load"] = load
        return cls(after.at - before.at, requests, used, after.machine - before.machine, after.softirq - before.softirq)

    def cores(self, role: str) -> float | None:
        """The role's CPU seconds per second of the window: how many of the CORES it kept busy."""
        cpu = self.used.get(role)
        return None if cpu is None or self.seconds <= 0 else cpu / self.seconds

    def per_request_us(self, role: str = "proxy") -> float | None:
        """The role's CPU per request served, in µs (None below MIN_TICKS clock ticks: too coarse to divide)."""
        cpu = self.used.get(role)
        return None if cpu is None or not self.requests or cpu < MIN_TICKS / CLK_TCK else cpu / self.requests * 1e6

    @property
    def softirq_cores(self) -> float:
        """Cores busy in softirq: mostly the kernel's loopback TCP work for the row's own traffic."""
        return self.softirq / self.seconds if self.seconds > 0 else 0.0

    @property
    def other_cores(self) -> float:
        """Cores kept busy by everything else on the machine (never below 0: the readings' ticks are coarse)."""
        if self.seconds <= 0:
            return 0.0
        return max(0.0, (self.machine - self.softirq - sum(self.used.values())) / self.seconds)

    @property
    def idle_cores(self) -> float:
        return max(0.0, CORES - self.machine / self.seconds) if self.seconds > 0 else 0.0

    def summary(self, names: dict[str, str]) -> str:
        """`router 0.98, wrk 0.45, primary 0.21, softirq 0.15, rest of the machine 0.10, idle 0.11`, in cores."""
        parts = [f"{names.get(role, role)} {self.cores(role):.2f}" for role in ROLES if role in self.used]
        parts += [
            f"softirq {self.softirq_cores:.2f}",
            f"rest of the machine {self.other_cores:.2f}",
            f"idle {self.idle_cores:.2f}",
        ]
        return ", ".join(parts)
