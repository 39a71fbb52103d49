"""Fixtures: one private control plane per session, the operator under its own ServiceAccount."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from shadow_operator.controller import webhook
from shadow_operator.job.job import ROLLOUT_SETTLE_SECONDS

from .harness import (
    ISTIO_CRDS,
    KUBECTL,
    OPERATOR_NAMESPACE,
    REPO,
    LocalCluster,
    OperatorProcess,
    free_port,
    wait_for,
)

pytestmark = pytest.mark.cluster

CONTRACT_SPEC: dict[str, Any] = {
    "service": {"name": "recommender", "port": 80},
    "primary": {"image": "registry.example/recsys:1.4.2", "replicas": 3, "port": 8080},
    "candidate": {"image": "registry.example/recsys:2.0.0", "replicas": 1, "port": 8080},
    "traffic": {"router": "istio", "mirrorPercent": 100},
    "recording": {
        "predictionPath": "$.prediction",
        "segments": [{"name": "history", "path": "$.features.purchase_count"}],
        "features": ["$.features.purchase_count", "$.features.last_seen_days"],
        "sampleRate": 1.0,
    },
    "analysis": {
        "interval": "10m",
        "minDuration": "168h",
        "minSamples": 1000,
        "prometheus": {"url": "http://prometheus.monitoring:9090"},
        "thresholds": {
            "latencyRatio": {"p50": 1.2, "p95": 1.3, "p99": 1.5},
            "maxErrorRate": 0.001,
            "minAgreement": 0.95,
            "maxFeatureMissingRate": 0.01,
        },
    },
}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} missing: run `make cluster-binaries` (make test does it)")
    if not ISTIO_CRDS.exists():
        pytest.fail(f"{ISTIO_CRDS} missing: the tests validate routes against Istio's own CRDs")
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), api_port=free_port(), etcd_port=free_port())
    local.up()
    try:
        local.kubectl("apply", "-f", str(REPO / "crds" / "shadow.mlops.dev_shadowdeployments.yaml"))
        local.kubectl("create", "-f", str(ISTIO_CRDS))
        local.kubectl("apply", "-f", str(REPO / "manifests" / "namespace.yaml"))
        local.kubectl("apply", "-k", str(REPO / "manifests" / "rbac"))
        for crd in ("shadowdeployments.shadow.mlops.dev", "virtualservices.networking.istio.io"):
            local.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
        yield local
    finally:
        local.down()


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: LocalCluster) -> Path:
    return cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, "shadow-operator")


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, operator_kubeconfig: Path, tmp_path_factory) -> Iterator[OperatorProcess]:
    """The operator as installed: every ShadowDeployment of the session goes through its admission webhook."""
    port = free_port()
    # As an administrator installs it (manifests/webhook/), but reached by URL on loopback; the
    # operator fills in the caBundle at start.
    configuration = webhook.configuration(webhook.url_client_config("127.0.0.1", port))
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(configuration))
    process = OperatorProcess(
        operator_kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log", webhook_port=port
    )
    process.start()
    wait_for(lambda: "Initial authentication has finished" in process.log_tail(200), timeout=30, what="kopf start")
    wait_for(lambda: _webhook_answers(cluster), timeout=30, what="the admission webhook answering")
    yield process
    process.stop()
    print("---- operator log (tail) ----\n" + process.log_tail(60))


def _webhook_answers(cluster: LocalCluster) -> bool:
    """A server-side dry run goes through admission: it passes once the webhook serves with its CA in place."""
    probe = shadow_deployment("webhook-probe")
    result = cluster.kubectl(
        "-n", "default", "create", "--dry-run=server", "-f", "-", stdin=json.dumps(probe), check=False
    )
    return result.returncode == 0


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def apps(cluster: LocalCluster) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(cluster.api_client())


def shadow_deployment(name: str, spec: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """The contract example under another name, with top-level spec sections replaced."""
    body_spec = copy.deepcopy(spec or CONTRACT_SPEC)
    body_spec.update(copy.deepcopy(changes))
    return {
        "apiVersion": "shadow.mlops.dev/v1alpha1",
        "kind": "ShadowDeployment",
        "metadata": {"name": name},
        "spec": body_spec,
    }


def get_json(cluster: LocalCluster, namespace: str, *what: str) -> dict[str, Any] | None:
    result = cluster.kubectl("-n", namespace, "get", *what, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def status_of(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return (get_json(cluster, namespace, "shadowdeployment", name) or {}).get("status") or {}


def wait_phase(cluster: LocalCluster, namespace: str, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(
        lambda: (s := status_of(cluster, namespace, name)).get("phase") == phase and s,
        timeout=timeout,
        what=f"{namespace}/{name} in phase {phase} (now {status_of(cluster, namespace, name).get('phase')})",
    )


def after_rollout_settled() -> float:
    """Now, once records arriving now count as the candidate's (the job's settle window after
    status.shadowingSince has passed): call right after the phase turned Shadowing."""
    time.sleep(ROLLOUT_SETTLE_SECONDS)
    return time.time()


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def mark_available(apps: kubernetes.client.AppsV1Api, namespace: str, name: str) -> None:
    """What a kubelet and the deployment controller would report; envtest-style tests do the same."""
    deployment = wait_for(lambda: _read(apps, namespace, name), timeout=30, what=f"Deployment {namespace}/{name}")
    replicas = deployment.spec.replicas
    apps.patch_namespaced_deployment_status(
        name,
        namespace,
        {
            "status": {
                "observedGeneration": deployment.metadata.generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
        },
    )


def _read(apps: kubernetes.client.AppsV1Api, namespace: str, name: str):
    try:
        return apps.read_namespaced_deployment(name, namespace)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise
