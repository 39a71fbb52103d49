"""Pure builders: a ShadowDeployment plus what was observed -> the child objects and the Service switch."""

from __future__ import annotations

import json

import pytest

from shadow_operator.controller.builders import (
    DesiredState,
    ServiceSwitch,
    all_child_keys,
    cron_schedule,
    desired_state,
)
from shadow_operator.controller.observed import Observed

from .factories import REFERENCED_PRIMARY, make_deployment, make_sd, make_service

IMAGE = "registry.example/shadow-operator:0.1.0"
NAME_LABELS = {"shadow.mlops.dev/name": "recommender"}
PRIMARY_LABELS = {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "primary"}
CANDIDATE_LABELS = {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "candidate"}
ROUTER_LABELS = {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "router"}
BUILTIN = {"traffic": {"router": "builtin"}}


def _keys(state: DesiredState) -> list[tuple[str, str]]:
    return [(c["kind"], c["metadata"]["name"]) for c in state.children]


def _child(state: DesiredState, kind: str, name: str) -> dict:
    (found,) = [c for c in state.children if (c["kind"], c["metadata"]["name"]) == (kind, name)]
    return found


def _container(deployment: dict, name: str = "model") -> dict:
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


# -- istio ------------------------------------------------------------------------------------


def test_istio_without_a_service_creates_everything():
    state = desired_state(make_sd(), Observed(), IMAGE)
    keys = _keys(state)
    assert len(keys) == len(set(keys))
    assert set(keys) == {
        ("ConfigMap", "recommender-recorder"),
        ("Deployment", "recommender-candidate"),
        ("Service", "recommender-candidate"),
        ("Deployment", "recommender-primary"),
        ("Service", "recommender-primary"),
        ("Service", "recommender"),
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
    assert state.switch is None
    assert [c["metadata"]["name"] for c in state.children if c["kind"] == "Deployment"] == [
        "recommender-candidate",
        "recommender-primary",
        "recommender-collector",
    ]


@pytest.mark.parametrize(
    ("overrides", "observed"),
    [
        ({}, Observed()),
        (REFERENCED_PRIMARY, Observed(service=make_service(), primary_ref=make_deployment())),
        (BUILTIN, Observed()),
        (BUILTIN, Observed(service=make_service())),
        ({**BUILTIN, **REFERENCED_PRIMARY}, Observed(service=make_service(), primary_ref=make_deployment())),
    ],
    ids=["istio", "istio-deployment-ref", "builtin", "builtin-user-service", "builtin-deployment-ref"],
)
def test_every_child_is_owned_and_labelled(overrides, observed):
    sd = make_sd(overrides, uid="uid-42")
    state = desired_state(sd, observed, IMAGE)
    assert state.children
    for child in state.children:
        metadata = child["metadata"]
        where = f"{child['kind']} {metadata['name']}"
        assert metadata["namespace"] == "default", where
        assert metadata["ownerReferences"] == [
            {
                "apiVersion": "shadow.mlops.dev/v1alpha1",
                "kind": "ShadowDeployment",
                "name": "recommender",
                "uid": "uid-42",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], where
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "shadow-operator", where
        assert metadata["labels"]["shadow.mlops.dev/name"] == "recommender", where
        # Every child is one cleanup can find.
        assert (child["kind"], metadata["name"]) in all_child_keys(sd), where


def test_entry_service_created_in_front_of_the_primary():
    service = _child(desired_state(make_sd(), Observed(), IMAGE), "Service", "recommender")
    assert service["spec"]["selector"] == PRIMARY_LABELS
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]


def test_virtual_service_routes_everything_to_the_primary_recorder_and_mirrors_to_the_candidate():
    vs = _child(desired_state(make_sd(), Observed(), IMAGE), "VirtualService", "recommender")
    assert vs["apiVersion"] == "networking.istio.io/v1beta1"
    assert vs["spec"]["hosts"] == ["recommender.default.svc.cluster.local"]
    # The mirrored methods (POST and GET by default) take the route with the mirror, the rest the last one.
    route, rest = vs["spec"]["http"]
    assert route["match"] == [{"method": {"exact": "POST"}}, {"method": {"exact": "GET"}}]
    assert rest == {"name": "primary", "route": route["route"]}
    # Through `<name>-primary`, whose target is the recorder sidecar in front of the primary.
    assert route["route"] == [
        {
            "destination": {"host": "recommender-primary.default.svc.cluster.local", "port": {"number": 80}},
            "weight": 100,
        }
    ]
    assert route["mirror"] == {
        "host": "recommender-candidate.default.svc.cluster.local",
        "subset": "candidate",
        "port": {"number": 80},
    }
    assert route["mirrorPercentage"] == {"value": 100.0}
    assert isinstance(route["mirrorPercentage"]["value"], float)


def test_partial_mirror_percent():
    vs = _child(
        desired_state(make_sd({"traffic": {"mirrorPercent": 12.5}}), Observed(), IMAGE), "VirtualService", "recommender"
    )
    assert vs["spec"]["http"][0]["mirrorPercentage"] == {"value": 12.5}


def test_mirror_percent_zero_omits_the_mirror():
    vs = _child(
        desired_state(make_sd({"traffic": {"mirrorPercent": 0}}), Observed(), IMAGE), "VirtualService", "recommender"
    )
    (route,) = vs["spec"]["http"]
    assert "mirror" not in route
    assert "mirrorPercentage" not in route
    assert route["route"][0]["weight"] == 100


def test_destination_rule_bounds_the_candidate():
    sd = make_sd({"traffic": {"maxInFlight": 64, "candidateTimeout": "1500ms"}})
    rule = _child(desired_state(sd, Observed(), IMAGE), "DestinationRule", "recommender-candidate")
    assert rule["spec"]["host"] == "recommender-candidate.default.svc.cluster.local"
    pool = rule["spec"]["trafficPolicy"]["connectionPool"]
    assert pool["tcp"] == {"connectTimeout": "1.5s"}
    assert pool["http"] == {"http1MaxPendingRequests": 64, "http2MaxRequests": 64}
    assert rule["spec"]["subsets"] == [{"name": "candidate", "labels": CANDIDATE_LABELS}]


def test_candidate_service_is_its_own_host_and_targets_the_recorder():
    service = _child(desired_state(make_sd(), Observed(), IMAGE), "Service", "recommender-candidate")
    assert service["spec"]["selector"] == CANDIDATE_LABELS
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8480, "protocol": "TCP"}]


