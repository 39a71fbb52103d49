"""shadow.mlops.dev/v1alpha1 models: the contract example, defaults, round trips and refusals."""

from __future__ import annotations

import pytest

from shadow_operator.api.v1alpha1 import (
    AnalysisSpec,
    RecordingSpec,
    ShadowDeploymentSpec,
    ShadowDeploymentStatus,
    TrafficSpec,
)
from shadow_operator.contract.resource import SpecInvalid, parse

from .factories import CONTRACT_DOCUMENT, DELETE, REFERENCED_PRIMARY, contract_spec, make_sd, sd_body


def test_contract_example_parses_as_written():
    sd = parse(CONTRACT_DOCUMENT)
    spec = sd.spec

    assert (sd.name, sd.namespace) == ("recommender", "default")
    assert (spec.service.name, spec.service.port) == ("recommender", 80)
    assert spec.primary.image == "registry.example/recsys:1.4.2"
    assert spec.primary.deployment_ref is None
    assert (spec.primary.replicas, spec.primary.port) == (3, 8080)
    assert spec.candidate.image == "registry.example/recsys:2.0.0"
    assert (spec.candidate.replicas, spec.candidate.port) == (1, 8080)
    assert spec.traffic.router == "istio"
    assert spec.traffic.mirror_percent == 100

    recording = spec.recording
    assert recording.prediction_path == "$.prediction"
    assert [(s.name, s.path, s.source) for s in recording.segments] == [
        ("history", "$.features.purchase_count", "request")
    ]
    assert recording.features == ["$.features.purchase_count", "$.features.last_seen_days"]
    assert recording.sample_rate == 1.0

    analysis = spec.analysis
    assert (analysis.interval, analysis.min_duration, analysis.min_samples) == ("10m", "168h", 1000)
    assert analysis.prometheus is not None
    assert analysis.prometheus.url == "http://prometheus.monitoring:9090"
    ratio = analysis.thresholds.latency_ratio
    assert ratio is not None
    assert (ratio.p50, ratio.p95, ratio.p99) == (1.2, 1.3, 1.5)
    assert analysis.thresholds.max_error_rate == 0.001
    assert analysis.thresholds.min_agreement == 0.95
    assert analysis.thresholds.max_feature_missing_rate == 0.01


def test_contract_example_without_status_has_an_empty_pending_status():
    sd = parse(CONTRACT_DOCUMENT)
    assert sd.status == ShadowDeploymentStatus()
    assert sd.status.phase.value == "Pending"


def test_identity_comes_from_metadata():
    sd = make_sd(uid="abc-123", generation=7, namespace="ml")
    assert (sd.identity.uid, sd.identity.generation, sd.identity.namespace) == ("abc-123", 7, "ml")
    assert sd.identity.owner_reference() == {
        "apiVersion": "shadow.mlops.dev/v1alpha1",
        "kind": "ShadowDeployment",
        "name": "recommender",
        "uid": "abc-123",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_to_wire_uses_camel_case_and_leaves_out_unset_optionals():
    wire = parse(CONTRACT_DOCUMENT).spec.to_wire()
    assert wire["traffic"]["mirrorPercent"] == 100
    assert wire["recording"]["predictionPath"] == "$.prediction"
    assert wire["analysis"]["minDuration"] == "168h"
    assert wire["analysis"]["thresholds"]["latencyRatio"] == {"p50": 1.2, "p95": 1.3, "p99": 1.5}
    assert "deploymentRef" not in wire["primary"]
    assert "maxAbsDiff" not in wire["analysis"]["thresholds"]
    assert not any("_" in key for key in _all_keys(wire) - {"purchase_count"})


def _all_keys(node) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for value in node.values() for k in _all_keys(value)}
    if isinstance(node, list):
        return {k for item in node for k in _all_keys(item)}
    return set()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        REFERENCED_PRIMARY,
        {
            "traffic": {"router": "builtin", "mirrorPercent": 12.5, "candidateTimeout": "1500ms"},
            "primary": {
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}},
                "args": ["--workers", "4"],
                "podTemplate": {"spec": {"nodeSelector": {"pool": "ml"}}},
            },
            "recording": {
                "segments": [
                    {"name": "history", "path": "$.features.purchase_count", "bounds": [1, 100]},
                    {"name": "country", "path": "$.country", "values": ["de", "fr"], "source": "response"},
                ],
                "redact": ["$.user.email"],
                "sink": {"volume": {"persistentVolumeClaim": {"claimName": "shadow-records"}}},
            },
            "analysis": {"thresholds": {"maxAbsDiff": {"mean": 0.1}}},
        },
    ],
    ids=["contract", "deployment-ref", "everything"],
)
def test_to_wire_round_trips(overrides):
    sd = make_sd(overrides)
    again = parse({**sd_body(), "spec": sd.spec.to_wire()})
    assert again == sd
    assert again.spec.to_wire() == sd.spec.to_wire()


