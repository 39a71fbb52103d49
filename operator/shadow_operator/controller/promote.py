"""`shadowctl promote NAME`: ask the operator to promote the candidate, and wait for its answer.

The request is the annotation `shadow.mlops.dev/promote: <candidate image>` (controller/promotion.py), the
same one a GitOps pipeline can set, so there is one way in and the operator alone decides. The
command checks the status first with the operator's own rule and refuses without writing
anything when the verdict does not allow it; it needs `get` and `patch` on the ShadowDeployment,
nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from ..api.v1alpha1 import Phase
from ..contract import reasons
from ..contract.resource import SpecInvalid, parse
from ..kube.client import Kube, KubeError, pointer_segment
from .conditions import find_condition
from .promotion import PROMOTE_ANNOTATION, promoted, refusal

PROMOTED, REFUSED, ERROR = 0, 1, 3


class PromoteError(Exception):
    """The command could not do its job (no object, no access): exit 3."""


def _read(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    try:
        body = kube.get("ShadowDeployment", namespace, name)
    except KubeError as error:
        raise PromoteError(f"cannot read ShadowDeployment {namespace}/{name}: {error}") from None
    if body is None:
        raise PromoteError(f"ShadowDeployment {namespace}/{name} not found")
    return body


def _annotate(kube: Kube, namespace: str, name: str, body: dict[str, Any], image: str | None) -> None:
    """Set (image) or remove (None) the promote annotation."""
    annotations = (body.get("metadata") or {}).get("annotations")
    path = f"/metadata/annotations/{pointer_segment(PROMOTE_ANNOTATION)}"
    if image is None:
        if not annotations or PROMOTE_ANNOTATION not in annotations:
            return
        operations = [
            {"op": "test", "path": path, "value": annotations[PROMOTE_ANNOTATION]},
            {"op": "remove", "path": path},
        ]
    elif annotations:
        operations = [{"op": "add", "path": path, "value": image}]
    else:
        operations = [{"op": "add", "path": "/metadata/annotations", "value": {PROMOTE_ANNOTATION: image}}]
    try:
        kube.json_patch("ShadowDeployment", namespace, name, operations)
    except KubeError as error:
        raise PromoteError(f"cannot annotate ShadowDeployment {namespace}/{name}: {error}") from None


def promote(
    kube: Kube,
    namespace: str,
    name: str,
    out: TextIO,
    timeout: float = 120,
    wait: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Exit code: 0 promoted (or requested, without waiting), 1 refused, 3 could not ask."""
    body = _read(kube, namespace, name)
    try:
        sd = parse(body)
    except SpecInvalid as invalid:
        print(f"refused: the spec is invalid: {'; '.join(invalid.problems)}", file=out)
        return REFUSED
    image = sd.spec.candidate.image
    if promoted(sd):
        print(f"{namespace}/{name}: {image} is already promoted.", file=out)
        return PROMOTED
    action, why = refusal(sd, None)
    if action != "promote":
        hint = " (try again in a moment)" if action == "pending" else ""
        print(f"refused: {namespace}/{name}: {why}{hint}", file=out)
        return REFUSED
    _annotate(kube, namespace, name, body, image)
    print(f"{namespace}/{name}: asked the operator to promote {image}", file=out)
    if not wait:
        return PROMOTED
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sleep(1)
        body = _read(kube, namespace, name)
        status = body.get("status") or {}
        record = status.get("promotion") or {}
        conditions = parse(body).status.conditions
        condition = find_condition(conditions, reasons.PROMOTED)
        if record.get("image") == image and status.get("phase") in (Phase.PROMOTED, Phase.ERROR):
            _annotate(kube, namespace, name, body, None)  # done: a leftover would only confuse the next round
            print(f"promoted: {condition.message if condition else image}", file=out)
            return PROMOTED
        if condition is not None and condition.status == "False" and image in (condition.message or ""):
            _annotate(kube, namespace, name, body, None)
            print(f"refused by the operator: {condition.message}", file=out)
            return REFUSED
    print(
        f"{namespace}/{name}: no answer from the operator within {timeout:g}s; the request stays "
        f"(annotation {PROMOTE_ANNOTATION}); watch `kubectl get shadowdeployment {name} -n {namespace}`",
        file=out,
    )
    return ERROR