def test_istio_with_a_user_service_leaves_it_alone_and_the_primary_keeps_its_labels():
    service = make_service(selector={"app": "recommender", "tier": "model"})
    state = desired_state(make_sd(), Observed(service=service), IMAGE)
    assert ("Service", "recommender") not in _keys(state)
    assert state.switch is None
    primary = _child(state, "Deployment", "recommender-primary")
    # The Service clients call keeps reaching the managed primary.
    assert primary["spec"]["template"]["metadata"]["labels"] == {
        "app": "recommender",
        "tier": "model",
        **PRIMARY_LABELS,
    }
    assert primary["spec"]["selector"] == {"matchLabels": PRIMARY_LABELS}


def test_istio_with_a_service_the_operator_owns_keeps_managing_it():
    service = make_service(owner_uids=["uid-1"])
    state = desired_state(make_sd(uid="uid-1"), Observed(service=service), IMAGE)
    assert ("Service", "recommender") in _keys(state)
    primary = _child(state, "Deployment", "recommender-primary")
    assert primary["spec"]["template"]["metadata"]["labels"] == PRIMARY_LABELS


# -- builtin ------------------------------------------------------------------------------------


def test_builtin_without_a_service():
    state = desired_state(make_sd(BUILTIN), Observed(), IMAGE)
    assert set(_keys(state)) == {
        ("Deployment", "recommender-candidate"),
        ("Service", "recommender-candidate"),
        ("Deployment", "recommender-primary"),
        ("Service", "recommender"),
        ("Service", "recommender-primary"),
        ("ConfigMap", "recommender-router"),
        ("Deployment", "recommender-router"),
        ("Service", "recommender-router"),
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
    assert state.switch is None
    entry = _child(state, "Service", "recommender")
    assert entry["spec"]["selector"] == ROUTER_LABELS
    assert entry["spec"]["ports"][0]["targetPort"] == 8080
    primary = _child(state, "Service", "recommender-primary")
    assert primary["spec"]["selector"] == PRIMARY_LABELS
    assert primary["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]


def test_builtin_has_no_istio_objects():
    kinds = {kind for kind, _ in _keys(desired_state(make_sd(BUILTIN), Observed(), IMAGE))}
    assert "VirtualService" not in kinds
    assert "DestinationRule" not in kinds


def test_builtin_with_a_user_service_switches_it():
    state = desired_state(make_sd(BUILTIN), Observed(service=make_service()), IMAGE)
    assert ("Service", "recommender") not in _keys(state)
    assert ("Service", "recommender-primary") in _keys(state)
    assert state.switch == ServiceSwitch(service="recommender", port=80, selector=ROUTER_LABELS, target_port=8080)


def test_router_config_points_at_the_role_services():
    state = desired_state(make_sd(BUILTIN), Observed(), IMAGE)
    config = json.loads(_child(state, "ConfigMap", "recommender-router")["data"]["router.json"])
    assert config["primary"] == "http://recommender-primary.default.svc.cluster.local:80"
    assert config["candidate"] == "http://recommender-candidate.default.svc.cluster.local:80"
    assert config["traffic"]["mirrorPercent"] == 100
    assert config["traffic"]["router"] == "builtin"
    assert config["recording"]["features"] == ["$.features.purchase_count", "$.features.last_seen_days"]
    assert (config["name"], config["namespace"]) == ("recommender", "default")


def test_router_deployment():
    state = desired_state(make_sd({"traffic": {"router": "builtin", "routerReplicas": 3}}), Observed(), IMAGE)
    router = _child(state, "Deployment", "recommender-router")
    assert router["spec"]["replicas"] == 3
    assert router["spec"]["selector"] == {"matchLabels": ROUTER_LABELS}
    container = _container(router, "router")
    assert container["image"] == IMAGE
    assert container["args"][:3] == ["router", "--config", "/etc/shadow-operator/router.json"]
    volumes = router["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": "recommender-router"}} in volumes
    assert {"name": "records", "emptyDir": {"sizeLimit": "640Mi"}} in volumes  # 512Mi spool + 2 x 64Mi files


def test_router_spools_in_an_emptydir_and_the_collector_mounts_the_sink_volume():
    """The router's directory is a spool (always an emptyDir); sink.volume is the collector's alone."""
    sink = {"path": "/data", "volume": {"persistentVolumeClaim": {"claimName": "shadow-records"}}}
    state = desired_state(make_sd({**BUILTIN, "recording": {"sink": sink}}), Observed(), IMAGE)
    router = _child(state, "Deployment", "recommender-router")
    volumes = router["spec"]["template"]["spec"]["volumes"]
    assert {"name": "records", "emptyDir": {"sizeLimit": "640Mi"}} in volumes
    assert {"name": "records", "mountPath": "/data"} in _container(router, "router")["volumeMounts"]
    # Writable by the image's user (65532) whatever the volume: the bug was EACCES on a fresh volume.
    assert router["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 65532
    collector = _child(state, "Deployment", "recommender-collector")
    pod = collector["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "records", "persistentVolumeClaim": {"claimName": "shadow-records"}}]
    assert {"name": "records", "mountPath": "/data"} in pod["containers"][0]["volumeMounts"]
    cronjob = _child(state, "CronJob", "recommender-analysis")
    assert "shadow-records" not in json.dumps(cronjob)  # the job reads the collector, not the volume


def _config_hash(overrides) -> str:
    state = desired_state(make_sd({**BUILTIN, **overrides}), Observed(), IMAGE)
    router = _child(state, "Deployment", "recommender-router")
    return router["spec"]["template"]["metadata"]["annotations"]["shadow.mlops.dev/config-hash"]


def test_router_config_hash_follows_the_config():
    assert _config_hash({}) == _config_hash({})
    assert len(_config_hash({})) == 16
    assert _config_hash({"traffic": {"router": "builtin", "mirrorPercent": 50}}) != _config_hash({})
    assert _config_hash({"recording": {"sampleRate": 0.5}}) != _config_hash({})


def test_router_service_exposes_http_and_admin():
    state = desired_state(make_sd(BUILTIN), Observed(), IMAGE)
    service = _child(state, "Service", "recommender-router")
    assert service["spec"]["selector"] == ROUTER_LABELS
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 80, 8080),
        ("admin", 9901, 9901),
    ]


# -- referenced primary ---------------------------------------------------------------------------


def test_referenced_primary_creates_no_primary_deployment():
    for overrides in (REFERENCED_PRIMARY, {**BUILTIN, **REFERENCED_PRIMARY}):
        observed = Observed(service=make_service(), primary_ref=make_deployment())
        state = desired_state(make_sd(overrides), observed, IMAGE)
        assert ("Deployment", "recommender-primary") not in _keys(state)
        assert ("Deployment", "recsys") not in _keys(state)
        assert "recommender-primary" not in [c["metadata"]["name"] for c in state.children if c["kind"] == "Deployment"]


def test_builtin_referenced_primary_service_selects_the_original_pods():
    service = make_service(selector={"app": "recommender"}, ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    observed = Observed(service=service, primary_ref=make_deployment())
    state = desired_state(make_sd({**BUILTIN, **REFERENCED_PRIMARY}), observed, IMAGE)
    primary = _child(state, "Service", "recommender-primary")
    assert primary["spec"]["selector"] == {"app": "recommender"}
    assert primary["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]
    assert state.switch == ServiceSwitch(service="recommender", port=80, selector=ROUTER_LABELS, target_port=8080)


def test_builtin_referenced_primary_after_the_switch_uses_the_remembered_routing():
    # The Service already points at the router; its annotation remembers where it pointed before.
    service = make_service(
        selector=ROUTER_LABELS,
        ports=[{"name": "http", "port": 80, "targetPort": 8080}],
        original_routing={"owner": "recommender", "selector": {"app": "recommender"}, "targetPort": 9000},
    )
    observed = Observed(service=service, primary_ref=make_deployment())
    state = desired_state(make_sd({**BUILTIN, **REFERENCED_PRIMARY}), observed, IMAGE)
    primary = _child(state, "Service", "recommender-primary")
    assert primary["spec"]["selector"] == {"app": "recommender"}
    assert primary["spec"]["ports"][0]["targetPort"] == 9000


def test_builtin_referenced_primary_defaults_the_target_port_to_the_port():
    service = make_service(ports=[{"name": "http", "port": 80}])
    observed = Observed(service=service, primary_ref=make_deployment())
    state = desired_state(make_sd({**BUILTIN, **REFERENCED_PRIMARY}), observed, IMAGE)
    assert _child(state, "Service", "recommender-primary")["spec"]["ports"][0]["targetPort"] == 80


# -- model workloads --------------------------------------------------------------------------------


def test_model_deployments():
    state = desired_state(make_sd(), Observed(), IMAGE)
    primary = _child(state, "Deployment", "recommender-primary")
    assert primary["spec"]["replicas"] == 3
    assert primary["spec"]["selector"] == {"matchLabels": PRIMARY_LABELS}
    assert _container(primary)["image"] == "registry.example/recsys:1.4.2"
    assert _container(primary)["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    candidate = _child(state, "Deployment", "recommender-candidate")
    assert candidate["spec"]["replicas"] == 1
    assert candidate["spec"]["template"]["metadata"]["labels"] == CANDIDATE_LABELS
    assert _container(candidate)["image"] == "registry.example/recsys:2.0.0"
    # Unset optionals stay out, so the diff against the live object is not disturbed.
    assert set(_container(candidate)) == {"name", "image", "ports", "securityContext"}


def test_resources_env_and_args_reach_the_container():
    candidate = {
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "2Gi"}},
        "env": [
            {"name": "MODEL_THREADS", "value": "4"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "recsys", "key": "token"}}},
        ],
        "args": ["--port", "8080"],
    }
    deployment = _child(
        desired_state(make_sd({"candidate": candidate}), Observed(), IMAGE), "Deployment", "recommender-candidate"
    )
    container = _container(deployment)
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": 2, "memory": "2Gi"},
    }
    assert container["env"] == [
        {"name": "MODEL_THREADS", "value": "4"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "recsys", "key": "token"}}},
    ]
    assert container["args"] == ["--port", "8080"]


