"""References to ConfigMaps, Secrets, their keys and the Pod's fields, and a container's environment made of them."""

from __future__ import annotations

from pydantic import Field, model_validator

from ..base import ApiModel, one_of, require_exactly_one
from .kube_types import FILE_MODE, LABEL_NAME, OBJECT_NAME, RELATIVE_PATH, Quantity


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

    model_config = one_of("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef")

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A field of the Pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(default=None, description="A container's resource.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        require_exactly_one(
            self,
            type(self).model_fields,
            "set exactly one of secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef",
        )
        return self


class EnvVar(ApiModel):
    """One environment variable of a container."""

    name: str = Field(min_length=1, max_length=253, description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: EnvVarSource | None = Field(
        default=None, description="A Secret or ConfigMap key, or a field or resource of the Pod."
    )


class OptionalReference(ApiModel):
    """A ConfigMap or Secret in the namespace."""

    name: OBJECT_NAME = Field(description="Its name.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class EnvFromSource(ApiModel):
    """Every key of a ConfigMap or a Secret as environment variables (exactly one)."""

    model_config = one_of("configMapRef", "secretRef")

    prefix: str | None = Field(default=None, max_length=253, description="Prepended to every variable name.")
    config_map_ref: OptionalReference | None = Field(default=None, description="The ConfigMap.")
    secret_ref: OptionalReference | None = Field(default=None, description="The Secret.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        require_exactly_one(self, ("config_map_ref", "secret_ref"), "set exactly one of configMapRef or secretRef")
        return self
