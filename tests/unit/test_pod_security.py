"""Every Pod the builders can make passes Pod Security `restricted`, checked rule by rule.

The rules are written here from the Pod Security Standards
(https://kubernetes.io/docs/concepts/security/pod-security-standards/), not taken from the
builders, so a builder that loosens a securityContext fails them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shadow_operator.contract.resource import SpecInvalid
from shadow_operator.controller.builders import desired_state
from shadow_operator.controller.builders.security import restrict_pod_spec
from shadow_operator.controller.observed import Observed, ObservedService

from .factories import REFERENCED_PRIMARY, make_sd, service_json

IMAGE = "shadow-operator:test"

# -- the restricted profile, rule by rule ----------------------------------------------------------

ALLOWED_VOLUME_SOURCES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What in a Pod spec breaks Pod Security `restricted` (baseline included), each naming the field."""
    found: list[str] = []
    pod_sc = pod.get("securityContext") or {}
    containers = [
        (key, c) for key in ("initContainers", "containers", "ephemeralContainers") for c in pod.get(key) or []
    ]
    # baseline: host namespaces
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"spec.{key} must be unset or false")
    # baseline: hostPath; restricted: only the listed volume types
    for volume in pod.get("volumes") or []:
        sources = set(volume) - {"name"}
        if not sources <= ALLOWED_VOLUME_SOURCES:
            found.append(f"volume {volume['name']}: {sorted(sources - ALLOWED_VOLUME_SOURCES)} not allowed")
    # baseline: sysctls, SELinux, seccomp not Unconfined; restricted: seccomp set, non-root
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls: {sysctl['name']} is not a safe sysctl")
    found += _selinux("spec.securityContext", pod_sc)
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"spec.securityContext.seccompProfile.type {pod_seccomp} must be RuntimeDefault or Localhost")
    if pod_sc.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser must not be 0")
    for key, container in containers:
        where = f"spec.{key}[{container['name']}].securityContext"
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            found.append(f"{where}.privileged must be unset or false")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}.allowPrivilegeEscalation must be false")
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            found.append(f"{where}.runAsNonRoot (or the Pod's) must be true")
        if sc.get("runAsUser") == 0:
            found.append(f"{where}.runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(
                f"{where}.seccompProfile.type (or the Pod's) must be RuntimeDefault or Localhost, not {seccomp}"
            )
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}.capabilities.drop must include ALL")
        added = set(capabilities.get("add") or [])
        if added - {"NET_BIND_SERVICE"} or added - BASELINE_CAPABILITIES:
            found.append(f"{where}.capabilities.add may hold only NET_BIND_SERVICE, not {sorted(added)}")
        if sc.get("procMount") not in (None, "Default"):
            found.append(f"{where}.procMount must be Default")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}.windowsOptions.hostProcess must be false")
        found += _selinux(where, sc)
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"spec.{key}[{container['name']}].ports: hostPort {port['hostPort']} must be unset or 0")
    return found


def _selinux(where: str, sc: dict[str, Any]) -> list[str]:
    options = sc.get("seLinuxOptions") or {}
    problems = [f"{where}.seLinuxOptions.{k} must be unset" for k in ("user", "role") if options.get(k)]
    if options.get("type") not in SELINUX_TYPES:
        problems.append(f"{where}.seLinuxOptions.type {options['type']} is not allowed")
    return problems


# -- every Pod the builders make -----------------------------------------------------------------------

BUILTIN = {"traffic": {"router": "builtin"}}


def observed_service() -> ObservedService:
    return ObservedService.from_body(service_json())


SHAPES = {
    "istio, managed primary": ({}, Observed()),
    "istio, deploymentRef": (REFERENCED_PRIMARY, Observed(service=observed_service())),
    "builtin, managed primary": (BUILTIN, Observed()),
    "builtin, deploymentRef": ({**BUILTIN, **REFERENCED_PRIMARY}, Observed(service=observed_service())),
    "builtin, managed primary behind an existing Service": (BUILTIN, Observed(service=observed_service())),
}
# A podTemplate that asks for everything restricted forbids in a securityContext, plus a sidecar.
HOSTILE_TEMPLATE = {
    "spec": {
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "seccompProfile": {"type": "Unconfined"},
            "seLinuxOptions": {"user": "system_u", "type": "spc_t"},
            "sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}],
        },
        "containers": [
            {
                "name": "sidecar",
                "image": "busybox",
                "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {
                    "privileged": True,
                    "allowPrivilegeEscalation": True,
                    "runAsUser": 0,
                    "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]},
                    "procMount": "Unmasked",
                    "seccompProfile": {"type": "Unconfined"},
                },
            }
        ],
        "initContainers": [{"name": "init", "image": "busybox"}],
    }
}