def test_status_to_wire_round_trips():
    status = ShadowDeploymentStatus.model_validate(
        {
            "phase": "Shadowing",
            "observedGeneration": 3,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Shadowing", "lastTransitionTime": "2025-01-01T00:00:00Z"}
            ],
            "primary": "registry.example/recsys:1.4.2",
            "candidate": "registry.example/recsys:2.0.0",
            "mirror": {"state": "Active", "router": "istio", "percent": 100, "host": "recommender"},
            "shadowingSince": "2025-01-01T00:00:00Z",
            "coverage": {
                "elapsed": "84h",
                "required": "168h",
                "samples": 12,
                "requiredSamples": 1000,
                "percent": 50,
                "summary": "50% of 168h",
            },
        }
    )
    assert ShadowDeploymentStatus.model_validate(status.to_wire()) == status
    assert status.to_wire()["coverage"]["requiredSamples"] == 1000


def test_defaults():
    spec = ShadowDeploymentSpec.model_validate(
        {
            "service": {"name": "recommender", "port": 80},
            "primary": {"image": "p:1"},
            "candidate": {"image": "c:1"},
        }
    )
    assert spec.traffic == TrafficSpec()
    assert spec.traffic.router == "istio"
    assert spec.traffic.mirror_percent == 100
    assert spec.traffic.candidate_timeout == "2s"
    assert spec.traffic.max_in_flight == 256
    assert spec.traffic.router_replicas == 2
    assert spec.analysis == AnalysisSpec()
    assert spec.analysis.interval == "10m"
    assert spec.analysis.min_duration == "168h"
    assert spec.analysis.min_samples == 1000
    assert spec.recording == RecordingSpec()
    assert spec.recording.prediction_path == "$.prediction"
    assert spec.recording.sample_rate == 1.0
    assert spec.recording.sink.path == "/var/lib/shadow/records"
    assert (spec.primary.replicas, spec.primary.port) == (1, 8080)
    assert (spec.candidate.replicas, spec.candidate.port) == (1, 8080)


def _problems(overrides) -> list[str]:
    with pytest.raises(SpecInvalid) as caught:
        make_sd(overrides)
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


def _only_problem(overrides) -> str:
    problems = _problems(overrides)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"traffic": {"mirrorPercent": 150}}, "spec.traffic.mirrorPercent"),
        ({"traffic": {"mirrorPercent": -1}}, "spec.traffic.mirrorPercent"),
        ({"traffic": {"router": "linkerd"}}, "spec.traffic.router"),
        ({"traffic": {"maxInFlight": 0}}, "spec.traffic.maxInFlight"),
        ({"analysis": {"interval": "10 minutes"}}, "spec.analysis.interval"),
        ({"analysis": {"minDuration": "7d"}}, "spec.analysis.minDuration"),
        ({"traffic": {"candidateTimeout": "2"}}, "spec.traffic.candidateTimeout"),
        ({"recording": {"sampleRate": 1.5}}, "spec.recording.sampleRate"),
        ({"recording": {"predictionPath": "prediction"}}, "spec.recording.predictionPath"),
        ({"recording": {"features": ["$.ok", "no-dollar"]}}, "spec.recording.features[1]"),
        ({"service": {"port": 0}}, "spec.service.port"),
        ({"service": {"name": "Recommender"}}, "spec.service.name"),
        ({"analysis": {"prometheus": {"url": "prometheus:9090"}}}, "spec.analysis.prometheus.url"),
        ({"analysis": {"thresholds": {"maxErrorRate": 2}}}, "spec.analysis.thresholds.maxErrorRate"),
        ({"analysis": {"thresholds": {"latencyRatio": {"p99": 0}}}}, "spec.analysis.thresholds.latencyRatio.p99"),
    ],
)
def test_bad_field_is_named_in_camel_case(overrides, field):
    problem = _only_problem(overrides)
    assert problem.startswith(f"{field}: "), problem