def test_empty_resources_are_left_out():
    deployment = _child(
        desired_state(make_sd({"candidate": {"resources": {}}}), Observed(), IMAGE),
        "Deployment",
        "recommender-candidate",
    )
    assert "resources" not in _container(deployment)


def test_pod_template_is_merged_and_the_selector_labels_win():
    pod_template = {
        "metadata": {
            "labels": {"team": "recsys", "shadow.mlops.dev/role": "hijack"},
            "annotations": {"sidecar.istio.io/inject": "true"},
        },
        "spec": {
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
            "serviceAccountName": "recsys",
            "containers": [{"name": "log-shipper", "image": "fluent-bit:3"}],
            "volumes": [{"name": "cache", "emptyDir": {}}],
        },
    }
    sd = make_sd({"candidate": {"podTemplate": pod_template}})
    deployment = _child(desired_state(sd, Observed(), IMAGE), "Deployment", "recommender-candidate")
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {"team": "recsys", **CANDIDATE_LABELS}
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"
    # The user's container and volume come after the model, the recorder's (istio mode) last.
    assert [c["name"] for c in template["spec"]["containers"]] == ["model", "log-shipper", "recorder"]
    assert template["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert template["spec"]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert template["spec"]["serviceAccountName"] == "recsys"
    assert [v["name"] for v in template["spec"]["volumes"]] == ["cache", "shadow-recorder-config", "shadow-records"]
    # The selector is never widened by user labels.
    assert deployment["spec"]["selector"] == {"matchLabels": CANDIDATE_LABELS}


def test_pod_template_merge_does_not_alias_the_spec():
    sd = make_sd({"primary": {"podTemplate": {"spec": {"nodeSelector": {"pool": "cpu"}}}}})
    first = _child(desired_state(sd, Observed(), IMAGE), "Deployment", "recommender-primary")
    first["spec"]["template"]["spec"]["nodeSelector"]["pool"] = "changed"
    second = _child(desired_state(sd, Observed(), IMAGE), "Deployment", "recommender-primary")
    assert second["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert sd.spec.primary.pod_template.to_wire() == {"spec": {"nodeSelector": {"pool": "cpu"}}}


def test_a_pod_template_entry_named_model_adds_to_the_model_container():
    """Volumes are useful only mounted: the `model` entry adds env, envFrom, resources and volumeMounts."""
    pod_template = {
        "spec": {
            "serviceAccountName": "recsys",
            "volumes": [
                {"name": "weights", "persistentVolumeClaim": {"claimName": "recsys-weights", "readOnly": True}},
                {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "audience": "s3"}}]}},
            ],
            "containers": [
                {
                    "name": "model",
                    "env": [{"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "b"}}}],
                    "envFrom": [{"configMapRef": {"name": "recsys-config"}}],
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                    "volumeMounts": [{"name": "weights", "mountPath": "/weights", "readOnly": True}],
                }
            ],
        }
    }
    sd = make_sd({**BUILTIN, "primary": {"env": [{"name": "A", "value": "1"}], "podTemplate": pod_template}})
    deployment = _child(desired_state(sd, Observed(), IMAGE), "Deployment", "recommender-primary")
    pod = deployment["spec"]["template"]["spec"]
    (model,) = pod["containers"]
    assert model["image"] == "registry.example/recsys:1.4.2"
    assert [variable["name"] for variable in model["env"]] == ["A", "B"]
    assert model["envFrom"] == [{"configMapRef": {"name": "recsys-config"}}]
    assert model["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert model["volumeMounts"] == [{"name": "weights", "mountPath": "/weights", "readOnly": True}]
    assert [volume["name"] for volume in pod["volumes"]] == ["weights", "token"]


def test_a_managed_primary_adopts_a_service_selector_only_when_the_service_opts_in():
    sd = make_sd(BUILTIN)
    for adoptable, labels in ((False, {}), (True, {"app": "recommender"})):
        service = make_service(adoptable=adoptable)
        deployment = _child(desired_state(sd, Observed(service=service), IMAGE), "Deployment", "recommender-primary")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert {k: v for k, v in pod_labels.items() if k == "app"} == labels, adoptable


# -- the comparison job --------------------------------------------------------------------------------


def test_comparison_cronjob():
    cronjob = _child(desired_state(make_sd(), Observed(), IMAGE), "CronJob", "recommender-analysis")
    assert cronjob["apiVersion"] == "batch/v1"
    assert cronjob["spec"]["schedule"] == "*/10 * * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == [
        "analyze", "--namespace", "default", "--name", "recommender", "--publish",
        "--records-from", "http://recommender-collector.default.svc.cluster.local:8090",
        "--records-max-bytes", str((2 << 30) + (64 << 20)), "--cluster-state",
    ]  # fmt: skip
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "recommender-analysis"
    # The download lands in an emptyDir at /tmp; the root filesystem stays read-only.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "2176Mi"}}]
    assert {"name": "TMPDIR", "value": "/tmp"} in container["env"]
    # The job's Pods carry the name label the collector's NetworkPolicy admits.
    labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["shadow.mlops.dev/name"] == "recommender"