def pods(state) -> dict[str, dict[str, Any]]:
    """Every Pod template in a desired state, by the child that makes it."""
    found = {}
    for child in state.children:
        if child["kind"] == "Deployment":
            found[child["metadata"]["name"]] = child["spec"]["template"]["spec"]
        elif child["kind"] == "CronJob":
            found[child["metadata"]["name"]] = child["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return found


def all_pods(overrides, observed) -> dict[str, dict[str, Any]]:
    return pods(desired_state(make_sd(overrides), observed, IMAGE))


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_every_generated_pod_passes_restricted(shape):
    overrides, observed = SHAPES[shape]
    found = all_pods(overrides, observed)
    assert "recommender-collector" in found and "recommender-analysis" in found
    for name, pod in found.items():
        assert restricted_violations(pod) == [], f"{shape}: the Pod of {name} fails Pod Security restricted"


def test_every_kind_of_pod_was_checked():
    seen = set()
    for overrides, observed in SHAPES.values():
        for name, pod in all_pods(overrides, observed).items():
            seen |= {(name, c["name"]) for c in pod["containers"]}
    assert seen == {
        ("recommender-primary", "model"),
        ("recommender-primary", "recorder"),
        ("recommender-candidate", "model"),
        ("recommender-candidate", "recorder"),
        ("recommender-router", "router"),
        ("recommender-collector", "collector"),
        ("recommender-analysis", "analyze"),
    }


@pytest.mark.parametrize("mode", [{}, BUILTIN], ids=["istio", "builtin"])
def test_a_pod_template_asking_for_more_than_restricted_is_refused(mode):
    """The podTemplate is an allowlist (issue 11): what restricted forbids is refused, each field named."""
    overrides = {**mode, "primary": {"podTemplate": HOSTILE_TEMPLATE}}
    with pytest.raises(SpecInvalid) as refused:
        make_sd(overrides)
    fields = {problem.split(": ", 1)[0] for problem in refused.value.problems}
    where = "spec.primary.podTemplate.spec"
    assert fields == {
        f"{where}.securityContext.runAsUser",
        f"{where}.securityContext.runAsNonRoot",
        f"{where}.securityContext.seccompProfile.type",
        f"{where}.securityContext.seLinuxOptions",
        f"{where}.securityContext.sysctls[0].name",
        f"{where}.containers[0].ports[0].hostPort",
        f"{where}.containers[0].securityContext.privileged",
        f"{where}.containers[0].securityContext.allowPrivilegeEscalation",
        f"{where}.containers[0].securityContext.runAsUser",
        f"{where}.containers[0].securityContext.capabilities.add[0]",
        f"{where}.containers[0].securityContext.procMount",
        f"{where}.containers[0].securityContext.seccompProfile.type",
        f"{where}.initContainers",
    }


def test_the_builders_keep_restricted_even_for_a_raw_pod_spec():
    """Defense in depth: restrict_pod_spec makes even an untyped hostile Pod spec restricted."""
    pod = copy.deepcopy(HOSTILE_TEMPLATE["spec"])
    pod["hostNetwork"] = True
    restrict_pod_spec(pod)
    pod.pop("initContainers")  # never built: the podTemplate has no such field
    assert restricted_violations(pod) == []
    sidecar = next(c for c in pod["containers"] if c["name"] == "sidecar")
    # What restricted allows is kept: NET_BIND_SERVICE may be added back.
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert pod["securityContext"]["sysctls"] == [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]


def test_the_checker_finds_what_the_hostile_template_asks_for():
    """The rules can fail: the podTemplate's own Pod, taken as given, breaks every one of them."""
    pod = copy.deepcopy(HOSTILE_TEMPLATE["spec"])
    pod["hostNetwork"] = True
    pod["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    problems = "\n".join(restricted_violations(pod))
    for expected in (
        "spec.hostNetwork",
        "volume root: ['hostPath']",
        "spec.securityContext.sysctls: kernel.msgmax",
        "spec.securityContext.seLinuxOptions.user",
        "spec.securityContext.seccompProfile.type Unconfined",
        "spec.securityContext.runAsUser must not be 0",
        "[sidecar].securityContext.privileged",
        "[sidecar].securityContext.allowPrivilegeEscalation",
        "[sidecar].securityContext.runAsNonRoot",
        "[sidecar].securityContext.capabilities.drop",
        "[sidecar].securityContext.capabilities.add",
        "[sidecar].securityContext.procMount",
        "hostPort 80",
        "spec.initContainers[init].securityContext.allowPrivilegeEscalation",
    ):
        assert expected in problems, f"the restricted checker missed {expected!r}"


def test_a_pod_template_keeps_settings_restricted_allows():
    template = {"spec": {"securityContext": {"runAsUser": 1000, "fsGroup": 2000, "seccompProfile": {
        "type": "Localhost", "localhostProfile": "profiles/model.json"}}}}  # fmt: skip
    pod = all_pods({"candidate": {"podTemplate": template}}, Observed())["recommender-candidate"]
    assert pod["securityContext"] == {
        "runAsUser": 1000,
        "fsGroup": 2000,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/model.json"},
    }
    model = next(c for c in pod["containers"] if c["name"] == "model")
    assert model["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


# -- tokens and disk -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_only_the_comparison_job_gets_an_api_token(shape):
    overrides, observed = SHAPES[shape]
    for name, pod in all_pods(overrides, observed).items():
        expected = name == "recommender-analysis"  # it reads its ShadowDeployment and writes its report
        assert pod.get("automountServiceAccountToken") is expected, (
            f"{name}: automountServiceAccountToken must be {expected} (set it in the builder's Pod spec)"
        )


def test_a_model_may_ask_for_its_token():
    template = {"spec": {"automountServiceAccountToken": True, "serviceAccountName": "recsys"}}
    pod = all_pods({"primary": {"podTemplate": template}}, Observed())["recommender-primary"]
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_every_generated_empty_dir_has_a_size_limit(shape):
    overrides, observed = SHAPES[shape]
    for name, pod in all_pods(overrides, observed).items():
        for volume in pod.get("volumes") or []:
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), (
                    f"{name}: emptyDir {volume['name']} has no sizeLimit: one full spool would fill the node's disk"
                )
