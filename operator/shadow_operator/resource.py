"""A ShadowDeployment as the operator sees it: identity plus a validated spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .api.base import describe_validation_error
from .api.v1alpha1 import API_VERSION, KIND, ShadowDeploymentSpec, ShadowDeploymentStatus


class SpecInvalid(ValueError):
    """The spec fails the models' validation; `problems` name each field."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ObjectIdentity:
    name: str
    namespace: str
    uid: str
    generation: int

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class ShadowDeployment:
    identity: ObjectIdentity
    spec: ShadowDeploymentSpec
    status: ShadowDeploymentStatus

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def namespace(self) -> str:
        return self.identity.namespace


def identity_of(body: Mapping[str, Any]) -> ObjectIdentity:
    metadata = body.get("metadata", {})
    return ObjectIdentity(
        name=metadata["name"],
        namespace=metadata.get("namespace", "default"),
        uid=metadata.get("uid", ""),
        generation=int(metadata.get("generation", 0)),
    )


def parse_status(body: Mapping[str, Any]) -> ShadowDeploymentStatus:
    """The stored status; an unreadable one (older operator, hand edit) counts as empty."""
    try:
        return ShadowDeploymentStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return ShadowDeploymentStatus()


def parse(body: Mapping[str, Any]) -> ShadowDeployment:
    """Validate a ShadowDeployment body; raises SpecInvalid naming every bad field."""
    try:
        # Only the wire names (camelCase) are accepted: the CRD knows no others.
        spec = ShadowDeploymentSpec.model_validate(body.get("spec") or {}, by_alias=True, by_name=False)
    except ValidationError as error:
        raise SpecInvalid(describe_validation_error(error)) from None
    return ShadowDeployment(identity=identity_of(body), spec=spec, status=parse_status(body))
