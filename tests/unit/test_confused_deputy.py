"""Creating a ShadowDeployment must not make the operator do more than its author could (issue 11, item 1).

`podTemplate` and `recording.sink.volume` are typed allowlists (refused by the schema and by
resource.parse, naming the field); what the schema cannot say is refused by controller/validation.py; and an
operator-run primary never goes behind an existing Service that did not opt in.
"""

from __future__ import annotations

import pytest

from shadow_operator.contract import reasons
from shadow_operator.contract.resource import SpecInvalid
from shadow_operator.controller.observed import ALLOW_ADOPTION_ANNOTATION, Observed
from shadow_operator.controller.validation import validate

from .factories import REFERENCED_PRIMARY, make_deployment, make_sd, make_service

BUILTIN = {"traffic": {"router": "builtin"}}


def _refusal(overrides) -> list[str]:
    with pytest.raises(SpecInvalid) as refused:
        make_sd(overrides)
    return refused.value.problems


@pytest.mark.parametrize(
    ("pod_template", "field"),
    [
        ({"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}, "spec.volumes[0].hostPath"),
        ({"spec": {"volumes": [{"name": "d", "csi": {"driver": "x"}}]}}, "spec.volumes[0].csi"),
        ({"spec": {"hostNetwork": True}}, "spec.hostNetwork"),
        ({"spec": {"hostPID": True}}, "spec.hostPID"),
        ({"spec": {"hostIPC": True}}, "spec.hostIPC"),
        ({"spec": {"nodeName": "control-plane"}}, "spec.nodeName"),
        ({"spec": {"initContainers": [{"name": "i", "image": "busybox"}]}}, "spec.initContainers"),
        (
            {"spec": {"containers": [{"name": "s", "image": "x", "securityContext": {"privileged": True}}]}},
            "spec.containers[0].securityContext.privileged",
        ),
        (
            {"spec": {"containers": [{"name": "s", "image": "x", "volumeDevices": []}]}},
            "spec.containers[0].volumeDevices",
        ),
        ({"spec": {"securityContext": {"runAsUser": 0}}}, "spec.securityContext.runAsUser"),
        ({"metadata": {"name": "x"}}, "metadata.name"),
    ],
)
@pytest.mark.parametrize("role", ["primary", "candidate"])
def test_pod_template_fields_outside_the_allowlist_are_refused(pod_template, field, role):
    (problem,) = _refusal({role: {"podTemplate": pod_template}})
    assert problem.startswith(f"spec.{role}.podTemplate.{field}: "), problem


def test_a_refused_volume_kind_says_which_kinds_are_allowed():
    (problem,) = _refusal(
        {"primary": {"podTemplate": {"spec": {"volumes": [{"name": "r", "hostPath": {"path": "/"}}]}}}}
    )
    assert problem == (
        "spec.primary.podTemplate.spec.volumes[0].hostPath: not allowed: a podTemplate volume may only be configMap, "
        "secret, persistentVolumeClaim, emptyDir or projected (the kinds a model reads from); use one of those, "
        "e.g. a persistentVolumeClaim instead of a hostPath"
    )


@pytest.mark.parametrize(
    "volume",
    [{"name": "v"}, {"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}],
    ids=["no-source", "two-sources"],
)
def test_a_volume_has_exactly_one_source(volume):
    (problem,) = _refusal({"primary": {"podTemplate": {"spec": {"volumes": [volume]}}}})
    assert problem.startswith("spec.primary.podTemplate.spec.volumes[0]: Value error, set exactly one volume source")


@pytest.mark.parametrize(
    "pod_template",
    [{"spec": [1, 2]}, {"metadata": "notadict"}, {"spec": {"volumes": "x"}}, {"spec": {"containers": [1]}}, []],
)
def test_wrong_types_are_refused_cleanly(pod_template):
    problems = _refusal({"candidate": {"podTemplate": pod_template}})
    assert problems and all(p.startswith("spec.candidate.podTemplate") for p in problems), problems


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        ({"hostPath": {"path": "/"}}, "hostPath"),
        ({"configMap": {"name": "x"}}, "configMap"),
        ({"nfs": {"server": "s", "path": "/"}}, "nfs"),
    ],
)
def test_sink_volume_is_a_claim_or_an_empty_dir(volume, field):
    (problem,) = _refusal({"recording": {"sink": {"volume": volume}}})
    assert problem == (
        f"spec.recording.sink.volume.{field}: not allowed: recording.sink.volume may only be a "
        "persistentVolumeClaim or an emptyDir"
    )


@pytest.mark.parametrize(
    "volume", [{"persistentVolumeClaim": {"claimName": "shadow-records"}}, {"emptyDir": {"sizeLimit": "10Gi"}}]
)
def test_allowed_sink_volumes_reach_the_collector(volume):
    from shadow_operator.controller.builders import desired_state

    sd = make_sd({"recording": {"sink": {"volume": volume}}})
    assert validate(sd, Observed()) == []
    collector = next(
        c for c in desired_state(sd, Observed(), "op:1").children if c["metadata"]["name"] == "recommender-collector"
    )
    volumes = collector["spec"]["template"]["spec"]["volumes"]
    assert any(v == {"name": v["name"], **volume} for v in volumes), volumes


def test_everything_on_the_allowlist_is_accepted():
    pod_template = {
        "metadata": {"labels": {"team": "recsys"}, "annotations": {"a": "b"}},
        "spec": {
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
            ],
            "priorityClassName": "ml-serving",
            "imagePullSecrets": [{"name": "registry"}],
            "serviceAccountName": "recsys",
            "automountServiceAccountToken": True,
            "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [
                {"name": "c", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "p"}]}},
                {"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o440}},
                {"name": "w", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}},
                {"name": "e", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                {
                    "name": "p",
                    "projected": {
                        "sources": [
                            {
                                "downwardAPI": {
                                    "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                                }
                            }
                        ]
                    },
                },
            ],
            "containers": [
                {"name": "model", "volumeMounts": [{"name": "w", "mountPath": "/weights"}]},
                {"name": "log-shipper", "image": "fluent-bit:3", "ports": [{"containerPort": 2020}]},
            ],
        },
    }
    sd = make_sd({"primary": {"podTemplate": pod_template}, "candidate": {"podTemplate": pod_template}})
    assert validate(sd, Observed()) == []
    assert sd.spec.primary.pod_template.to_wire() == pod_template


