"""What a ShadowDeployment may add to the Pods the operator runs for it: an allowlist, fully typed.

Creating a ShadowDeployment must not let anyone make the operator do more than they could
themselves (issue 11, confused deputy), so `podTemplate` and `recording.sink.volume` are not
passed-through Kubernetes objects: every field here is one a model Pod needs (scheduling, its
cloud identity, the volumes a model reads from, its container's env, resources and mounts), and
everything else (hostPath and every other volume kind, hostNetwork, hostPID, nodeName, privileged,
added capabilities, ...) is an unknown field, which the CRD schema prunes or refuses at apply time
and the operator refuses (`extra="forbid"`) with a message naming the field. What the schema
cannot express (reserved PriorityClasses, a model entry setting its image, mounts of undeclared
volumes) is refused by controller/validation.py. docs/security.md lists the allowlist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ..base import PRESERVE_UNKNOWN, ApiModel, Port

INT_OR_STRING = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
# A Kubernetes object name (DNS-1123 subdomain) and a DNS-1123 label (volume, container names).
OBJECT_NAME = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
LABEL_NAME = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
# A label value: empty, or alphanumerics with -_. inside.
LABEL_VALUE = Annotated[str, Field(pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", max_length=63)]
FILE_MODE = Annotated[int, Field(ge=0, le=0o777)]
Quantity = Annotated[int | str, Field(json_schema_extra=INT_OR_STRING)]
ABSOLUTE_PATH = Annotated[str, Field(pattern=r"^/", max_length=4096)]
RELATIVE_PATH = Annotated[str, Field(pattern=r"^[^/]", max_length=4096)]

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


def _one_of(*fields: str) -> dict[str, Any]:
    """The CRD's way of saying "exactly one of these fields"."""
    return {"json_schema_extra": {"oneOf": [{"required": [field]} for field in fields]}}


def _exactly_one(model: ApiModel, what: str) -> None:
    """pydantic's side of `_one_of`: `what` names the choices as the user writes them."""
    given = [name for name in type(model).model_fields if getattr(model, name) is not None]
    if len(given) != 1:
        raise ValueError(f"set exactly one of {what}")


class _WireMapping:
    """Spreads into a Kubernetes object as its wire form: `{"name": n, **source}`."""

    def keys(self) -> Iterator[str]:
        return iter(self.to_wire())  # type: ignore[attr-defined]

    def __getitem__(self, key: str) -> Any:
        return self.to_wire()[key]  # type: ignore[attr-defined]


# -- references and selectors ----------------------------------------------------------------------


class LocalObjectReference(ApiModel):
    """An object in the ShadowDeployment's namespace."""

    name: OBJECT_NAME = Field(description="Its name.")


class KeyToPath(ApiModel):
    """One key of a ConfigMap or Secret, projected to a file."""

    key: str = Field(min_length=1, max_length=253, description="The key.")
    path: RELATIVE_PATH = Field(description="Relative path of the file.")
    mode: FILE_MODE | None = Field(default=None, description="File mode bits, e.g. 0440 (288).")


class ObjectFieldSelector(ApiModel):
    """A field of the Pod (downward API)."""

    field_path: str = Field(min_length=1, max_length=253, description="e.g. metadata.name, metadata.namespace.")
    api_version: str | None = Field(default=None, description="Schema version of the path, default v1.")


class ResourceFieldSelector(ApiModel):
    """A resource of a container (downward API)."""

    container_name: LABEL_NAME | None = Field(default=None, description="The container, default this one.")
    resource: str = Field(min_length=1, max_length=253, description="e.g. limits.memory.")
    divisor: Quantity | None = Field(default=None, description="Output unit, e.g. 1Mi.")


