"""The primary's routing: taken over by the builtin router, restored exactly on deletion."""

from __future__ import annotations

import time

import pytest

from .conftest import condition, get_json, mark_available, shadow_deployment, status_of, wait_phase
from .harness import apply_yaml, wait_for
from .test_errors import _deployment, _service

pytestmark = pytest.mark.cluster


def _builtin_with_existing_primary(namespace: str) -> dict:
    spec = shadow_deployment("recommender")["spec"]
    spec["primary"] = {"deploymentRef": {"name": "recommender-v1"}}
    spec["service"] = {"name": "recommender-v1", "port": 80}
    spec["traffic"] = {"router": "builtin", "mirrorPercent": 50, "candidateTimeout": "2s", "maxInFlight": 256}
    return shadow_deployment("recommender", spec)


def test_builtin_router_takes_over_the_service_and_deletion_restores_it(cluster, operator, apps, namespace):
    apply_yaml(cluster, [_deployment("recommender-v1"), _service("recommender-v1")], namespace)
    service_before = get_json(cluster, namespace, "service", "recommender-v1")
    primary_before = get_json(cluster, namespace, "deployment", "recommender-v1")
    apply_yaml(cluster, [_builtin_with_existing_primary(namespace)], namespace)
    wait_for(lambda: get_json(cluster, namespace, "deployment", "recommender-router"), what="router Deployment")
    wait_for(
        lambda: (
            condition(status_of(cluster, namespace, "recommender"), "RouterAvailable").get("reason") == "RouterStarting"
        ),
        what="RouterAvailable False (RouterStarting)",
    )
    assert get_json(cluster, namespace, "service", "recommender-v1")["spec"] == service_before["spec"], (
        "no switch before a router Pod is available"
    )
    mark_available(apps, namespace, "recommender-router")

    switched = wait_for(
        lambda: (
            (s := get_json(cluster, namespace, "service", "recommender-v1"))["spec"]["selector"]
            == {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "router"}
            and s
        ),
        what="the Service switched to the router",
    )
    assert switched["spec"]["ports"][0]["targetPort"] == 8080
    assert switched["spec"]["clusterIP"] == service_before["spec"]["clusterIP"], "clients keep the same address"
    # The router reaches the primary through a Service with the Service's original selector.
    to_primary = get_json(cluster, namespace, "service", "recommender-primary")
    assert to_primary["spec"]["selector"] == {"app": "recommender-v1"}
    assert to_primary["spec"]["ports"][0]["targetPort"] == 8080
    config = get_json(cluster, namespace, "configmap", "recommender-router")["data"]["router.json"]
    assert f'"primary": "http://recommender-primary.{namespace}.svc.cluster.local:80"' in config

    for deployment in ("recommender-v1", "recommender-candidate", "recommender-router"):
        mark_available(apps, namespace, deployment)
    status = wait_phase(cluster, namespace, "recommender", "Shadowing")
    assert status["mirror"] == {"state": "Active", "router": "builtin", "percent": 50, "host": "recommender-v1"}

    cluster.kubectl("-n", namespace, "delete", "shadowdeployment", "recommender", "--timeout=30s")
    service_after = get_json(cluster, namespace, "service", "recommender-v1")
    assert service_after["spec"] == service_before["spec"]
    assert "shadow.mlops.dev/original-routing" not in (service_after["metadata"].get("annotations") or {})
    primary_after = get_json(cluster, namespace, "deployment", "recommender-v1")
    assert primary_after["spec"] == primary_before["spec"]
    assert primary_after["metadata"]["generation"] == primary_before["metadata"]["generation"]
    # Owned children are collected by the garbage collector.
    for kind, name in [("deployment", "recommender-router"), ("deployment", "recommender-candidate"),
                       ("service", "recommender-primary"), ("configmap", "recommender-router")]:  # fmt: skip
        wait_for(
            lambda kind=kind, name=name: get_json(cluster, namespace, kind, name) is None,
            timeout=90,  # the controller manager's garbage collector, on a loaded 2-core machine
            what=f"{kind} {name} collected",
        )


def _router_lost_its_pods(apps, namespace: str) -> None:
    deployment = apps.read_namespaced_deployment("recommender-router", namespace)
    apps.patch_namespaced_deployment_status(
        "recommender-router",
        namespace,
        {"status": {"observedGeneration": deployment.metadata.generation, "availableReplicas": 0, "readyReplicas": 0}},
    )


