"""A ShadowDeployment as the operator sees it: identity plus a validated spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..api.base import describe_validation_error
from ..api.v1alpha1 import API_VERSION, KIND, ShadowDeploymentSpec, ShadowDeploymentStatus


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
        raise SpecInvalid(_with_allowlist_hints(error, describe_validation_error(error))) from None
    return ShadowDeployment(identity=identity_of(body), spec=spec, status=parse_status(body))


_NOT_ALLOWED = "not allowed"
_POD_FIELDS = (
    "metadata.labels, metadata.annotations, spec.nodeSelector, tolerations, affinity, topologySpreadConstraints, "
    "priorityClassName, imagePullSecrets, serviceAccountName, automountServiceAccountToken, securityContext, "
    "volumes and containers"
)


def _with_allowlist_hints(error: ValidationError, lines: list[str]) -> list[str]:
    """An unknown field in podTemplate or sink.volume is a refused one, not a typo: say what is allowed.

    `describe_validation_error` gives one line per error, in order, so the two zip.
    """
    hinted = []
    for item, line in zip(error.errors(), lines, strict=True):
        loc = [part for part in item["loc"] if isinstance(part, str)]
        hint = _allowlist_hint(loc) if item["type"] == "extra_forbidden" else None
        hinted.append(f"{line.split(': ', 1)[0]}: {hint}" if hint else line)
    return hinted


def _allowlist_hint(loc: list[str]) -> str | None:
    if loc[:3] in (["recording", "sink", "volume"],):
        return f"{_NOT_ALLOWED}: recording.sink.volume may only be a persistentVolumeClaim or an emptyDir"
    if "podTemplate" not in loc:
        return None
    inside = loc[loc.index("podTemplate") + 1 :]
    parent = inside[-2] if len(inside) >= 2 else "podTemplate"
    if parent == "volumes":
        return (
            f"{_NOT_ALLOWED}: a podTemplate volume may only be configMap, secret, persistentVolumeClaim, emptyDir "
            "or projected (the kinds a model reads from); use one of those, e.g. a persistentVolumeClaim instead "
            "of a hostPath"
        )
    if parent == "securityContext":
        return (
            f"{_NOT_ALLOWED}: only what Pod Security restricted permits may be set here (runAsUser, runAsGroup, "
            "runAsNonRoot, fsGroup, fsGroupChangePolicy, supplementalGroups, seccompProfile, safe sysctls; in a "
            "container also readOnlyRootFilesystem and capabilities.add [NET_BIND_SERVICE]); remove it"
        )
    if parent == "containers":
        return (
            f"{_NOT_ALLOWED}: a podTemplate container may set only name, image, command, args, env, envFrom, "
            "resources, volumeMounts, ports (without hostPort) and securityContext; remove it"
        )
    if parent in ("spec", "metadata", "podTemplate"):
        return (
            f"{_NOT_ALLOWED}: a podTemplate may set only {_POD_FIELDS} (docs/security.md); the operator never "
            "passes anything else (host namespaces, nodeName, other volume kinds...) to the Pods it runs; remove it"
        )
    return f"{_NOT_ALLOWED} in a podTemplate (docs/security.md): remove it"
