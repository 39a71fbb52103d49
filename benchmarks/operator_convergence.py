"""`make bench-operator [OBJECTS=1000]`: 200 (or --count) ShadowDeployments against a private control plane.

Prints, measured in one run (benchmarks/table.py): time until every object has its children
and status, and until the operator's last write (from the audit log, once it has been quiet for
two resyncs; target ≤ 1.2x the reference), the CPU seconds of the operator and of each
control-plane process meanwhile (where the time goes), the operator's peak memory (and per object, above
its memory with no objects), its API requests per ShadowDeployment while converging, and
its API requests during an idle window (target: no writes and no reads, only watches), next
to a reference: the same child objects applied directly with one `kubectl apply
--server-side`, i.e. what the API server itself costs, and the requests that kubectl made.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from tests.integration.conftest import shadow_deployment
from tests.integration.harness import (
    ISTIO_CRDS,
    KUBECTL,
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    REPO,
    WRITE_VERBS,
    LocalCluster,
    OperatorProcess,
    free_port,
    now,
    wait_for,
)

from benchmarks import table
from shadow_operator.contract.resource import parse
from shadow_operator.controller.builders import desired_state
from shadow_operator.controller.observed import Observed


def bodies(count: int) -> list[dict]:
    result = []
    for i in range(count):
        name = f"model-{i:03d}"
        body = shadow_deployment(name)
        body["spec"]["service"] = {"name": f"{name}-svc", "port": 80}
        result.append(body)
    return result


def converged(cluster: LocalCluster, namespace: str) -> int:
    """How many objects have their status for their current generation (phase Deploying: children applied)."""
    listing = json.loads(cluster.kubectl("-n", namespace, "get", "shadowdeployments", "-o", "json").stdout)
    return sum(
        1
        for item in listing["items"]
        if (item.get("status") or {}).get("observedGeneration") == item["metadata"]["generation"]
        and item["status"].get("phase") == "Deploying"
    )


def kubectl(cluster: LocalCluster, *args: str, stdin: str | None = None, timeout: float = 1800) -> str:
    """kubectl against the cluster, with room for 1,000 objects (the harness's kubectl gives up after 60 s)."""
    result = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr or result.stdout}")
    return result.stdout


def reference_apply(cluster: LocalCluster, documents: list[dict]) -> tuple[float, int, list[dict], dict[str, float]]:
    """The same children, without owner references, applied by one kubectl in its own namespace:
    (seconds, objects, the API requests it made, CPU seconds by process: kubectl and the control plane)."""
    cluster.kubectl("create", "namespace", "reference")
    children = []
    for body in documents:
        body = {**body, "metadata": {**body["metadata"], "namespace": "reference", "uid": "x", "generation": 1}}
        for child in desired_state(parse(body), Observed(), "shadow-operator:bench").children:
            child["metadata"].pop("ownerReferences", None)
            if child["kind"] == "CronJob":
                child["apiVersion"] = "batch/v1beta1"  # the test control plane is Kubernetes 1.20
            children.append(child)
    began_at, started = now(), time.monotonic()
    cpu_before, kubectl_before = control_plane_cpu(cluster), children_cpu()
    # JSON, not YAML: PyYAML leaves a hash like "9375747436413e92" unquoted, and kubectl's YAML reads it as a float.
    listing = {"apiVersion": "v1", "kind": "List", "items": children}
    kubectl(cluster, "apply", "--server-side", "-f", "-", stdin=json.dumps(listing))
    seconds, ended_at = time.monotonic() - started, now()
    cpu = {"client": children_cpu() - kubectl_before, **spent(cpu_before, control_plane_cpu(cluster))}
    requests = [
        e for e in cluster.audit_events(began_at)
        if e["requestReceivedTimestamp"] <= ended_at.isoformat() and e["user"].get("username") != OPERATOR_USER
    ]  # fmt: skip
    return seconds, len(children), requests, cpu


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control_plane_cpu(cluster: LocalCluster) -> dict[str, float]:
    """CPU seconds so far of each control-plane process (hack/local-cluster.sh writes their pid files)."""
    return {name: cpu_seconds(int((cluster.state_dir / f"{name}.pid").read_text())) for name in CONTROL_PLANE}