def _problems_of(pod_spec) -> list[str]:
    return [p.message for p in validate(make_sd({"candidate": {"podTemplate": {"spec": pod_spec}}}), Observed())]


def test_what_the_schema_cannot_say_is_refused_by_validation():
    assert _problems_of({"priorityClassName": "system-node-critical"}) == [
        "spec.candidate.podTemplate.spec.priorityClassName: system-node-critical is reserved for the cluster's own "
        "components; use a PriorityClass your cluster defines for workloads, or leave it out."
    ]
    (problem,) = _problems_of({"containers": [{"name": "model", "image": "evil:1"}]})
    assert problem.startswith("spec.candidate.podTemplate.spec.containers[0].image: ")
    assert problem.endswith("set spec.candidate.image instead.")
    (problem,) = _problems_of({"containers": [{"name": "shipper"}]})
    assert problem.startswith("spec.candidate.podTemplate.spec.containers[0].image: shipper is a sidecar")
    (problem,) = _problems_of({"containers": [{"name": "model", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]})
    assert problem.startswith("spec.candidate.podTemplate.spec.containers[0].volumeMounts[0].name: 'x' is not a volume")
    (problem,) = _problems_of({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]})
    assert problem == "spec.candidate.podTemplate.spec.volumes: names must be unique, repeated: ['v']"


# -- adoption of an existing Service ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [{}, BUILTIN], ids=["istio", "builtin"])
def test_a_managed_primary_behind_a_service_that_did_not_opt_in_is_refused(mode):
    service = make_service(adoptable=False)
    problems = validate(make_sd(mode), Observed(service=service))
    assert [p.reason for p in problems] == [reasons.INVALID_SPEC]
    message = problems[0].message
    assert message.startswith("spec.service.name: Service recommender already exists")
    assert f'{ALLOW_ADOPTION_ANNOTATION}: "true"' in message
    assert f"kubectl annotate service recommender {ALLOW_ADOPTION_ANNOTATION}=true" in message


def test_the_opt_in_must_say_true():
    service = make_service(adoptable=False, annotations={ALLOW_ADOPTION_ANNOTATION: "yes"})
    assert [p.reason for p in validate(make_sd(), Observed(service=service))] == [reasons.INVALID_SPEC]


def test_an_opted_in_service_own_service_or_referenced_primary_is_fine():
    assert validate(make_sd(), Observed(service=make_service(adoptable=True))) == []
    # The operator's own Service (it created it) needs no opt-in.
    own = make_service(adoptable=False, owner_uids=["uid-1"])
    assert validate(make_sd(), Observed(service=own)) == []
    # deploymentRef: the primary's Pods are someone else's; nothing is adopted.
    referenced = Observed(service=make_service(adoptable=False), primary_ref=make_deployment())
    assert validate(make_sd(REFERENCED_PRIMARY), referenced) == []
