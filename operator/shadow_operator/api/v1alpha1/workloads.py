"""Which models run: the primary (an image the operator runs, or a Deployment it only reads), the
candidate, and the Service users call."""

from __future__ import annotations

from pydantic import Field, model_validator

from ..base import DNS_LABEL, ApiModel, Port, one_of, require_exactly_one
from .containers import ResourceRequirements
from .env import EnvVar
from .podtemplate import PodTemplate


class ServiceRef(ApiModel):
    """The Service clients already call."""

    name: str = Field(
        pattern=DNS_LABEL,
        max_length=63,
        description="Name of the Service that clients call today, in the ShadowDeployment's namespace. "
        "It is the host of the mirror route. With primary.deploymentRef the Service must exist; "
        "otherwise the operator creates it in front of the primary when it is missing.",
    )
    port: Port = Field(description="The Service port clients call. Must be one of the Service's ports.")


class DeploymentRef(ApiModel):
    """An existing Deployment the operator reads but never owns or changes."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        description="Name of a Deployment in the same namespace that already serves the primary model.",
    )


class _ModelWorkload(ApiModel):
    replicas: int = Field(default=1, ge=0, le=1000, description="Number of Pods.")
    port: Port = Field(default=8080, description="Container port the model serves HTTP on.")
    env: list[EnvVar] = Field(default_factory=list, description="Environment variables of the model container.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Requests and limits of the model container."
    )
    args: list[str] | None = Field(default=None, description="Arguments passed to the image's entrypoint.")
    pod_template: PodTemplate | None = Field(
        default=None,
        description="Extra fields for the model's Pods, from an allowlist: metadata.labels and annotations; "
        "spec.nodeSelector, tolerations, affinity, topologySpreadConstraints, priorityClassName, "
        "imagePullSecrets, serviceAccountName, automountServiceAccountToken, securityContext (within Pod "
        "Security restricted), volumes (configMap, secret, persistentVolumeClaim, emptyDir, projected) and "
        "containers (an entry named model adds env, envFrom, resources and volumeMounts to the model "
        "container; other names are sidecars). Anything else is refused (docs/security.md).",
    )


class PrimarySpec(_ModelWorkload):
    """The model that serves users today: either run by the operator or an existing Deployment."""

    model_config = one_of("image", "deploymentRef")

    image: str | None = Field(
        default=None,
        min_length=1,
        description="Container image of the primary model. Set either image or deploymentRef.",
    )
    deployment_ref: DeploymentRef | None = Field(
        default=None,
        description="Use a Deployment that already serves the primary model (the usual production case). "
        "The operator reads it and never owns or changes it. Set either image or deploymentRef.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> PrimarySpec:
        require_exactly_one(
            self, ("image", "deployment_ref"), "set exactly one of primary.image or primary.deploymentRef"
        )
        return self


class CandidateSpec(_ModelWorkload):
    """The new model, which sees a copy of live traffic and never answers users."""

    image: str = Field(min_length=1, description="Container image of the candidate model.")
