"""The output of `make bench-router`: every measured row as one table (benchmarks/table.py), and notes under it.

One line per measurement: the router's value beside the same measurement of its reference in the
same run (nginx with the same mirroring and process count, the direct connection, or the router's
own fast-candidate row for the isolation targets), the ratio, the target and whether it is met.
For the closed-loop and scaling rows, where the CPU went during the measured seconds (cpu.py): the
proxy's CPU per request beside nginx's, and the cores kept busy by the proxy, wrk, the primary,
the candidate, the kernel's softirq and the rest of the machine, with what was saturated. Under
the table: nginx's own behaviour with slow candidates, the router's mirror counters, each row's CPU.
"""

from __future__ import annotations

from benchmarks import table

from .cpu import CORES, Usage
from .scenarios import (
    ADDED_P50_ONE_CONN_MS,
    ADDED_P50_OPEN_MS,
    ADDED_P99_OPEN_MS,
    DEGRADED,
    NGINX_MIRROR_CANDIDATES,
    P99_WITHIN,
    ROUTER_CANDIDATES,
    RPS_VS_NGINX_MIRROR,
    RPS_VS_NGINX_SAME_WORKERS,
    RPS_WITHIN,
    SCALING_WORKERS,
    Row,
)

SATURATED = 0.9  # a process at >= 0.9 of the cores it can use is what limits the row
IDLE_FLOOR = 0.2  # fewer idle cores than this: the machine itself is full
CPU_ROLES = (("proxy", "proxy"), ("load", "wrk"), ("primary", "primary"), ("candidate", "candidate"))
CPU_LOADS = ("closed", "scaling")  # the sections whose CPU is shown (closed-loop wrk)


def mirror_lines(sections) -> list[str]:
    """What the router did with the copies, per mirroring row (its /metrics, over the measured seconds)."""
    lines = []
    for _title, load, _seconds, rows in sections:
        for row in rows:
            if row.kind == "router" and row.candidate and row.result and row.extra.get("mirror"):
                counts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(row.extra["mirror"].items()))
                lines.append(f"  {load:<6} {row.name:<28} {counts}")
    return (
        ["router mirror decisions and candidate outcomes during each measured row (its /metrics):", *lines]
        if lines
        else []
    )


_UNITS = {"rps": ("req/s", "req/s"), "p50_ms": ("p50", "ms"), "p99_ms": ("p99", "ms")}


def bottleneck(usage: Usage, proxy: str, workers: int) -> str:
    """What limited a row: the proxy at its process count's cores, wrk at its one thread's, or a full machine."""
    found = []
    busy = usage.cores("proxy")
    if busy is not None and busy >= SATURATED * min(workers, CORES):
        found.append(f"{proxy} at {busy:.2f} of its {workers} core{'s' if workers > 1 else ''}")
    busy = usage.cores("load")
    if busy is not None and busy >= SATURATED:
        found.append(f"wrk at {busy:.2f} of its 1 thread's core")
    if usage.idle_cores < IDLE_FLOOR:
        found.append(f"machine full ({usage.idle_cores:.2f} cores idle, {usage.other_cores:.2f} on other work)")
    return ", ".join(found) or f"nothing saturated ({usage.idle_cores:.2f} cores idle)"


