"""What a ShadowDeployment may add to the Pods the operator runs for it: an allowlist, fully typed.

This module has the Pod's own fields (scheduling, identity, securityContext) and the podTemplate
that gathers them; its containers, volumes and env sources are in containers.py, volumes.py and
env.py. Creating a ShadowDeployment must not let anyone make the operator do more than they could
themselves (issue 11, confused deputy), so `podTemplate` and `recording.sink.volume` are not
passed-through Kubernetes objects: every field of them is one a model Pod needs (scheduling, its
cloud identity, the volumes a model reads from, its container's env, resources and mounts), and
everything else (hostPath and every other volume kind, hostNetwork, hostPID, nodeName, privileged,
added capabilities, ...) is an unknown field, which the CRD schema prunes or refuses at apply time
and the operator refuses (`extra="forbid"`) with a message naming the field. What the schema
cannot express (reserved PriorityClasses, a model entry setting its image, mounts of undeclared
volumes) is refused by controller/validation.py. docs/security.md lists the allowlist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ..base import PRESERVE_UNKNOWN, ApiModel
from .containers import PodTemplateContainer, SeccompProfile
from .env import LocalObjectReference
from .kube_types import LABEL_VALUE, OBJECT_NAME
from .volumes import Volume

# baseline's "safe" sysctls: the only ones a Pod may set (controller/builders/security.py checks built Pods against this list).
SAFE_SYSCTL = Literal[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
]


class Toleration(ApiModel):
    """Lets the Pods onto nodes with a matching taint."""

    key: str | None = Field(default=None, max_length=316, description="Taint key; empty with Exists: every taint.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Default Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value (Equal).")
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; empty: every effect."
    )
    toleration_seconds: int | None = Field(default=None, description="NoExecute: how long the Pod stays.")


class Affinity(ApiModel):
    """Kubernetes node affinity and Pod (anti-)affinity, as in a Pod spec."""

    node_affinity: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes NodeAffinity.", json_schema_extra=PRESERVE_UNKNOWN
    )
    pod_affinity: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes PodAffinity.", json_schema_extra=PRESERVE_UNKNOWN
    )
    pod_anti_affinity: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes PodAntiAffinity.", json_schema_extra=PRESERVE_UNKNOWN
    )


class TopologySpreadConstraint(ApiModel):
    """How the Pods spread over zones or nodes."""

    max_skew: int = Field(ge=1, le=2**31 - 1, description="Largest allowed difference in Pod count.")
    topology_key: str = Field(min_length=1, max_length=316, description="Node label, e.g. topology.kubernetes.io/zone.")
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(description="What to do when it cannot.")
    label_selector: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes LabelSelector of the Pods counted.", json_schema_extra=PRESERVE_UNKNOWN
    )
    min_domains: int | None = Field(default=None, ge=1, le=2**31 - 1, description="Fewest eligible domains.")
    match_label_keys: list[str] | None = Field(default=None, description="Pod label keys that group the Pods.")
    node_affinity_policy: Literal["Honor", "Ignore"] | None = Field(default=None, description="Default Honor.")
    node_taints_policy: Literal["Honor", "Ignore"] | None = Field(default=None, description="Default Ignore.")


class Sysctl(ApiModel):
    """A namespaced kernel parameter: only baseline's safe ones."""

    name: SAFE_SYSCTL = Field(description="One of the sysctls Pod Security baseline calls safe.")
    value: str = Field(max_length=4096, description="Its value.")


class PodSecurityContext(ApiModel):
    """The Pod's securityContext, within Pod Security restricted."""

    run_as_user: int | None = Field(default=None, ge=1, le=2**31 - 1, description="A non-root uid.")
    run_as_group: int | None = Field(default=None, ge=0, le=2**31 - 1, description="Primary gid.")
    run_as_non_root: Literal[True] | None = Field(default=None, description="Always true.")
    fs_group: int | None = Field(default=None, ge=0, le=2**31 - 1, description="Group that owns the volumes.")
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = Field(default=None, description="When.")
    supplemental_groups: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        default=None, description="Extra gids."
    )
    seccomp_profile: SeccompProfile | None = Field(default=None, description="Default RuntimeDefault.")
    sysctls: list[Sysctl] | None = Field(default=None, description="Safe sysctls only.")


class PodTemplateMetadata(ApiModel):
    """Labels and annotations added to the Pods (the generated selector labels win)."""

    labels: dict[str, LABEL_VALUE] | None = Field(default=None, description="Extra Pod labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Extra Pod annotations.")


class PodTemplatePodSpec(ApiModel):
    """The Pod spec fields a ShadowDeployment may set; anything else is refused."""

    node_selector: dict[str, str] | None = Field(default=None, description="Node labels the Pods must land on.")
    tolerations: list[Toleration] | None = Field(default=None, description="Taints the Pods tolerate.")
    affinity: Affinity | None = Field(default=None, description="Node and Pod affinity.")
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        default=None, description="How the Pods spread."
    )
    priority_class_name: OBJECT_NAME | None = Field(
        default=None, description="A PriorityClass for workloads (system-* are reserved)."
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, description="Secrets to pull private images with."
    )
    service_account_name: OBJECT_NAME | None = Field(
        default=None, description="The model's ServiceAccount, e.g. for its cloud identity."
    )
    automount_service_account_token: bool | None = Field(
        default=None, description="Mount the ServiceAccount's API token (default false)."
    )
    security_context: PodSecurityContext | None = Field(default=None, description="Within Pod Security restricted.")
    volumes: list[Volume] | None = Field(
        default=None, description="configMap, secret, persistentVolumeClaim, emptyDir or projected volumes."
    )
    containers: list[PodTemplateContainer] | None = Field(
        default=None, description="`model` adds to the model container; other names are sidecars."
    )


class PodTemplate(ApiModel):
    """Extra fields for the model's Pods, from an allowlist (docs/security.md)."""

    metadata: PodTemplateMetadata | None = Field(default=None, description="Labels and annotations.")
    spec: PodTemplatePodSpec | None = Field(default=None, description="Scheduling, identity, volumes, containers.")