@pytest.mark.parametrize(
    ("interval", "schedule"),
    [
        ("1m", "* * * * *"),
        ("5m", "*/5 * * * *"),
        ("10m", "*/10 * * * *"),
        ("15m", "*/15 * * * *"),
        ("30m", "*/30 * * * *"),
        ("60m", "0 * * * *"),
        ("1h", "0 * * * *"),
        ("2h", "0 */2 * * *"),
        ("6h", "0 */6 * * *"),
        ("12h", "0 */12 * * *"),
        ("24h", "0 0 * * *"),
        ("0.5h", "*/30 * * * *"),
        ("120s", "*/2 * * * *"),
    ],
)
def test_cron_schedule(interval, schedule):
    assert cron_schedule(interval) == schedule


@pytest.mark.parametrize("interval", ["7m", "90s", "5h", "45m", "48h", "30s", "0s", "1h30m"])
def test_cron_schedule_refuses_what_cron_cannot_express(interval):
    with pytest.raises(ValueError, match=r"cannot be run on a schedule: use whole minutes that divide an hour"):
        cron_schedule(interval)


def test_cron_schedule_refuses_non_durations():
    with pytest.raises(ValueError, match="is not a duration"):
        cron_schedule("10 minutes")


def test_all_child_keys_cover_every_mode():
    sd = make_sd()
    every = set()
    for overrides, observed in [
        ({}, Observed()),
        (REFERENCED_PRIMARY, Observed(service=make_service(), primary_ref=make_deployment())),
        (BUILTIN, Observed()),
        ({**BUILTIN, **REFERENCED_PRIMARY}, Observed(service=make_service(), primary_ref=make_deployment())),
        ({"analysis": {"baseline": {}}}, Observed()),
    ]:
        every |= set(_keys(desired_state(make_sd(overrides), observed, IMAGE)))
    assert every == all_child_keys(sd)