def cpu_rows(t: table.Table, measure: str, ours: Row | None, ref: Row | None, detailed: bool) -> None:
    """The proxy's CPU per request beside its reference's; with `detailed`, the cores each process kept busy."""
    if ours is None or ours.cpu is None or ours.result is None:
        return
    u = ours.cpu
    r = ref.cpu if ref is not None and ref.result is not None else None
    ref_name = ref.name if r else ""
    per, per_ref = u.per_request_us(), r.per_request_us() if r else None
    if per is None:
        return
    capacity = f"one core's worth: {1e6 / per:,.0f} req/s"
    if per_ref:
        capacity += f" (nginx {1e6 / per_ref:,.0f}); on equal CPU {per_ref / per:.2f}x nginx's req/s"
    t.row(f"{measure}: proxy CPU per request", per, "µs", ref=per_ref, ref_name=ref_name, note=capacity)
    if not detailed:
        return
    for role, what in CPU_ROLES:
        if role in u.used:
            t.row(
                f"{measure}: cores busy, {what}",
                u.cores(role),
                "cores",
                ref=r.cores(role) if r else None,
                ref_name=ref_name,
                ratio=None if role == "proxy" else table.DASH,
                digits=2,
            )
    for what, attribute in (("kernel softirq (loopback TCP)", "softirq_cores"), ("rest of the machine", "other_cores")):
        t.row(
            f"{measure}: cores busy, {what}",
            getattr(u, attribute),
            "cores",
            ref=getattr(r, attribute) if r else None,
            ref_name=ref_name,
            ratio=table.DASH,
            digits=2,
        )
    why = f"{ours.name.split(',')[0]} row: {bottleneck(u, 'router', ours.workers)}"
    if r:
        why += f"; nginx row: {bottleneck(r, 'nginx', ref.workers)}"
    t.row(
        f"{measure}: cores idle",
        u.idle_cores,
        "cores",
        ref=r.idle_cores if r else None,
        ref_name=ref_name,
        ratio=table.DASH,
        digits=2,
        note=why,
    )


def cpu_lines(sections) -> list[str]:
    """Each closed-loop and scaling row's CPU over its measured seconds, in cores, and the proxy's per request."""
    lines = []
    for _title, load, _seconds, rows in sections:
        if load not in CPU_LOADS:
            continue
        for row in rows:
            if row.cpu is None or row.result is None:
                continue
            names = {"proxy": row.kind, "load": "wrk"}
            per = row.cpu.per_request_us()
            per_text = f"; {row.kind} {per:.1f} µs/request" if per is not None else ""
            lines.append(f"  {load:<7} {row.name:<34} {row.cpu.summary(names)}{per_text}")
    if not lines:
        return []
    return [
        f"CPU during each measured row, in cores of {CORES} (/proc/PID/stat, each process with its children; "
        "softirq and the rest of the machine from /proc/stat):",
        *lines,
    ]