def test_a_router_without_pods_gives_the_service_back_to_the_primary_after_the_grace_period(
    cluster, operator, apps, namespace
):
    apply_yaml(cluster, [_deployment("recommender-v1"), _service("recommender-v1")], namespace)
    service_before = get_json(cluster, namespace, "service", "recommender-v1")
    body = _builtin_with_existing_primary(namespace)
    # Long enough that polling under load cannot miss the RouterUnavailable window (3 s did, once).
    body["spec"]["traffic"]["routerGracePeriod"] = "10s"
    apply_yaml(cluster, [body], namespace)
    for deployment in ("recommender-v1", "recommender-candidate", "recommender-router"):
        mark_available(apps, namespace, deployment)
    router_selector = {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "router"}
    wait_for(
        lambda: get_json(cluster, namespace, "service", "recommender-v1")["spec"]["selector"] == router_selector,
        what="the Service switched to the router",
    )

    _router_lost_its_pods(apps, namespace)
    lost = time.monotonic()
    wait_for(
        lambda: (
            condition(status_of(cluster, namespace, "recommender"), "RouterAvailable").get("reason")
            == "RouterUnavailable"
        ),
        what="RouterUnavailable within the grace period",
    )
    assert get_json(cluster, namespace, "service", "recommender-v1")["spec"]["selector"] == router_selector
    # Restored by the operator's own recheck when the grace period runs out, not by the periodic resync.
    restored = wait_for(
        lambda: (
            (s := get_json(cluster, namespace, "service", "recommender-v1"))["spec"] == service_before["spec"] and s
        ),
        timeout=30,
        what="the Service back on the primary",
    )
    assert "shadow.mlops.dev/original-routing" not in (restored["metadata"].get("annotations") or {})
    # Conditions keep whole seconds, so the grace period can run out up to 1 s early (9.94 s seen).
    assert time.monotonic() - lost >= 10 - 1
    ready = condition(status_of(cluster, namespace, "recommender"), "RouterAvailable")
    assert (ready["status"], ready["reason"]) == ("False", "RoutedToPrimary")
    events = cluster.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
    assert "RouterUnavailable" in events and "RoutedToPrimary" in events

    mark_available(apps, namespace, "recommender-router")
    wait_for(
        lambda: get_json(cluster, namespace, "service", "recommender-v1")["spec"]["selector"] == router_selector,
        what="the Service switched to the router again",
    )


def test_switching_router_mode_replaces_the_route(cluster, operator, namespace):
    apply_yaml(cluster, [_deployment("recommender-v1"), _service("recommender-v1")], namespace)
    apply_yaml(cluster, [_builtin_with_existing_primary(namespace)], namespace)
    wait_for(lambda: get_json(cluster, namespace, "deployment", "recommender-router"), what="router Deployment")

    cluster.kubectl(
        "-n", namespace, "patch", "shadowdeployment", "recommender", "--type", "merge",
        "-p", '{"spec": {"traffic": {"router": "istio"}}}',
    )  # fmt: skip
    wait_for(lambda: get_json(cluster, namespace, "virtualservice", "recommender"), what="the VirtualService")
    wait_for(lambda: get_json(cluster, namespace, "deployment", "recommender-router") is None, what="router removed")
    service = get_json(cluster, namespace, "service", "recommender-v1")
    assert service["spec"]["selector"] == {"app": "recommender-v1"}, "istio mode leaves the Service as it was"
    assert get_json(cluster, namespace, "configmap", "recommender-router") is None
    # The builtin router's way to the primary is gone; mirrored copies now go through the candidate's recorder.
    wait_for(
        lambda: get_json(cluster, namespace, "service", "recommender-primary") is None, what="primary Service removed"
    )
    candidate = get_json(cluster, namespace, "service", "recommender-candidate")
    assert candidate["spec"]["ports"][0]["targetPort"] == RECORDER_PORT
    assert _containers(get_json(cluster, namespace, "deployment", "recommender-candidate")) == ["model", "recorder"]


RECORDER_PORT = 8480
PRIMARY_SELECTOR = {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "primary"}


def _containers(deployment: dict) -> list[str]:
    return [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]


def _recorder(deployment: dict) -> dict:
    [recorder] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "recorder"]
    return recorder


