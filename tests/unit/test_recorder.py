"""Istio mode's capture points: recorder sidecars, the Services that reach them, and what is refused."""

from __future__ import annotations

import json

import pytest

from shadow_operator.contract import reasons
from shadow_operator.controller.builders import desired_state
from shadow_operator.controller.builders.recorder import primary_capture_gap
from shadow_operator.controller.observed import Observed, ObservedDeployment
from shadow_operator.controller.progress import Outcome, compute_status
from shadow_operator.controller.validation import validate
from shadow_operator.router.config import build_config

from .factories import NOW, REFERENCED_PRIMARY, deployment_json, make_deployment, make_sd, make_service
from .test_builders import IMAGE, _child, _container, _keys

BUILTIN = {"traffic": {"router": "builtin"}}
PRIMARY_LABELS = {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "primary"}
CANDIDATE_LABELS = {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "candidate"}


def _state(overrides=None, observed=None):
    return desired_state(make_sd(overrides or {}), observed or Observed(), IMAGE)


def _referenced():
    return _state(REFERENCED_PRIMARY, Observed(service=make_service(), primary_ref=make_deployment()))


def _pod(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


# -- the sidecar -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["primary", "candidate"])
def test_every_model_the_operator_runs_gets_a_recorder(role):
    sd_overrides = {role: {"port": 9000}}
    deployment = _child(_state(sd_overrides), "Deployment", f"recommender-{role}")
    assert [c["name"] for c in _pod(deployment)["containers"]] == ["model", "recorder"]
    recorder = _container(deployment, "recorder")
    assert recorder["image"] == IMAGE
    # Only the candidate's recorder names the candidate's image (in its records); the primary's Pods
    # must not roll when the candidate changes.
    image_args = ["--candidate-image", "registry.example/recsys:2.0.0"] if role == "candidate" else []
    assert recorder["args"] == [
        "recorder", "--config", "/etc/shadow-operator/recorder.json", "--role", role, *image_args,
        "--upstream", "http://127.0.0.1:9000", "--listen", "0.0.0.0:8480", "--admin-listen", "0.0.0.0:8481",
    ]  # fmt: skip
    assert recorder["ports"] == [
        {"name": "recorder", "containerPort": 8480, "protocol": "TCP"},
        {"name": "recorder-admin", "containerPort": 8481, "protocol": "TCP"},
    ]
    assert recorder["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "recorder-admin"}
    assert recorder["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "recorder-admin"}
    assert recorder["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    assert recorder["securityContext"]["runAsNonRoot"] is True
    assert recorder["securityContext"]["readOnlyRootFilesystem"] is True
    assert recorder["volumeMounts"] == [
        {"name": "shadow-recorder-config", "mountPath": "/etc/shadow-operator", "readOnly": True},
        {"name": "shadow-records", "mountPath": "/var/lib/shadow/records"},
    ]
    assert _pod(deployment)["volumes"] == [
        {"name": "shadow-recorder-config", "configMap": {"name": "recommender-recorder"}},
        {"name": "shadow-records", "emptyDir": {"sizeLimit": "640Mi"}},
    ]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", "8481")
    # The model container itself is as the spec gives it.
    assert _container(deployment)["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]


def test_recorder_spools_in_an_emptydir_whatever_the_sink_volume():
    """The sink volume is the collector's; the recorder ships from a local emptyDir bounded like the router's
    spool, and the user's Pod securityContext is kept (within Pod Security restricted)."""
    sink = {"path": "/data", "volume": {"persistentVolumeClaim": {"claimName": "shadow-records"}}}
    pod_template = {"spec": {"securityContext": {"runAsUser": 1000}}}
    state = _state({"recording": {"sink": sink}, "candidate": {"podTemplate": pod_template}})
    deployment = _child(state, "Deployment", "recommender-candidate")
    assert {"name": "shadow-records", "emptyDir": {"sizeLimit": "640Mi"}} in _pod(deployment)["volumes"]
    assert {"name": "shadow-records", "mountPath": "/data"} in _container(deployment, "recorder")["volumeMounts"]
    assert _pod(deployment)["securityContext"] == {
        "runAsUser": 1000,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    config = json.loads(_child(state, "ConfigMap", "recommender-recorder")["data"]["recorder.json"])
    assert config["collector"] == "http://recommender-collector.default.svc.cluster.local:8090"


def test_user_annotations_stay_but_the_recorder_is_what_prometheus_scrapes():
    pod_template = {"metadata": {"annotations": {"team": "recsys", "prometheus.io/port": "9100"}}}
    deployment = _child(_state({"primary": {"podTemplate": pod_template}}), "Deployment", "recommender-primary")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["team"] == "recsys"
    assert annotations["prometheus.io/port"] == "8481"


def test_builtin_mode_has_no_recorders_and_the_services_reach_the_models():
    state = _state(BUILTIN)
    for role in ("primary", "candidate"):
        deployment = _child(state, "Deployment", f"recommender-{role}")
        assert [c["name"] for c in _pod(deployment)["containers"]] == ["model"]
        assert "volumes" not in _pod(deployment)
        assert _child(state, "Service", f"recommender-{role}")["spec"]["ports"][0]["targetPort"] == 8080
    assert ("ConfigMap", "recommender-recorder") not in _keys(state)


# -- the config -----------------------------------------------------------------------------------------


def test_recorder_config_is_the_routers_wire_form_without_what_a_recorder_ignores():
    config_text = _child(_state(), "ConfigMap", "recommender-recorder")["data"]["recorder.json"]
    config = json.loads(config_text)
    assert set(config) == {"name", "namespace", "recording", "collector"}
    assert config["recording"]["features"] == ["$.features.purchase_count", "$.features.last_seen_days"]
    # What `shadowctl recorder --config ... --upstream ... --role ...` builds from it.
    runtime = build_config(config, upstream="http://127.0.0.1:8080", role="candidate")
    assert (runtime.shadow, runtime.role, runtime.primary.url) == (
        "default/recommender",
        "candidate",
        "http://127.0.0.1:8080",
    )
    assert runtime.records_dir == "/var/lib/shadow/records"


def _config_hash(overrides, role="primary") -> str:
    deployment = _child(_state(overrides), "Deployment", f"recommender-{role}")
    return deployment["spec"]["template"]["metadata"]["annotations"]["shadow.mlops.dev/config-hash"]


def test_a_recording_change_rolls_the_recorders_a_mirror_change_does_not():
    assert _config_hash({}) == _config_hash({}, "candidate")
    assert _config_hash({"recording": {"sampleRate": 0.5}}) != _config_hash({})
    # Changing the mirrored share must not restart the Pods that serve users.
    assert _config_hash({"traffic": {"mirrorPercent": 10, "maxInFlight": 8}}) == _config_hash({})


# -- capture points -----------------------------------------------------------------------------------------


def test_primary_the_operator_runs_is_reached_through_its_recorder():
    state = _state()
    service = _child(state, "Service", "recommender-primary")
    assert service["spec"]["selector"] == PRIMARY_LABELS
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8480, "protocol": "TCP"}]
    candidate = _child(state, "Service", "recommender-candidate")
    assert candidate["spec"]["selector"] == CANDIDATE_LABELS
    assert candidate["spec"]["ports"][0]["targetPort"] == 8480
    route, _ = _child(state, "VirtualService", "recommender")["spec"]["http"]
    assert route["route"][0]["destination"]["host"] == "recommender-primary.default.svc.cluster.local"
    assert route["mirror"]["host"] == "recommender-candidate.default.svc.cluster.local"


def test_a_user_service_in_front_of_the_managed_primary_is_still_routed_through_the_recorder():
    state = _state({}, Observed(service=make_service()))
    assert ("Service", "recommender") not in _keys(state)
    route, _ = _child(state, "VirtualService", "recommender")["spec"]["http"]
    assert route["route"][0]["destination"]["host"] == "recommender-primary.default.svc.cluster.local"


def test_referenced_primary_keeps_the_live_route_on_the_client_service():
    state = _referenced()
    keys = _keys(state)
    assert ("Service", "recommender-primary") not in keys
    assert [name for kind, name in keys if kind == "Deployment"] == ["recommender-candidate", "recommender-collector"]
    route, _ = _child(state, "VirtualService", "recommender")["spec"]["http"]
    assert route["route"][0]["destination"]["host"] == "recommender.default.svc.cluster.local"
    # The candidate is still the operator's: it is recorded, and its recorder needs the config.
    assert "recorder" in [c["name"] for c in _pod(_child(state, "Deployment", "recommender-candidate"))["containers"]]
    assert ("ConfigMap", "recommender-recorder") in keys


# -- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [8480, 8481])
@pytest.mark.parametrize("role", ["primary", "candidate"])
def test_a_model_on_a_recorder_port_is_refused(role, port):
    [problem] = validate(make_sd({role: {"port": port}}), Observed())
    assert problem.reason == reasons.INVALID_SPEC
    assert problem.message.startswith(f"spec.{role}.port: {port} is taken by the recorder sidecar")
    assert "serve the model on another port" in problem.message


def test_recorder_ports_are_free_where_no_recorder_is_added():
    assert validate(make_sd({**BUILTIN, "candidate": {"port": 8480}, "primary": {"port": 8481}}), Observed()) == []
    # A referenced primary's port is its own business: the operator adds nothing to its Pods.
    observed = Observed(service=make_service(), primary_ref=make_deployment())
    assert (
        validate(make_sd({"primary": {"image": None, "deploymentRef": {"name": "recsys"}, "port": 8480}}), observed)
        == []
    )


def test_pod_template_entries_named_like_the_recorders_are_refused():
    pod_template = {
        "spec": {
            "containers": [{"name": "log-shipper", "image": "fluent-bit:3"}, {"name": "recorder", "image": "x"}],
            "volumes": [{"name": "shadow-records", "emptyDir": {}}],
        }
    }
    problems = validate(make_sd({"candidate": {"podTemplate": pod_template}}), Observed())
    assert [p.message.split(":")[0] for p in problems] == [
        "spec.candidate.podTemplate.spec.containers[1].name",
        "spec.candidate.podTemplate.spec.volumes[0].name",
    ]
    assert all(p.reason == reasons.INVALID_SPEC and p.message.endswith("rename it.") for p in problems)
    assert validate(make_sd({**BUILTIN, "candidate": {"podTemplate": pod_template}}), Observed()) == []


# -- a primary the operator does not run ----------------------------------------------------------------------


def _gap(overrides=REFERENCED_PRIMARY, containers=("model",), target_port=8080) -> str | None:
    body = deployment_json()
    body["spec"]["template"]["spec"]["containers"] = [{"name": name, "image": IMAGE} for name in containers]
    service = make_service(ports=[{"name": "http", "port": 80, "targetPort": target_port}])
    return primary_capture_gap(
        make_sd(overrides), Observed(service=service, primary_ref=ObservedDeployment.from_body(body))
    )


def test_a_referenced_primary_without_the_sidecar_is_said_to_be_unrecorded():
    gap = _gap()
    assert gap is not None
    assert gap.startswith("Deployment recsys (primary) has no recorder sidecar")
    assert gap.endswith("add the sidecar as docs/istio-recorder.md shows.")


def test_a_sidecar_the_service_does_not_reach_is_said_to_be_unrecorded():
    gap = _gap(containers=("model", "recorder"), target_port=8080)
    assert gap is not None
    assert gap.startswith("Service recommender's port 80 targets 8080, not the recorder sidecar of Deployment recsys")
    assert "set that targetPort to 8480" in gap


@pytest.mark.parametrize("target_port", [8480, "recorder"])
def test_a_referenced_primary_with_a_reachable_sidecar_is_recorded(target_port):
    assert _gap(containers=("model", "recorder"), target_port=target_port) is None


def test_no_gap_where_the_operator_records_the_primary():
    assert _gap({}) is None
    assert _gap({**BUILTIN, **REFERENCED_PRIMARY}) is None


def _mirroring_message(outcome: Outcome) -> str:
    status = compute_status(make_sd(REFERENCED_PRIMARY), outcome, NOW)
    [mirroring] = [c for c in status.conditions if c.type == reasons.MIRRORING]
    assert (mirroring.status, mirroring.reason) == ("True", reasons.MIRROR_ACTIVE)
    return mirroring.message


def test_the_gap_is_told_in_the_mirroring_condition():
    primary, candidate = make_deployment(), make_deployment(name="recommender-candidate", replicas=1)
    deployments = (("primary", primary.name, primary), ("candidate", candidate.name, candidate))
    assert _mirroring_message(Outcome(deployments=deployments)) == "100% of recommender's requests."
    gap = _gap()
    assert _mirroring_message(Outcome(deployments=deployments, capture_gap=gap)) == (
        f"100% of recommender's requests. {gap}"
    )