def report(sections) -> table.Table:
    """Every measurement of the run as one table (benchmarks/table.py): the router's value, beside it the same
    measurement of its reference (nginx with the same mirroring and process count, a direct connection, or the
    router's own fast-candidate row for the isolation targets), the ratio, the target and whether it is met."""
    t = table.Table(
        "Router (shadowctl router) beside nginx and a direct connection, all in one run", "nginx, no mirror"
    )
    results = {(key, row.name): row.result for _, key, _, rows in sections for row in rows}
    measured = {(key, row.name): row for _, key, _, rows in sections for row in rows}
    cpu_title = f"CPU during the measured seconds ({CORES} cores)"

    def add(measure: str, load: str, name: str, what: str, ref: str | None, target: str = "", met=None, note=""):
        ours, base = results.get((load, name)), results.get((load, ref)) if ref else None
        if ours is None:
            return None
        label, unit = _UNITS[what]
        notes = [note] if note else []
        if ours.errors:
            notes.append(f"{ours.errors} errors ({ours.detail})")
            met = False if target else met
        return t.row(
            f"{measure}: {label}",
            getattr(ours, what),
            unit,
            ref=getattr(base, what) if base else None,
            ref_name=ref or "",
            target=target,
            met=met,
            note="; ".join(notes),
        )

    def added(load: str, name: str, what: str, limit: float, info: bool = False):
        ours, base = results.get((load, name)), results.get((load, "direct"))
        if ours is None or base is None:
            return None
        diff = getattr(ours, what) - getattr(base, what)
        target = f"added < {limit:g} ms" + (" (info)" if info else "")
        return add(
            name.removeprefix("router, "), load, name, what, "direct", target, diff < limit, f"added {diff:.2f} ms"
        )

    for title, key, _, _rows in sections:
        t.section(title)
        if key == "closed":
            add("no mirror", key, "router, no mirror", "rps", "nginx, no mirror", f"≥ {RPS_VS_NGINX_SAME_WORKERS}x")
            add("no mirror", key, "router, no mirror", "p50_ms", "nginx, no mirror")
            add("no mirror", key, "router, no mirror", "p99_ms", "nginx, no mirror")
            add("no mirror", key, "router, no mirror", "rps", "direct")
            for c in ROUTER_CANDIDATES:
                nginx = f"nginx mirror, {c} candidate" if c in NGINX_MIRROR_CANDIDATES else None
                target = f"≥ {RPS_VS_NGINX_MIRROR}x" if c == "fast" else ""
                add(f"{c} candidate, all mirrored", key, f"router, {c} candidate", "rps", nginx, target)
                add(f"{c} candidate, all mirrored", key, f"router, {c} candidate", "p99_ms", nginx)
                if c == "fast":
                    add("fast candidate, all mirrored", key, "router, fast candidate", "rps", "nginx, no mirror")
            t.section(f"{title}: a bad candidate beside the fast one (isolation)")
            for c in DEGRADED:
                name = f"router, {c} candidate"
                add(f"{c} candidate", key, name, "p99_ms", "router, fast candidate", f"≤ {P99_WITHIN}x")
                add(f"{c} candidate", key, name, "rps", "router, fast candidate", f"≥ {RPS_WITHIN}x")
            nfast = results.get((key, "nginx mirror, fast candidate"))
            for c in NGINX_MIRROR_CANDIDATES[1:]:
                res = results.get((key, f"nginx mirror, {c} candidate"))
                if nfast and res:
                    held = res.p99_ms / nfast.p99_ms <= P99_WITHIN and res.rps / nfast.rps >= RPS_WITHIN
                    t.note(
                        f"nginx mirror, {c} candidate (for contrast): p99 {res.p99_ms / nfast.p99_ms:.1f}x, "
                        f"req/s {res.rps / nfast.rps:.3f}x of its fast-candidate row, p50 {res.p50_ms:.1f} ms: "
                        f"{'holds' if held else 'does not hold'}"
                    )
            t.section(f"closed loop: {cpu_title}")
            for c in (None, *ROUTER_CANDIDATES):
                label = f"{c} candidate" if c else "no mirror"
                ref = f"nginx mirror, {c} candidate" if c else "nginx, no mirror"
                cpu_rows(
                    t, label, measured.get((key, f"router, {label}")), measured.get((key, ref)), c in (None, "fast")
                )
        elif key == "one":
            added(key, "router, no mirror", "p50_ms", ADDED_P50_ONE_CONN_MS)
            add("no mirror", key, "router, no mirror", "p99_ms", "direct")
            add("no mirror", key, "router, no mirror", "rps", "direct")
            add("no mirror", key, "router, no mirror", "p50_ms", "nginx, no mirror")
        elif key in ("open", "hey"):
            for name in ("router, fast candidate", "router, 200 ms candidate"):
                added(key, name, "p50_ms", ADDED_P50_OPEN_MS, info=key == "hey")
                added(key, name, "p99_ms", ADDED_P99_OPEN_MS, info=key == "hey")
                add(name.removeprefix("router, "), key, name, "p50_ms", "nginx, no mirror")
        elif key == "scaling":
            for n in SCALING_WORKERS:
                for mirrored, ref, target in (
                    ("no mirror", f"x{n} nginx, no mirror", RPS_VS_NGINX_SAME_WORKERS),
                    ("fast candidate", f"x{n} nginx mirror, fast candidate", RPS_VS_NGINX_MIRROR),
                ):
                    name = f"x{n} router, {mirrored}"
                    add(f"x{n} {mirrored}", key, name, "rps", ref, f"≥ {target}x")
                    add(f"x{n} {mirrored}", key, name, "p99_ms", ref)
            t.section(f"scaling: {cpu_title}")
            for n in SCALING_WORKERS:
                for mirrored, ref in (
                    ("no mirror", "nginx, no mirror"),
                    ("fast candidate", "nginx mirror, fast candidate"),
                ):
                    ours = measured.get((key, f"x{n} router, {mirrored}"))
                    cpu_rows(t, f"x{n} {mirrored}", ours, measured.get((key, f"x{n} {ref}")), True)
    for line in [*mirror_lines(sections), *cpu_lines(sections)]:
        t.note(line)
    return t