def test_istio_mode_records_both_models_through_recorder_sidecars(cluster, operator, apps, namespace):
    apply_yaml(cluster, [shadow_deployment("recommender")], namespace)
    route = wait_for(
        lambda: (vs := get_json(cluster, namespace, "virtualservice", "recommender")) and vs["spec"]["http"][0],
        what="the VirtualService",
    )
    # Live traffic reaches the primary through its recorder; the copy reaches the candidate through its own.
    assert route["route"][0]["destination"]["host"] == f"recommender-primary.{namespace}.svc.cluster.local"
    assert route["mirror"]["host"] == f"recommender-candidate.{namespace}.svc.cluster.local"
    primary_service = get_json(cluster, namespace, "service", "recommender-primary")
    assert primary_service["spec"]["selector"] == PRIMARY_SELECTOR
    assert primary_service["spec"]["ports"][0]["targetPort"] == RECORDER_PORT
    assert get_json(cluster, namespace, "service", "recommender-candidate")["spec"]["ports"][0]["targetPort"] == (
        RECORDER_PORT
    )
    # The Service clients call still reaches the model directly (the route, not the Service, adds the recorder).
    assert get_json(cluster, namespace, "service", "recommender")["spec"]["ports"][0]["targetPort"] == 8080

    for role in ("primary", "candidate"):
        deployment = get_json(cluster, namespace, "deployment", f"recommender-{role}")
        assert _containers(deployment) == ["model", "recorder"]
        args = _recorder(deployment)["args"]
        assert args[args.index("--role") + 1] == role
        assert args[args.index("--upstream") + 1] == "http://127.0.0.1:8080"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["shadow-recorder-config"]["configMap"]["name"] == "recommender-recorder"
    config = get_json(cluster, namespace, "configmap", "recommender-recorder")["data"]["recorder.json"]
    assert '"name": "recommender"' in config

    for deployment in ("recommender-primary", "recommender-candidate"):
        mark_available(apps, namespace, deployment)
    status = wait_phase(cluster, namespace, "recommender", "Shadowing")
    assert condition(status, "Mirroring")["message"] == "100% of recommender's requests."

    # Switching to the builtin router: it records the pairs itself, so the sidecars and their config go.
    cluster.kubectl(
        "-n", namespace, "patch", "shadowdeployment", "recommender", "--type", "merge",
        "-p", '{"spec": {"traffic": {"router": "builtin"}}}',
    )  # fmt: skip
    for role in ("primary", "candidate"):
        wait_for(
            lambda role=role: (
                _containers(get_json(cluster, namespace, "deployment", f"recommender-{role}")) == ["model"]
            ),
            what=f"the {role}'s recorder removed",
        )
    wait_for(
        lambda: (
            get_json(cluster, namespace, "service", "recommender-primary")["spec"]["ports"][0]["targetPort"] == 8080
        ),
        what="recommender-primary reaching the model directly",
    )
    wait_for(lambda: get_json(cluster, namespace, "configmap", "recommender-recorder") is None, what="config removed")
    assert get_json(cluster, namespace, "virtualservice", "recommender") is None


def test_istio_mode_with_an_existing_primary_records_the_candidate_and_leaves_the_primary_alone(
    cluster, operator, apps, namespace
):
    apply_yaml(cluster, [_deployment("recommender-v1"), _service("recommender-v1")], namespace)
    primary_before = get_json(cluster, namespace, "deployment", "recommender-v1")
    spec = shadow_deployment("recommender")["spec"]
    spec["primary"] = {"deploymentRef": {"name": "recommender-v1"}}
    spec["service"] = {"name": "recommender-v1", "port": 80}
    apply_yaml(cluster, [shadow_deployment("recommender", spec)], namespace)

    route = wait_for(
        lambda: (vs := get_json(cluster, namespace, "virtualservice", "recommender")) and vs["spec"]["http"][0],
        what="the VirtualService",
    )
    assert route["route"][0]["destination"]["host"] == f"recommender-v1.{namespace}.svc.cluster.local"
    assert get_json(cluster, namespace, "service", "recommender-primary") is None
    assert _containers(get_json(cluster, namespace, "deployment", "recommender-candidate")) == ["model", "recorder"]

    for deployment in ("recommender-v1", "recommender-candidate"):
        mark_available(apps, namespace, deployment)
    status = wait_phase(cluster, namespace, "recommender", "Shadowing")
    message = condition(status, "Mirroring")["message"]
    assert "Deployment recommender-v1 (primary) has no recorder sidecar" in message, message
    primary_after = get_json(cluster, namespace, "deployment", "recommender-v1")
    assert primary_after["spec"] == primary_before["spec"]
    assert primary_after["metadata"]["generation"] == primary_before["metadata"]["generation"]


def test_the_api_server_validates_routes_against_istios_schema(cluster, namespace):
    """The Istio CRDs applied in the tests are strict: a malformed mirror is refused."""
    bad = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "bad"},
        "spec": {
            "hosts": ["x"],
            "http": [{"route": [{"destination": {"host": "x"}}], "mirror": {"host": "y"}, "mirrorPercentage": 50}],
        },
    }
    import yaml

    result = cluster.kubectl("-n", namespace, "create", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0
    assert "mirrorPercentage" in result.stderr