def children_cpu() -> float:
    """CPU seconds of every child this process has waited for (kubectl, run to completion)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


def last_write_once_quiet(cluster: LocalCluster, since: datetime, quiet: float, timeout: float) -> datetime | None:
    """When the operator made its last write, once it has written nothing for `quiet` seconds; None
    if it never went quiet within `timeout`. The convergence test above passes on children and
    status; kopf's annotations and a last status transition can still follow it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        writes = [e for e in cluster.audit_events(since, OPERATOR_USER) if e["verb"] in WRITE_VERBS]
        last = max((datetime.fromisoformat(e["requestReceivedTimestamp"]) for e in writes), default=since)
        if now() - last >= timedelta(seconds=quiet):
            return last
        time.sleep(1)
    return None


def rss_mib(pid: int, field: str = "VmRSS:") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--count", type=int, default=200, help="ShadowDeployments (default 200; `make bench-operator OBJECTS=1000`)"
    )
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--resync-seconds", type=float, default=10)
    parser.add_argument(
        "--timeout", type=float, default=0, help="seconds to wait for convergence (default max(600, 1.5 s per object))"
    )
    parser.add_argument(
        "--drop-reference",
        action="store_true",
        help="delete the reference's children before the operator starts (its watches, cluster-wide, then list only "
        "the objects under test; by default it starts on a cluster that also holds the reference's N x 16 objects)",
    )
    table.add_arguments(parser)
    args = parser.parse_args()

    import tempfile

    state = Path(tempfile.mkdtemp(prefix="shadow-bench-"))
    cluster = LocalCluster(state / "cluster", api_port=free_port(), etcd_port=free_port())
    cluster.state_dir.mkdir()
    cluster.up()
    operator = None
    try:
        cluster.kubectl("apply", "-f", str(REPO / "crds" / "shadow.mlops.dev_shadowdeployments.yaml"))
        cluster.kubectl("create", "-f", str(ISTIO_CRDS))
        cluster.kubectl("apply", "-f", str(REPO / "manifests" / "namespace.yaml"))
        cluster.kubectl("apply", "-k", str(REPO / "manifests" / "rbac"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/shadowdeployments.shadow.mlops.dev")
        kubeconfig = cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, "shadow-operator")
        documents = bodies(args.count)

        reference_seconds, reference_objects, reference_requests, reference_cpu = reference_apply(cluster, documents)
        if args.drop_reference:
            kubectl(cluster, "delete", "namespace", "reference", "--wait=true", "--timeout=900s")

        operator = OperatorProcess(kubeconfig, state / "operator.log", resync_seconds=args.resync_seconds)
        operator.start()
        wait_for(lambda: "Initial authentication has finished" in operator.log_tail(200), timeout=60)
        time.sleep(2)  # its watches are up
        empty_rss = rss_mib(operator.process.pid)
        cluster.kubectl("create", "namespace", "bench")
        started_at, started = now(), time.monotonic()
        cpu_before, operator_before = control_plane_cpu(cluster), cpu_seconds(operator.process.pid)
        kubectl(cluster, "-n", "bench", "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
        timeout = args.timeout or max(600, 1.5 * args.count)
        done = 0
        try:
            wait_for(lambda: converged(cluster, "bench") == args.count, timeout=timeout, interval=1, what="convergence")
            done = args.count
        except AssertionError:  # reported in the table: how many converged, and no idle window
            done = converged(cluster, "bench")
        convergence_seconds = time.monotonic() - started
        converged_at = now()
        convergence_cpu = {
            "client": cpu_seconds(operator.process.pid) - operator_before,
            **spent(cpu_before, control_plane_cpu(cluster)),
        }
        convergence_events = [
            e for e in cluster.audit_events(started_at, OPERATOR_USER)
            if e["requestReceivedTimestamp"] <= converged_at.isoformat()
        ]  # fmt: skip
        convergence_writes = [e for e in convergence_events if e["verb"] in WRITE_VERBS]

        idle_events: list[dict] = []
        quiet = 2 * args.resync_seconds  # a write every resync would never leave this much quiet
        last_write = None
        if done == args.count:
            last_write = last_write_once_quiet(cluster, started_at, quiet, timeout)
            idle_started = now()
            time.sleep(args.idle_seconds)
            idle_events = [e for e in cluster.audit_events(idle_started, OPERATOR_USER)]
        idle_writes = [e for e in idle_events if e["verb"] in WRITE_VERBS]
        peak = rss_mib(operator.process.pid, "VmHWM:")
    finally:
        if operator:
            operator.stop()
        cluster.down()

    n = args.count
    per_object = reference_objects / n
    reference_writes = [e for e in reference_requests if e["verb"] in WRITE_VERBS]
    t = table.Table(
        f"Operator convergence: {n} ShadowDeployments x {per_object:.0f} children, resync {args.resync_seconds:g} s",
        reference="kubectl",
    )
    timed_out = done < n
    settled = (last_write - started_at).total_seconds() if last_write else None
    kubectl_note = f"kubectl: one `apply --server-side` of the {reference_objects:,} children"
    # The target is judged on the audit log's time of the operator's last write (the API server's
    # clock, to the microsecond); the poll above it (`kubectl get` every second) is coarser.
    t.row(
        "time: apply -> every object's children + status, polled",
        f"> {convergence_seconds:,.0f}" if timed_out else convergence_seconds,
        "s",
        ref=reference_seconds,
        ratio=f"> {convergence_seconds / reference_seconds:.1f}x" if timed_out else None,
        target="≤ 1.2x" if settled is None else "",
        met=False if timed_out else None,
        note=(f"gave up: {done} of {n} converged; " if timed_out else "")
        + (kubectl_note if settled is None else "`kubectl get` every second, 0.3 s a call"),
    )
    if not timed_out:
        t.row(
            "time: apply -> the operator's last write",
            settled if settled is not None else f"> {convergence_seconds + timeout:,.0f}",
            "s",
            ref=reference_seconds,
            target="≤ 1.2x",
            met=False if settled is None else None,
            note=f"{kubectl_note}; then {quiet:g} s without a write (kopf's annotations and last status patches in)"
            if settled is not None
            else f"never {quiet:g} s without a write: the idle window below shows what it keeps writing",
        )
    t.row("operator peak RSS", peak, "MiB", note=f"{empty_rss:.0f} MiB before the first object")
    t.row("peak RSS per object", (peak - empty_rss) * 1024 / n, "KiB", note="above the operator's RSS with no objects")
    t.section("CPU seconds while converging (where the time goes; 2 cores shared by all)")
    client = "operator (kubectl beside it)"
    for name in ("client", *CONTROL_PLANE):
        t.row(client if name == "client" else name, convergence_cpu[name], "s", ref=reference_cpu[name])
    busy = convergence_cpu["client"] / convergence_seconds
    t.row(
        "operator CPU / wall time",
        busy * 100,
        "%",
        ref=reference_cpu["client"] / reference_seconds * 100,
        note="100% is one core: the operator's Python (kopf, the client, pydantic) runs under one GIL",
    )
    t.section("API requests per object, converging")
    t.row(
        "writes",
        len(convergence_writes) / n,
        ref=len(reference_writes) / n,
        note=f"the minimum is {per_object + 2:.0f}: children, status, kopf's annotation",
    )
    t.row(
        "reads (get, list)",
        _count(convergence_events, "get", "list") / n,
        ref=_count(reference_requests, "get", "list") / n,
    )
    t.row("watches started", _count(convergence_events, "watch") / n, ref=_count(reference_requests, "watch") / n)
    if timed_out:
        t.note(f"no idle window: the objects did not converge within {convergence_seconds:.0f} s")
        for what, events in (("converging", convergence_writes),):
            if events:
                t.note(f"{what} writes by kind: " + ", ".join(f"{k}: {v}" for k, v in sorted(_by_kind(events).items())))
        t.print()
        return 1
    t.section(f"API requests in a {args.idle_seconds:.0f} s idle window (all objects)")
    t.row("writes", len(idle_writes), target="= 0", note=f"{len(idle_writes) / n:.1f} per object")
    t.row("gets", _count(idle_events, "get"), target="= 0", note=f"{_count(idle_events, 'get') / n:.1f} per object")
    t.row("lists", _count(idle_events, "list"), target="= 0", note="a watch that ended re-lists")
    t.row("watches (re)started", _count(idle_events, "watch"), note="a watch is logged when it starts")
    for what, events in (("converging", convergence_writes), ("idle", idle_writes)):
        if events:
            t.note(f"{what} writes by kind: " + ", ".join(f"{k}: {v}" for k, v in sorted(_by_kind(events).items())))
    t.print()
    return 0 if not idle_writes else 1


def _count(events: list[dict], *verbs: str) -> int:
    return sum(1 for e in events if e["verb"] in verbs)


def _by_kind(events: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        ref = event["objectRef"]
        key = f"{event['verb']} {ref['resource']}" + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        counts[key] = counts.get(key, 0) + 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
