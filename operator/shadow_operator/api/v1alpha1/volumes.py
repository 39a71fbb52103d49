"""The volumes a model may read from (configMap, secret, persistentVolumeClaim, emptyDir, projected) and the record sink's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, model_validator

from ..base import ApiModel, one_of, require_exactly_one
from .env import KeyToPath, ObjectFieldSelector, ResourceFieldSelector
from .kube_types import FILE_MODE, LABEL_NAME, OBJECT_NAME, RELATIVE_PATH, Quantity


class _WireMapping:
    """Spreads into a Kubernetes object as its wire form: `{"name": n, **source}`."""

    def keys(self) -> Iterator[str]:
        return iter(self.to_wire())  # type: ignore[attr-defined]

    def __getitem__(self, key: str) -> Any:
        return self.to_wire()[key]  # type: ignore[attr-defined]


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

    model_config = one_of("fieldRef", "resourceFieldRef")

    path: RELATIVE_PATH = Field(description="Relative path of the file.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A field of the Pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(default=None, description="A container's resource.")
    mode: FILE_MODE | None = Field(default=None, description="File mode bits.")

    @model_validator(mode="after")
    def _one_source(self) -> DownwardAPIVolumeFile:
        require_exactly_one(
            self, ("field_ref", "resource_field_ref"), "set exactly one of fieldRef or resourceFieldRef"
        )
        return self


class DownwardAPIProjection(ApiModel):
    """Fields of the Pod as files."""

    items: list[DownwardAPIVolumeFile] | None = Field(default=None, description="The files.")


class VolumeProjection(ApiModel):
    """One source of a projected volume (exactly one)."""

    model_config = one_of("configMap", "secret", "serviceAccountToken", "downwardAPI")

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
        require_exactly_one(
            self, type(self).model_fields, "set exactly one of configMap, secret, serviceAccountToken or downwardAPI"
        )
        return self


class ProjectedVolumeSource(ApiModel):
    """Several ConfigMaps, Secrets, tokens and Pod fields in one directory."""

    sources: list[VolumeProjection] = Field(default_factory=list, description="What goes into the directory.")
    default_mode: FILE_MODE | None = Field(default=None, description="Mode bits of the files.")


VOLUME_KINDS = ("configMap", "secret", "persistentVolumeClaim", "emptyDir", "projected")


class Volume(ApiModel):
    """A volume a model reads from: configMap, secret, persistentVolumeClaim, emptyDir or projected, exactly one."""

    model_config = one_of(*VOLUME_KINDS)

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
        require_exactly_one(
            self,
            (name for name in type(self).model_fields if name != "name"),
            "set exactly one volume source: configMap, secret, persistentVolumeClaim, emptyDir or projected "
            "(no other kind of volume is allowed)",
        )
        return self


class SinkVolume(_WireMapping, ApiModel):
    """Where the collector keeps records: a persistentVolumeClaim or an emptyDir, exactly one."""

    model_config = one_of("persistentVolumeClaim", "emptyDir")

    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = Field(
        default=None, description="A PersistentVolumeClaim in the namespace, e.g. {claimName: shadow-records}."
    )
    empty_dir: EmptyDirVolumeSource | None = Field(default=None, description="An emptyDir (lost with the Pod).")

    @model_validator(mode="after")
    def _one_source(self) -> SinkVolume:
        require_exactly_one(
            self,
            type(self).model_fields,
            "set exactly one of persistentVolumeClaim or emptyDir (no other kind of volume is allowed)",
        )
        return self
