"""The scenarios of `make bench-router`: the candidates, the targets, and which rows each section of the table measures.

A row is one front end (the direct connection, nginx or the router, with or without a mirrored
candidate, with N processes) under one load; `build_rows` lays out the sections in the order they
run and print. bench.py measures the rows, report.py turns them into the table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from .cpu import Usage
from .load import Result

CONNECTIONS = 32
OPEN_RATE = 500
OPEN_WORKERS = 10  # hey -c 10 -q 50: 500/s; hey's workers tick together, so bursts of 10 every 20 ms
CANDIDATE_TIMEOUT = "2s"
MAX_IN_FLIGHT = 256

# name -> (behaviour, delay ms)
CANDIDATES = {
    "fast": ("fast", 0.0),
    "50 ms": ("delay", 50.0),
    "200 ms": ("delay", 200.0),
    "failing": ("error", 0.0),
    "resetting": ("reset", 0.0),
    "hanging": ("hang", 0.0),
}
NGINX_MIRROR_CANDIDATES = ("fast", "50 ms", "200 ms", "hanging")
ROUTER_CANDIDATES = ("fast", "50 ms", "200 ms", "failing", "resetting", "hanging")
DEGRADED = ("50 ms", "200 ms", "failing", "resetting", "hanging")

# Targets.
P99_WITHIN = 1.1  # primary p99 with a bad candidate <= 1.1x of its p99 with a fast one
RPS_WITHIN = 0.9  # throughput with a bad candidate >= 0.9x of it with a fast one
ADDED_P50_ONE_CONN_MS = 1.0
ADDED_P50_OPEN_MS = 1.0
ADDED_P99_OPEN_MS = 3.0
# Issue 13 ("Performance at production scale"), in the closed-loop rows (one process each) and the scaling rows
# (--workers N beside nginx `worker_processes N`).
SCALING_WORKERS = (1, 2)
RPS_VS_NGINX_SAME_WORKERS = 0.8  # router without mirroring >= 0.8x nginx without, same process count
RPS_VS_NGINX_MIRROR = 1.0  # router mirroring every request >= 1.0x nginx's own `mirror`, same process count


@dataclass
class Row:
    section: str
    name: str
    kind: str  # direct | nginx | router
    candidate: str | None = None  # a CANDIDATES key; None = no mirror
    result: Result | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)
    workers: int = 1  # nginx worker_processes / router --workers
    cpu: Usage | None = None  # CPU used during the measured seconds


def build_rows(args: argparse.Namespace, with_router: bool) -> list[tuple[str, str, float, list[Row]]]:
    seconds = args.seconds
    one = max(1.0, seconds / 2)
    closed = f"closed loop: wrk -t1 -c{args.connections} -d{seconds:g}s"
    single = f"one connection: wrk -t1 -c1 -d{one:g}s"
    paced = f"open loop {OPEN_RATE} req/s, evenly spaced (python, keep-alive pool), {seconds:g}s"
    bursty = f"open loop {OPEN_RATE} req/s: hey -c {OPEN_WORKERS} -q {OPEN_RATE // OPEN_WORKERS} -z {seconds:g}s (bursts of {OPEN_WORKERS})"

    def open_rows(title: str) -> list[Row]:
        return [
            Row(title, "direct", "direct"),
            Row(title, "nginx, no mirror", "nginx"),
            Row(title, "router, fast candidate", "router", "fast"),
            Row(title, "router, 200 ms candidate", "router", "200 ms"),
        ]

    sections = [
        (
            closed,
            "closed",
            seconds,
            [Row(closed, "direct", "direct"), Row(closed, "nginx, no mirror", "nginx")]
            + [Row(closed, f"nginx mirror, {c} candidate", "nginx", c) for c in NGINX_MIRROR_CANDIDATES]
            + [Row(closed, "router, no mirror", "router")]
            + [Row(closed, f"router, {c} candidate", "router", c) for c in ROUTER_CANDIDATES],
        ),
        (
            single,
            "one",
            one,
            [
                Row(single, "direct", "direct"),
                Row(single, "nginx, no mirror", "nginx"),
                Row(single, "router, no mirror", "router"),
            ],
        ),
        (paced, "open", seconds, open_rows(paced)),
        (bursty, "hey", seconds, open_rows(bursty)),
    ]
    scaling = (
        f"scaling: wrk -t1 -c{args.connections} -d{seconds:g}s, router --workers N beside nginx worker_processes N"
    )
    scaling_rows = []
    for n in SCALING_WORKERS:
        scaling_rows += [
            Row(scaling, f"x{n} nginx, no mirror", "nginx", workers=n),
            Row(scaling, f"x{n} router, no mirror", "router", workers=n, extra={"ref": f"x{n} nginx, no mirror"}),
            Row(scaling, f"x{n} nginx mirror, fast candidate", "nginx", "fast", workers=n),
            Row(scaling, f"x{n} router, fast candidate", "router", "fast", workers=n,
                extra={"ref": f"x{n} nginx mirror, fast candidate"}),
        ]  # fmt: skip
    if args.scaling:
        sections = []
    sections.append((scaling, "scaling", seconds, scaling_rows))
    for _, _, _, rows in sections:
        for row in rows:
            if row.kind == "router" and not with_router:
                row.note = "router: not available"
            elif args.only and row.kind != "direct" and row.name != "nginx, no mirror" and args.only not in row.name:
                row.note = "skipped (--only)"
    return sections
