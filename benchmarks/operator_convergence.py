"""`make bench-operator`: 200 ShadowDeployments against a private control plane.

Prints, measured in one run: time until every object has its children and status,
the operator's peak memory, its API writes per ShadowDeployment while converging and
during an idle window (target: 0), next to a reference: the same child objects applied
directly with one `kubectl apply`, i.e. what the API server itself costs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml
from tests.integration.conftest import shadow_deployment
from tests.integration.harness import (
    ISTIO_CRDS,
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


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def converged(cluster: LocalCluster, namespace: str, count: int) -> bool:
    listing = json.loads(cluster.kubectl("-n", namespace, "get", "shadowdeployments", "-o", "json").stdout)
    done = [
        item
        for item in listing["items"]
        if (item.get("status") or {}).get("observedGeneration") == item["metadata"]["generation"]
        and item["status"].get("phase") == "Deploying"
    ]
    return len(done) == count


def operator_writes(cluster: LocalCluster, since, until=None) -> list[dict]:
    return [
        e
        for e in cluster.audit_events(since, OPERATOR_USER)
        if e["verb"] in WRITE_VERBS and (until is None or e["requestReceivedTimestamp"] <= until.isoformat())
    ]


def reference_apply(cluster: LocalCluster, documents: list[dict]) -> tuple[float, int]:
    """The same children, without owner references, applied by one kubectl in its own namespace."""
    cluster.kubectl("create", "namespace", "reference")
    children = []
    for body in documents:
        body = {**body, "metadata": {**body["metadata"], "namespace": "reference", "uid": "x", "generation": 1}}
        for child in desired_state(parse(body), Observed(), "shadow-operator:bench").children:
            child["metadata"].pop("ownerReferences", None)
            if child["kind"] == "CronJob":
                child["apiVersion"] = "batch/v1beta1"  # the test control plane is Kubernetes 1.20
            children.append(child)
    started = time.monotonic()
    # JSON, not YAML: PyYAML leaves a hash like "9375747436413e92" unquoted, and kubectl's YAML reads it as a float.
    listing = {"apiVersion": "v1", "kind": "List", "items": children}
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(listing))
    return time.monotonic() - started, len(children)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--resync-seconds", type=float, default=10)
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

        reference_seconds, reference_objects = reference_apply(cluster, documents)

        operator = OperatorProcess(kubeconfig, state / "operator.log", resync_seconds=args.resync_seconds)
        operator.start()
        wait_for(lambda: "Initial authentication has finished" in operator.log_tail(200), timeout=60)
        cluster.kubectl("create", "namespace", "bench")
        started_at, started = now(), time.monotonic()
        cluster.kubectl("-n", "bench", "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
        wait_for(lambda: converged(cluster, "bench", args.count), timeout=600, interval=1, what="convergence")
        convergence_seconds = time.monotonic() - started
        converged_at = now()
        convergence_writes = operator_writes(cluster, started_at, converged_at)

        time.sleep(2)  # passes that were already running finish
        idle_started = now()
        time.sleep(args.idle_seconds)
        idle_events = [e for e in cluster.audit_events(idle_started, OPERATOR_USER)]
        idle_writes = [e for e in idle_events if e["verb"] in WRITE_VERBS]
        idle_reads = [e for e in idle_events if e["verb"] == "get"]
        peak = peak_rss_mib(operator.process.pid)
    finally:
        if operator:
            operator.stop()
        cluster.down()

    n = args.count
    ideal_writes = reference_objects / n + 2  # its children, one status patch, one kopf annotation
    rows = [
        ("ShadowDeployments", f"{n}", ""),
        ("children per ShadowDeployment", f"{reference_objects / n:.0f}", ""),
        ("reference: kubectl apply of all children", f"{reference_seconds:.1f} s", "1.00x"),
        ("operator: apply -> all children + status", f"{convergence_seconds:.1f} s", f"{convergence_seconds / reference_seconds:.2f}x"),
        ("operator peak RSS", f"{peak:.0f} MiB", ""),
        ("API writes per object, converging", f"{len(convergence_writes) / n:.1f}", f"{len(convergence_writes) / n / ideal_writes:.2f}x of {ideal_writes:.0f}"),
        (f"API writes, {args.idle_seconds:.0f} s idle (resync {args.resync_seconds:g} s)", f"{len(idle_writes)}", "target 0"),
        ("API reads in that idle window", f"{len(idle_reads)}", f"{len(idle_reads) / n:.1f} per object"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>12}  ratio")
    for label, value, ratio in rows:
        print(f"{label:<{width}}  {value:>12}  {ratio}")
    for what, events in (("converging", convergence_writes), ("idle", idle_writes)):
        if events:
            print(f"\n{what} writes by kind:", ", ".join(f"{k}: {v}" for k, v in sorted(_by_kind(events).items())))
    return 0 if not idle_writes else 1


def _by_kind(events: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        ref = event["objectRef"]
        key = f"{event['verb']} {ref['resource']}" + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        counts[key] = counts.get(key, 0) + 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