class KeySelector(ApiModel):
    """One key of a ConfigMap or Secret."""

    name: OBJECT_NAME = Field(description="The ConfigMap or Secret.")
    key: str = Field(min_length=1, max_length=253, description="The key.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from (exactly one)."""

    model_config = _one_of("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef")

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A field of the Pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(default=None, description="A container's resource.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        _exactly_one(self, "secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef")
        return self


class EnvVar(ApiModel):
    """One environment variable of a container."""

    name: str = Field(min_length=1, max_length=253, description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: EnvVarSource | None = Field(
        default=None, description="A Secret or ConfigMap key, or a field or resource of the Pod."
    )


class ResourceRequirements(ApiModel):
    """Compute resources of a container."""

    requests: dict[str, int | str] | None = Field(
        default=None,
        description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}.",
        json_schema_extra={"additionalProperties": INT_OR_STRING},
    )
    limits: dict[str, int | str] | None = Field(
        default=None,
        description="Maximum resources, e.g. {cpu: '2', memory: 2Gi}.",
        json_schema_extra={"additionalProperties": INT_OR_STRING},
    )


class OptionalReference(ApiModel):
    """A ConfigMap or Secret in the namespace."""

    name: OBJECT_NAME = Field(description="Its name.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class EnvFromSource(ApiModel):
    """Every key of a ConfigMap or a Secret as environment variables (exactly one)."""

    model_config = _one_of("configMapRef", "secretRef")

    prefix: str | None = Field(default=None, max_length=253, description="Prepended to every variable name.")
    config_map_ref: OptionalReference | None = Field(default=None, description="The ConfigMap.")
    secret_ref: OptionalReference | None = Field(default=None, description="The Secret.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError("set exactly one of configMapRef or secretRef")
        return self


# -- volumes ----------------------------------------------------------------------------------------


class ConfigMapVolumeSource(ApiModel):
    """A ConfigMap's keys as files."""

    name: OBJECT_NAME = Field(description="The ConfigMap.")
    items: list[KeyToPath] | None = Field(default=None, description="Only these keys, at these paths.")
    default_mode: FILE_MODE | None = Field(default=None, description="Mode bits of the files.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class SecretVolumeSource(ApiModel):
    """A Secret's keys as files."""

    secret_name: OBJECT_NAME = Field(description="The Secret.")
    items: list[KeyToPath] | None = Field(default=None, description="Only these keys, at these paths.")
    default_mode: FILE_MODE | None = Field(default=None, description="Mode bits of the files.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class PersistentVolumeClaimVolumeSource(ApiModel):
    """A PersistentVolumeClaim in the namespace."""

    claim_name: OBJECT_NAME = Field(description="The claim.")
    read_only: bool | None = Field(default=None, description="Mount it read-only.")


class EmptyDirVolumeSource(ApiModel):
    """A scratch directory that lives as long as the Pod."""

    medium: Literal["", "Memory"] | None = Field(default=None, description='"" (node disk) or Memory (tmpfs).')
    size_limit: Quantity | None = Field(default=None, description="Largest size, e.g. 1Gi.")


class ConfigMapProjection(ApiModel):
    """A ConfigMap's keys in a projected volume."""

    name: OBJECT_NAME = Field(description="The ConfigMap.")
    items: list[KeyToPath] | None = Field(default=None, description="Only these keys, at these paths.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class SecretProjection(ApiModel):
    """A Secret's keys in a projected volume."""

    name: OBJECT_NAME = Field(description="The Secret.")
    items: list[KeyToPath] | None = Field(default=None, description="Only these keys, at these paths.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class ServiceAccountTokenProjection(ApiModel):
    """A token of the Pod's ServiceAccount for another audience (workload identity)."""

    audience: str | None = Field(default=None, max_length=253, description="Intended audience of the token.")
    expiration_seconds: int | None = Field(default=None, ge=600, le=2**31 - 1, description="Requested lifetime.")
    path: RELATIVE_PATH = Field(description="Relative path of the token file.")


class DownwardAPIVolumeFile(ApiModel):
    """A field of the Pod or a resource of a container, as a file."""

    model_config = _one_of("fieldRef", "resourceFieldRef")

    path: RELATIVE_PATH = Field(description="Relative path of the file.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A field of the Pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(default=None, description="A container's resource.")
    mode: FILE_MODE | None = Field(default=None, description="File mode bits.")

    @model_validator(mode="after")
    def _one_source(self) -> DownwardAPIVolumeFile:
        if (self.field_ref is None) == (self.resource_field_ref is None):
            raise ValueError("set exactly one of fieldRef or resourceFieldRef")
        return self


class DownwardAPIProjection(ApiModel):
    """Fields of the Pod as files."""

    items: list[DownwardAPIVolumeFile] | None = Field(default=None, description="The files.")


class VolumeProjection(ApiModel):
    """One source of a projected volume (exactly one)."""

    model_config = _one_of("configMap", "secret", "serviceAccountToken", "downwardAPI")

    config_map: ConfigMapProjection | None = Field(default=None, description="A ConfigMap's keys.")
    secret: SecretProjection | None = Field(default=None, description="A Secret's keys.")
    service_account_token: ServiceAccountTokenProjection | None = Field(
        default=None, description="A token for another audience (cloud workload identity)."
    )
    downward_api: DownwardAPIProjection | None = Field(
        default=None, alias="downwardAPI", description="Fields of the Pod."
    )

    @model_validator(mode="after")
    def _one_source(self) -> VolumeProjection:
        _exactly_one(self, "configMap, secret, serviceAccountToken or downwardAPI")
        return self


class ProjectedVolumeSource(ApiModel):
    """Several ConfigMaps, Secrets, tokens and Pod fields in one directory."""

    sources: list[VolumeProjection] = Field(default_factory=list, description="What goes into the directory.")
    default_mode: FILE_MODE | None = Field(default=None, description="Mode bits of the files.")


VOLUME_KINDS = ("configMap", "secret", "persistentVolumeClaim", "emptyDir", "projected")


class Volume(ApiModel):
    """A volume a model reads from: configMap, secret, persistentVolumeClaim, emptyDir or projected, exactly one."""

    model_config = _one_of(*VOLUME_KINDS)

    name: LABEL_NAME = Field(description="Volume name, referenced by volumeMounts.")
    config_map: ConfigMapVolumeSource | None = Field(default=None, description="A ConfigMap's keys as files.")
    secret: SecretVolumeSource | None = Field(default=None, description="A Secret's keys as files.")
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = Field(
        default=None, description="A PersistentVolumeClaim in the namespace, e.g. model weights."
    )
    empty_dir: EmptyDirVolumeSource | None = Field(default=None, description="Scratch space.")
    projected: ProjectedVolumeSource | None = Field(default=None, description="Several sources in one directory.")

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        given = [name for name in type(self).model_fields if name != "name" and getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one volume source: configMap, secret, persistentVolumeClaim, emptyDir or projected "
                "(no other kind of volume is allowed)"
            )
        return self


class SinkVolume(_WireMapping, ApiModel):
    """Where the collector keeps records: a persistentVolumeClaim or an emptyDir, exactly one."""

    model_config = _one_of("persistentVolumeClaim", "emptyDir")

    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = Field(
        default=None, description="A PersistentVolumeClaim in the namespace, e.g. {claimName: shadow-records}."
    )
    empty_dir: EmptyDirVolumeSource | None = Field(default=None, description="An emptyDir (lost with the Pod).")

    @model_validator(mode="after")
    def _one_source(self) -> SinkVolume:
        _exactly_one(self, "persistentVolumeClaim or emptyDir (no other kind of volume is allowed)")
        return self


# -- containers -------------------------------------------------------------------------------------


class VolumeMount(ApiModel):
    """A volume of the podTemplate, mounted into the container."""

    name: LABEL_NAME = Field(description="A volume of podTemplate.spec.volumes.")
    mount_path: ABSOLUTE_PATH = Field(description="Where it appears in the container.")
    sub_path: RELATIVE_PATH | None = Field(default=None, description="A path inside the volume to mount instead.")
    read_only: bool | None = Field(default=None, description="Mount it read-only.")


class ContainerPort(ApiModel):
    """A port the container listens on (no hostPort)."""

    name: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=15, description="Port name."
    )
    container_port: Port = Field(description="Port number.")
    protocol: Literal["TCP", "UDP", "SCTP"] | None = Field(default=None, description="Default TCP.")


class SeccompProfile(ApiModel):
    """RuntimeDefault, or a Localhost profile: what Pod Security restricted allows."""

    type: Literal["RuntimeDefault", "Localhost"] = Field(description="RuntimeDefault or Localhost.")
    localhost_profile: str | None = Field(default=None, max_length=4096, description="Localhost: the profile file.")


class Capabilities(ApiModel):
    """All capabilities are dropped; restricted lets only NET_BIND_SERVICE back in."""

    add: list[Literal["NET_BIND_SERVICE"]] | None = Field(default=None, description="At most NET_BIND_SERVICE.")
    drop: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, description="Ignored: the operator always drops ALL."
    )


class ContainerSecurityContext(ApiModel):
    """A container's securityContext, within Pod Security restricted."""

    run_as_user: int | None = Field(default=None, ge=1, le=2**31 - 1, description="A non-root uid.")
    run_as_group: int | None = Field(default=None, ge=0, le=2**31 - 1, description="Primary gid.")
    run_as_non_root: Literal[True] | None = Field(default=None, description="Always true.")
    read_only_root_filesystem: bool | None = Field(default=None, description="Mount the root filesystem read-only.")
    allow_privilege_escalation: Literal[False] | None = Field(default=None, description="Always false.")
    capabilities: Capabilities | None = Field(default=None, description="At most NET_BIND_SERVICE added.")
    seccomp_profile: SeccompProfile | None = Field(default=None, description="Default: the Pod's RuntimeDefault.")


MODEL_CONTAINER = "model"


class PodTemplateContainer(ApiModel):
    """An entry named `model` adds env, envFrom, resources, volumeMounts (and securityContext) to the model
    container; any other name is a sidecar, which needs an image."""

    name: LABEL_NAME = Field(description="`model` for the model container, otherwise a sidecar's name.")
    image: str | None = Field(default=None, min_length=1, description="Sidecars only: the image.")
    command: list[str] | None = Field(default=None, description="Sidecars only: the entrypoint.")
    args: list[str] | None = Field(default=None, description="Sidecars only: its arguments.")
    env: list[EnvVar] | None = Field(default=None, description="Environment variables (appended).")
    env_from: list[EnvFromSource] | None = Field(default=None, description="ConfigMaps and Secrets as variables.")
    resources: ResourceRequirements | None = Field(default=None, description="Requests and limits.")
    volume_mounts: list[VolumeMount] | None = Field(default=None, description="Volumes of podTemplate.spec.volumes.")
    ports: list[ContainerPort] | None = Field(default=None, description="Sidecars only: ports it listens on.")
    security_context: ContainerSecurityContext | None = Field(
        default=None, description="Within Pod Security restricted."
    )


# -- the Pod ----------------------------------------------------------------------------------------


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
