"""Small factories shared by the unit tests: bodies as the API server would hand them over."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import yaml

from shadow_operator.contract.resource import ShadowDeployment, parse
from shadow_operator.controller.observed import (
    ALLOW_ADOPTION_ANNOTATION,
    ORIGINAL_ROUTING_ANNOTATION,
    ObservedDeployment,
    ObservedService,
)

# The contract example, exactly as documented for a ShadowDeployment named `recommender`.
CONTRACT_YAML = """\
apiVersion: shadow.mlops.dev/v1alpha1
kind: ShadowDeployment
metadata:
  name: recommender
  namespace: default
spec:
  service: {name: recommender, port: 80}
  primary: {image: registry.example/recsys:1.4.2, replicas: 3, port: 8080}
  candidate: {image: registry.example/recsys:2.0.0, replicas: 1, port: 8080}
  traffic: {router: istio, mirrorPercent: 100}
  recording:
    predictionPath: $.prediction
    segments:
      - {name: history, path: $.features.purchase_count}
    features: [$.features.purchase_count, $.features.last_seen_days]
    sampleRate: 1.0
  analysis:
    interval: 10m
    minDuration: 168h
    minSamples: 1000
    prometheus: {url: "http://prometheus.monitoring:9090"}
    thresholds:
      latencyRatio: {p50: 1.2, p95: 1.3, p99: 1.5}
      maxErrorRate: 0.001
      minAgreement: 0.95
      maxFeatureMissingRate: 0.01
"""

CONTRACT_DOCUMENT: dict[str, Any] = yaml.safe_load(CONTRACT_YAML)

# A fixed clock for everything time-dependent.
NOW = datetime(2025, 3, 3, 12, 0, 0, tzinfo=UTC)

# Marks a key to remove in `deep_merge` (e.g. primary.image when switching to deploymentRef).
DELETE = object()


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in: maps merge recursively, DELETE removes a key, other values replace."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is DELETE:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def contract_spec() -> dict[str, Any]:
    return copy.deepcopy(CONTRACT_DOCUMENT["spec"])


def sd_body(
    spec_overrides: Mapping[str, Any] | None = None,
    *,
    uid: str = "uid-1",
    generation: int = 1,
    name: str = "recommender",
    namespace: str = "default",
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "shadow.mlops.dev/v1alpha1",
        "kind": "ShadowDeployment",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": generation},
        "spec": deep_merge(contract_spec(), spec_overrides or {}),
    }
    if status is not None:
        body["status"] = copy.deepcopy(dict(status))
    return body


def make_sd(spec_overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> ShadowDeployment:
    """The contract ShadowDeployment with `spec_overrides` deep-merged in, parsed as the operator does."""
    return parse(sd_body(spec_overrides, **kwargs))


# deploymentRef instead of an image: the usual production shape.
REFERENCED_PRIMARY = {"primary": {"image": DELETE, "deploymentRef": {"name": "recsys"}}}


def service_json(
    name: str = "recommender",
    *,
    selector: Mapping[str, str] | None = None,
    ports: Iterable[Mapping[str, Any]] | None = None,
    owner_uids: Iterable[str] = (),
    original_routing: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Service as `kubectl get -o json` shows it, server-populated fields included."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "uid": f"svc-{name}",
        "resourceVersion": "4711",
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "labels": {"app": name},
    }
    all_annotations = dict(annotations or {})
    if original_routing is not None:
        all_annotations[ORIGINAL_ROUTING_ANNOTATION] = json.dumps(dict(original_routing), sort_keys=True)
    if all_annotations:
        metadata["annotations"] = all_annotations
    owners = list(owner_uids)
    if owners:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "shadow.mlops.dev/v1alpha1",
                "kind": "ShadowDeployment",
                "name": "recommender",
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
            for uid in owners
        ]
    spec: dict[str, Any] = {
        "clusterIP": "10.96.12.34",
        "clusterIPs": ["10.96.12.34"],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ports": [
            dict(p) for p in (ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}])
        ],
    }
    for port in spec["ports"]:
        port.setdefault("protocol", "TCP")
    if selector is not None:
        spec["selector"] = dict(selector)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec, "status": {"loadBalancer": {}}}


def make_service(*args: Any, adoptable: bool = True, **kwargs: Any) -> ObservedService:
    """An existing Service; `adoptable`: it opted in to a managed primary (ALLOW_ADOPTION_ANNOTATION), as
    every Service an operator-run primary goes behind must."""
    kwargs.setdefault("selector", {"app": "recommender"})
    if adoptable:
        kwargs["annotations"] = {ALLOW_ADOPTION_ANNOTATION: "true", **(kwargs.get("annotations") or {})}
    return ObservedService.from_body(service_json(*args, **kwargs))


def deployment_json(
    name: str = "recsys",
    *,
    pod_labels: Mapping[str, str] | None = None,
    replicas: int = 3,
    available: int | None = None,
    updated: int | None = None,
    generation: int = 2,
    observed_generation: int | None = None,
    image: str = "registry.example/recsys:1.4.2",
) -> dict[str, Any]:
    """A Deployment as `kubectl get -o json` shows it; fully rolled out unless told otherwise."""
    labels = dict(pod_labels if pod_labels is not None else {"app": "recommender"})
    available = replicas if available is None else available
    updated = replicas if updated is None else updated
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"deploy-{name}",
            "generation": generation,
            "resourceVersion": "815",
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "model", "image": image, "ports": [{"containerPort": 8080}]}],
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {
            "observedGeneration": generation if observed_generation is None else observed_generation,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
        },
    }


def make_deployment(*args: Any, **kwargs: Any) -> ObservedDeployment:
    return ObservedDeployment.from_body(deployment_json(*args, **kwargs))