BASELINE_SPEC = {"analysis": {"baseline": {"replicas": 2}}}


def test_a_baseline_is_the_primarys_image_and_settings_under_its_own_labels_and_gets_the_same_copies():
    sd = make_sd({**BUILTIN, **BASELINE_SPEC})
    children = {(c["kind"], c["metadata"]["name"]): c for c in desired_state(sd, Observed(), IMAGE).children}
    baseline = children[("Deployment", "recommender-baseline")]
    primary = children[("Deployment", "recommender-primary")]
    assert baseline["spec"]["replicas"] == 2
    assert baseline["spec"]["template"]["spec"]["containers"] == primary["spec"]["template"]["spec"]["containers"]
    assert baseline["spec"]["selector"]["matchLabels"]["shadow.mlops.dev/role"] == "baseline"
    assert (
        children[("Service", "recommender-baseline")]["spec"]["selector"] == baseline["spec"]["selector"]["matchLabels"]
    )
    # No Service clients reach selects it: only the router's copies do.
    clients = children[("Service", sd.spec.service.name)]["spec"]["selector"]
    assert clients.get("shadow.mlops.dev/role") != "baseline"
    config = json.loads(children[("ConfigMap", "recommender-router")]["data"]["router.json"])
    assert config["baseline"] == "http://recommender-baseline.default.svc.cluster.local:80"
    without = json.loads(
        {(c["kind"], c["metadata"]["name"]): c for c in desired_state(make_sd(BUILTIN), Observed(), IMAGE).children}[
            ("ConfigMap", "recommender-router")
        ]["data"]["router.json"]
    )
    assert "baseline" not in without


