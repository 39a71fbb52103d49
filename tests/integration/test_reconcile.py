"""The real operator against a real API server: children, printer columns, edits, idle, restarts."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
import yaml

from .conftest import condition, get_json, mark_available, shadow_deployment, status_of, wait_phase
from .harness import REPO, apply_yaml, describe, now, table, wait_for

pytestmark = pytest.mark.cluster

ISTIO_CHILDREN = {
    ("ConfigMap", "recommender-recorder"),
    ("Deployment", "recommender-candidate"),
    ("Deployment", "recommender-primary"),
    ("Service", "recommender"),
    ("Service", "recommender-candidate"),
    ("Service", "recommender-primary"),
    ("DestinationRule", "recommender-candidate"),
    ("VirtualService", "recommender"),
    ("CronJob", "recommender-analysis"),
    ("ServiceAccount", "recommender-analysis"),
    ("Role", "recommender-analysis"),
    ("RoleBinding", "recommender-analysis"),
    ("ConfigMap", "recommender-report"),
    ("ConfigMap", "recommender-analysis-state"),
    ("Deployment", "recommender-collector"),
    ("Service", "recommender-collector"),
    ("NetworkPolicy", "recommender-collector"),
}
CHILD_TYPES = (
    "deployments,services,configmaps,cronjobs,virtualservices,destinationrules,serviceaccounts,roles,rolebindings,"
    "networkpolicies"
)


def children(cluster, namespace: str, owner: str) -> set[tuple[str, str]]:
    """Every object in the namespace whose owner reference names the ShadowDeployment."""
    listing = get_json(cluster, namespace, CHILD_TYPES) or {"items": []}
    return {
        (item["kind"], item["metadata"]["name"])
        for item in listing["items"]
        if any(ref.get("name") == owner for ref in item["metadata"].get("ownerReferences") or [])
    }


def test_istio_sample_creates_exactly_its_children_and_reaches_shadowing(cluster, operator, apps, namespace):
    sample = yaml.safe_load((REPO / "manifests" / "samples" / "istio.yaml").read_text())
    apply_yaml(cluster, [sample], namespace)
    name = sample["metadata"]["name"]

    status = wait_phase(cluster, namespace, name, "Deploying")
    assert children(cluster, namespace, name) == ISTIO_CHILDREN
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "Ready")["reason"] == "PrimaryNotAvailable"

    route = get_json(cluster, namespace, "virtualservice", name)["spec"]["http"][0]
    assert route["route"][0]["weight"] == 100
    assert route["mirror"]["host"] == f"recommender-candidate.{namespace}.svc.cluster.local"
    assert route["mirrorPercentage"] == {"value": 100}

    for deployment in ("recommender-primary", "recommender-candidate"):
        mark_available(apps, namespace, deployment)
    status = wait_phase(cluster, namespace, name, "Shadowing")
    generation = get_json(cluster, namespace, "shadowdeployment", name)["metadata"]["generation"]
    ready = condition(status, "Ready")
    # kstatus (Flux) and Argo CD read these two fields.
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("True", "Shadowing", generation)
    assert status["observedGeneration"] == generation
    assert condition(status, "Mirroring")["status"] == "True"
    assert status["mirror"] == {"state": "Active", "router": "istio", "percent": 100, "host": "recommender"}

    [row] = table(cluster.kubectl("-n", namespace, "get", "shadowdeployments").stdout)
    assert list(row) == ["NAME", "PRIMARY", "CANDIDATE", "MIRROR%", "PHASE", "VERDICT", "COVERAGE", "AGE"]
    assert row["NAME"] == name
    assert (row["PRIMARY"], row["CANDIDATE"]) == ("registry.example/recsys:1.4.2", "registry.example/recsys:2.0.0")
    assert (row["MIRROR%"], row["PHASE"], row["VERDICT"], row["COVERAGE"]) == ("100", "Shadowing", "", "0% of 168h")


SAMPLE_CHILDREN = {
    "builtin.yaml": {
        ("Deployment", "recommender-builtin-candidate"),
        ("Deployment", "recommender-builtin-primary"),
        ("Deployment", "recommender-builtin-router"),
        ("Service", "recommender-builtin"),
        ("Service", "recommender-builtin-candidate"),
        ("Service", "recommender-builtin-primary"),
        ("Service", "recommender-builtin-router"),
        ("ConfigMap", "recommender-builtin-router"),
        ("Deployment", "recommender-builtin-collector"),
        ("Service", "recommender-builtin-collector"),
        ("NetworkPolicy", "recommender-builtin-collector"),
        ("CronJob", "recommender-builtin-analysis"),
        ("ServiceAccount", "recommender-builtin-analysis"),
        ("Role", "recommender-builtin-analysis"),
        ("RoleBinding", "recommender-builtin-analysis"),
        ("ConfigMap", "recommender-builtin-report"),
        ("ConfigMap", "recommender-builtin-analysis-state"),
    },
    "existing-primary.yaml": {
        ("ConfigMap", "recommender-ref-recorder"),
        ("Deployment", "recommender-ref-candidate"),
        ("Service", "recommender-ref-candidate"),
        ("DestinationRule", "recommender-ref-candidate"),
        ("VirtualService", "recommender-ref"),
        ("Deployment", "recommender-ref-collector"),
        ("Service", "recommender-ref-collector"),
        ("NetworkPolicy", "recommender-ref-collector"),
        ("CronJob", "recommender-ref-analysis"),
        ("ServiceAccount", "recommender-ref-analysis"),
        ("Role", "recommender-ref-analysis"),
        ("RoleBinding", "recommender-ref-analysis"),
        ("ConfigMap", "recommender-ref-report"),
        ("ConfigMap", "recommender-ref-analysis-state"),
    },
}


@pytest.mark.parametrize("sample", sorted(SAMPLE_CHILDREN))
def test_each_sample_creates_exactly_its_children(cluster, operator, apps, namespace, sample):
    documents = list(yaml.safe_load_all((REPO / "manifests" / "samples" / sample).read_text()))
    apply_yaml(cluster, documents, namespace)
    [shadow] = [d for d in documents if d["kind"] == "ShadowDeployment"]
    name = shadow["metadata"]["name"]
    wait_phase(cluster, namespace, name, "Deploying")
    assert children(cluster, namespace, name) == SAMPLE_CHILDREN[sample]
    if sample == "builtin.yaml":
        # The operator created the client-facing Service: it reaches the primary until a router Pod
        # is available, then the router.
        entry = get_json(cluster, namespace, "service", "recommender-builtin")
        assert entry["spec"]["selector"] == {"shadow.mlops.dev/name": name, "shadow.mlops.dev/role": "primary"}
        mark_available(apps, namespace, f"{name}-router")
        wait_for(
            lambda: (
                get_json(cluster, namespace, "service", "recommender-builtin")["spec"]["selector"]
                == {"shadow.mlops.dev/name": name, "shadow.mlops.dev/role": "router"}
            ),
            what="the entry Service switched to the router once it is available",
        )


def test_editing_the_spec_updates_the_children(cluster, operator, apps, namespace):
    apply_yaml(cluster, [shadow_deployment("recommender")], namespace)
    wait_phase(cluster, namespace, "recommender", "Deploying")
    for deployment in ("recommender-primary", "recommender-candidate"):
        mark_available(apps, namespace, deployment)
    first = wait_phase(cluster, namespace, "recommender", "Shadowing")

    cluster.kubectl(
        "-n", namespace, "patch", "shadowdeployment", "recommender", "--type", "merge",
        "-p", '{"spec": {"traffic": {"mirrorPercent": 25}, "candidate": {"image": "registry.example/recsys:2.0.1"}}}',
    )  # fmt: skip
    wait_for(
        lambda: (
            get_json(cluster, namespace, "virtualservice", "recommender")["spec"]["http"][0]["mirrorPercentage"]
            == {"value": 25}
        ),
        what="mirror percentage 25",
    )
    image = wait_for(
        lambda: (
            (d := get_json(cluster, namespace, "deployment", "recommender-candidate"))
            and d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/recsys:2.0.1"
        ),
        what="candidate image updated",
    )
    assert image
    # The new candidate rolls out; once available, its business cycle starts over.
    mark_available(apps, namespace, "recommender-candidate")
    status = wait_for(
        lambda: (
            (s := status_of(cluster, namespace, "recommender")).get("candidate") == "registry.example/recsys:2.0.1"
            and s.get("phase") == "Shadowing"
            and s
        ),
        what="shadowing the new candidate",
    )
    assert status["mirror"]["percent"] == 25
    assert status["shadowingSince"] >= first["shadowingSince"]


def test_a_child_scaled_by_hand_is_scaled_back(cluster, operator, apps, namespace):
    """`kubectl scale` goes through the scale subresource, which 1.20 does not record in
    managedFields (kubernetes#82046): re-applying the same config alone left it scaled."""
    apply_yaml(cluster, [shadow_deployment("recommender")], namespace)
    wait_for(lambda: get_json(cluster, namespace, "deployment", "recommender-candidate"), what="candidate Deployment")
    wanted = get_json(cluster, namespace, "deployment", "recommender-candidate")["spec"]["replicas"]
    assert wanted > 0
    cluster.kubectl("-n", namespace, "scale", "deployment", "recommender-candidate", "--replicas=0")
    wait_for(
        lambda: get_json(cluster, namespace, "deployment", "recommender-candidate")["spec"]["replicas"] == wanted,
        what=f"the candidate scaled back to {wanted}",
    )


def test_an_idle_operator_neither_writes_nor_reads(cluster, operator, apps, namespace):
    """Reads come from the watches (kube/cache.py): while nothing changes, no request but the watches."""
    apply_yaml(cluster, [shadow_deployment("recommender")], namespace)
    wait_phase(cluster, namespace, "recommender", "Deploying")
    for deployment in ("recommender-primary", "recommender-candidate"):
        mark_available(apps, namespace, deployment)
    wait_phase(cluster, namespace, "recommender", "Shadowing")
    shadowing_seen = now()

    def ours(since):
        return [
            e for e in cluster.audit_events(since, "system:serviceaccount:shadow-system:shadow-operator")
            if e.get("objectRef", {}).get("namespace") == namespace
        ]  # fmt: skip

    def timer_passes() -> int:
        return operator.log_path.read_text(errors="replace").count("Timer 'reconcile-on-timer' succeeded")

    # Events, not guessed sleeps, so that a loaded machine makes this slower but not wrong.
    # Settled: the last write (the pass that set "Shadowing", kopf's own annotation patch) is
    # `quiet` old; an operator that wrote on every pass would never settle and fail here.
    resync = operator.resync_seconds
    quiet = timedelta(seconds=resync * 3)
    wait_for(
        lambda: (
            now() - shadowing_seen >= quiet
            and not [e for e in ours(now() - quiet) if e["verb"] not in ("get", "list", "watch")]
        ),
        timeout=resync * 30,
        what=f"no write by the operator for {quiet.total_seconds():.0f}s after Shadowing",
    )
    window_start, passes = now(), timer_passes()
    # The idle window spans at least three timer passes (counted in the log) and 3 intervals.
    wait_for(
        lambda: timer_passes() >= passes + 3 and (now() - window_start).total_seconds() >= resync * 3,
        timeout=resync * 30,
        what="three timer passes",
    )
    idle = ours(window_start)
    reads = [describe(e) for e in idle if e["verb"] == "get"]
    writes = [describe(e) for e in idle if e["verb"] not in ("get", "list", "watch")]
    assert writes == [], f"idle reconciles wrote: {writes}"
    assert reads == [], f"idle reconciles read (the watch cache should answer): {reads}"


def test_restarting_the_operator_mid_flight_neither_duplicates_nor_loses(cluster, operator, apps, namespace):
    names = [f"model-{i}" for i in range(6)]
    documents = []
    for name in names:
        spec = shadow_deployment(name)["spec"]
        spec["service"] = {"name": f"{name}-svc", "port": 80}
        documents.append(shadow_deployment(name, spec))
    apply_yaml(cluster, documents, namespace)
    time.sleep(0.5)
    operator.stop(signal.SIGKILL)  # mid-flight: some objects half reconciled, none finalised
    operator.start()
    for name in names:
        wait_phase(cluster, namespace, name, "Deploying", timeout=60)
        expected = {(kind, child.replace("recommender", name)) for kind, child in ISTIO_CHILDREN}
        expected = {
            (kind, f"{name}-svc") if child == name and kind == "Service" else (kind, child) for kind, child in expected
        }
        assert children(cluster, namespace, name) == expected
    deployments = get_json(cluster, namespace, "deployments")["items"]
    assert len(deployments) == 3 * len(names)  # candidate, primary, collector