def test_primary_with_both_image_and_deployment_ref_is_refused():
    problem = _only_problem({"primary": {"deploymentRef": {"name": "recsys"}}})
    assert problem.startswith("spec.primary: ")
    assert "exactly one of primary.image or primary.deploymentRef" in problem


def test_primary_with_neither_image_nor_deployment_ref_is_refused():
    problem = _only_problem({"primary": {"image": DELETE}})
    assert problem.startswith("spec.primary: ")
    assert "exactly one of primary.image or primary.deploymentRef" in problem


def test_unknown_field_is_named_and_explained():
    problem = _only_problem({"traffic": {"mirrorPercnt": 50}})
    assert problem.startswith("spec.traffic.mirrorPercnt: unknown field")
    assert "kubectl explain shadowdeployment.spec" in problem


def test_unknown_top_level_field_is_refused():
    assert _only_problem({"shadow": True}).startswith("spec.shadow: unknown field")


def test_snake_case_field_names_are_unknown_on_the_wire():
    # What the operator would run with if it were accepted: mirrorPercent 10 from a key the CRD prunes.
    problem = _only_problem({"traffic": {"mirrorPercent": DELETE, "mirror_percent": 10}})
    assert problem.startswith("spec.traffic.mirror_percent: unknown field")


def test_missing_required_field_is_named():
    spec = contract_spec()
    del spec["candidate"]
    with pytest.raises(SpecInvalid) as caught:
        parse({"metadata": {"name": "recommender"}, "spec": spec})
    assert caught.value.problems == ["spec.candidate: Field required"]


def test_every_problem_is_reported_at_once():
    problems = _problems({"traffic": {"mirrorPercent": 150}, "recording": {"sampleRate": 1.5}})
    assert sorted(p.split(":")[0] for p in problems) == ["spec.recording.sampleRate", "spec.traffic.mirrorPercent"]


def test_segment_bounds_must_ascend():
    problem = _only_problem({"recording": {"segments": [{"name": "h", "path": "$.h", "bounds": [100, 1]}]}})
    assert problem.startswith("spec.recording.segments[0]: ")
    assert "strictly ascending" in problem


def test_segment_bounds_must_not_repeat():
    problem = _only_problem({"recording": {"segments": [{"name": "h", "path": "$.h", "bounds": [1, 1, 5]}]}})
    assert problem.startswith("spec.recording.segments[0]: ")


def test_segment_with_bounds_and_values_is_refused():
    segment = {"name": "h", "path": "$.h", "bounds": [1, 100], "values": ["a"]}
    problem = _only_problem({"recording": {"segments": [{"name": "ok", "path": "$.x"}, segment]}})
    assert problem.startswith("spec.recording.segments[1]: ")
    assert "at most one of bounds or values" in problem


def test_ascending_bounds_are_kept_in_order():
    sd = make_sd({"recording": {"segments": [{"name": "h", "path": "$.h", "bounds": [1, 10, 100]}]}})
    assert sd.spec.recording.segments[0].bounds == [1, 10, 100]


def test_models_are_frozen():
    sd = make_sd()
    with pytest.raises(Exception, match="frozen"):
        sd.spec.traffic.mirror_percent = 5  # type: ignore[misc]


def test_unreadable_stored_status_counts_as_empty():
    sd = make_sd(status={"phase": "Exploded", "conditions": "nope"})
    assert sd.status == ShadowDeploymentStatus()