def test_istio_mirrors_each_copy_to_the_candidate_and_the_recorded_baseline():
    sd = make_sd(BASELINE_SPEC)
    children = {(c["kind"], c["metadata"]["name"]): c for c in desired_state(sd, Observed(), IMAGE).children}
    route, rest = children[("VirtualService", "recommender")]["spec"]["http"]
    assert "mirror" not in route and "mirrors" not in rest
    hosts = [m["destination"]["host"] for m in route["mirrors"]]
    assert hosts == [
        "recommender-candidate.default.svc.cluster.local",
        "recommender-baseline.default.svc.cluster.local",
    ]
    baseline = children[("Deployment", "recommender-baseline")]
    names = [c["name"] for c in baseline["spec"]["template"]["spec"]["containers"]]
    assert "recorder" in names


# -- the record collector ----------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, BUILTIN], ids=["istio", "builtin"])
def test_collector_deployment_service_and_network_policy(overrides):
    state = desired_state(make_sd(overrides), Observed(), IMAGE)
    deployment = _child(state, "Deployment", "recommender-collector")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # a ReadWriteOnce volume, one writer
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == [
        "collector", "--listen", "0.0.0.0:8090", "--admin-listen", "0.0.0.0:9901", "--records", "/var/lib/shadow/records",
        "--retention-bytes", str(2 << 30), "--retention-age", "336h",
    ]  # fmt: skip
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["resources"]["limits"]["memory"]
    # Default: an emptyDir sized from retention.maxBytes plus room for the append that triggers retention.
    assert pod["volumes"] == [{"name": "records", "emptyDir": {"sizeLimit": "2112Mi"}}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "collector"}

    service = _child(state, "Service", "recommender-collector")
    assert service["spec"]["selector"] == labels
    assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} == {("http", 8090), ("admin", 9901)}

    policy = _child(state, "NetworkPolicy", "recommender-collector")
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["spec"]["podSelector"] == {"matchLabels": labels}
    records, metrics = policy["spec"]["ingress"]
    assert records == {
        "from": [{"podSelector": {"matchLabels": {"shadow.mlops.dev/name": "recommender"}}}],
        "ports": [{"port": 8090, "protocol": "TCP"}],
    }
    assert metrics == {"ports": [{"port": 9901, "protocol": "TCP"}]}  # Prometheus, from any namespace
    # Everything that writes or reads records carries the label the policy admits.
    for kind, name in [("Deployment", "recommender-candidate"), ("Deployment", "recommender-primary")]:
        assert _child(state, kind, name)["spec"]["template"]["metadata"]["labels"]["shadow.mlops.dev/name"] == (
            "recommender"
        )
    assert ("NetworkPolicy", "recommender-collector") in all_child_keys(make_sd(overrides))
    assert ("Deployment", "recommender-collector") in all_child_keys(make_sd(overrides))


