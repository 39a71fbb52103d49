"""The containers of the model's Pods: what an entry named `model` adds to the model container, and sidecars."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..base import ApiModel, Port
from .env import EnvFromSource, EnvVar
from .kube_types import ABSOLUTE_PATH, INT_OR_STRING, LABEL_NAME, RELATIVE_PATH


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
