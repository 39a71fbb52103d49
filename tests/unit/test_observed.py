"""Observed facts read from live Service and Deployment bodies."""

from __future__ import annotations

from shadow_operator.controller.observed import ORIGINAL_ROUTING_ANNOTATION, ObservedDeployment, ObservedService

from .factories import deployment_json, make_deployment, make_service, service_json


def test_service_from_body():
    service = ObservedService.from_body(
        service_json(
            selector={"app": "recommender"},
            ports=[{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9090}],
            owner_uids=["uid-1", "uid-2"],
        )
    )
    assert service.name == "recommender"
    assert service.selector == {"app": "recommender"}
    assert [p["port"] for p in service.ports] == [80, 9090]
    assert service.owner_uids == frozenset({"uid-1", "uid-2"})
    assert service.original_routing is None
    assert service.resource_version == "4711"
    assert service.has_annotations is False


def test_service_port_lookup_and_target_port():
    service = make_service(ports=[{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9090}])
    assert service.port(80) == {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    assert service.port(81) is None
    assert service.serving_target_port(80) == 8080
    assert service.serving_target_port(9090) == 9090  # targetPort defaults to the port
    assert service.serving_target_port(81) is None
    assert service.serving_selector() == {"app": "recommender"}


def test_switched_service_serves_through_its_remembered_routing():
    service = make_service(
        selector={"shadow.mlops.dev/role": "router"},
        original_routing={"owner": "recommender", "selector": {"app": "recommender"}, "targetPort": "web"},
    )
    assert service.has_annotations is True
    assert service.original_routing == {"owner": "recommender", "selector": {"app": "recommender"}, "targetPort": "web"}
    assert service.serving_selector() == {"app": "recommender"}
    assert service.serving_target_port(80) == "web"


def test_unreadable_routing_annotation_counts_as_none():
    body = service_json(annotations={ORIGINAL_ROUTING_ANNOTATION: "{not json"})
    service = ObservedService.from_body(body)
    assert service.original_routing is None
    assert service.has_annotations is True


def test_service_without_selector_or_ports():
    body = service_json(selector=None, ports=[])
    del body["spec"]["ports"]
    service = ObservedService.from_body(body)
    assert (service.selector, service.ports, service.serving_selector()) == (None, [], None)


def test_deployment_from_body():
    deployment = ObservedDeployment.from_body(
        deployment_json("recsys", pod_labels={"app": "recommender", "track": "stable"}, replicas=3, available=2)
    )
    assert deployment.name == "recsys"
    assert (deployment.generation, deployment.observed_generation) == (2, 2)
    assert (deployment.replicas, deployment.available_replicas, deployment.updated_replicas) == (3, 2, 3)
    assert deployment.pod_labels == {"app": "recommender", "track": "stable"}
    assert deployment.images == ("registry.example/recsys:1.4.2",)
    assert deployment.available is False
    assert deployment.availability() == "2/3 replicas available"


def test_deployment_availability():
    assert make_deployment().available
    assert not make_deployment(available=2).available
    assert not make_deployment(updated=2).available
    assert not make_deployment(generation=5, observed_generation=4).available
    assert make_deployment(replicas=0, available=0, updated=0).available


def test_new_deployment_without_status():
    body = deployment_json("fresh", replicas=2)
    del body["status"]
    deployment = ObservedDeployment.from_body(body)
    assert (deployment.observed_generation, deployment.available_replicas) == (0, 0)
    assert not deployment.available
    assert deployment.availability() == "0/2 replicas available"


def test_replicas_default_to_one():
    body = deployment_json("one")
    del body["spec"]["replicas"]
    assert ObservedDeployment.from_body(body).replicas == 1


def test_a_deployment_is_not_available_while_an_older_replicaset_still_has_pods():
    """As `kubectl rollout status`: the previous candidate's Pods answer until they are gone."""
    body = deployment_json("recommender-candidate", replicas=2)
    body["status"].update(
        replicas=4, updatedReplicas=2, availableReplicas=4
    )  # new RS ready, old one not yet scaled down
    assert not ObservedDeployment.from_body(body).available
    body["status"].update(replicas=2, availableReplicas=2)
    assert ObservedDeployment.from_body(body).available