def test_the_routers_ship_to_the_collector_and_retention_edits_do_not_roll_them():
    state = desired_state(make_sd(BUILTIN), Observed(), IMAGE)
    config = json.loads(_child(state, "ConfigMap", "recommender-router")["data"]["router.json"])
    assert config["collector"] == "http://recommender-collector.default.svc.cluster.local:8090"
    assert "retention" not in config["recording"]["sink"] and "volume" not in config["recording"]["sink"]
    retention = {"recording": {"sink": {"retention": {"maxBytes": 1 << 33, "maxAge": "720h"}}}}
    assert _config_hash({}) == _config_hash(retention)
    collector = _child(desired_state(make_sd({**BUILTIN, **retention}), Observed(), IMAGE), "Deployment",
                       "recommender-collector")  # fmt: skip
    args = collector["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--retention-bytes") + 1] == str(1 << 33)
    assert args[args.index("--retention-age") + 1] == "720h"


def test_a_referenced_primarys_recorder_may_ship_to_the_collector():
    """Its Pods are the user's and never get the name label: the policy admits the Service's selector too."""
    observed = Observed(service=make_service(), primary_ref=make_deployment())
    policy = _child(
        desired_state(make_sd(REFERENCED_PRIMARY), observed, IMAGE), "NetworkPolicy", "recommender-collector"
    )
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": make_service().serving_selector()}} in peers
    assert len(peers) == 2
