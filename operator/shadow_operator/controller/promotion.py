"""Promotion, pure: may the candidate become the primary now, and what status says about it.

A promotion is asked for by the annotation `shadow.mlops.dev/promote: <candidate image>`
(`shadowctl promote` sets it) or by `spec.promotion.mode: automatic`. It is accepted only for a
Passed verdict on the current candidate image, in a status computed from the current generation.
An accepted promotion is recorded in status (`status.promotion`), never in the spec: the builders
then run the primary from the recorded candidate workload and leave out the candidate and the
mirror (builders.desired_state), so a GitOps tool that owns the spec sees no drift and has nothing
to revert. The pipeline makes it permanent by committing the image to spec.primary (docs/promotion.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..api.v1alpha1 import Mirror, Phase, PrimarySpec, ShadowDeploymentStatus
from ..api.v1alpha1.status import Promotion
from ..contract import reasons
from ..contract.resource import ShadowDeployment
from .conditions import find_condition, set_condition

PROMOTE_ANNOTATION = "shadow.mlops.dev/promote"

Action = Literal["none", "pending", "refuse", "promote"]


@dataclass(frozen=True)
class Decision:
    """none: nothing asked (or already done); pending: ask again once status caught up with the spec;
    refuse: `message` says why; promote: `record` is the promotion to apply."""

    action: Action = "none"
    message: str = ""
    record: Promotion | None = None
    reason: str = reasons.PROMOTION_REFUSED


NOTHING = Decision()


def requested_image(body: Mapping[str, Any]) -> str | None:
    """The image the annotation asks to promote, if any (blank counts as none)."""
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(PROMOTE_ANNOTATION)
    return value.strip() or None if isinstance(value, str) else None


def promoted(sd: ShadowDeployment) -> bool:
    """Whether the current candidate is the promoted one: candidate and mirror are then torn down."""
    record = sd.status.promotion
    return record is not None and record.image == sd.spec.candidate.image


def refusal(sd: ShadowDeployment, requested: str | None) -> tuple[Action, str]:
    """("promote", "") when the stored status allows promoting the current candidate, else why not.

    "pending" when the status was not yet computed from the current generation: the operator
    computes it in this very pass, so that is a wait, not a refusal. `shadowctl promote` calls this
    too, on the object as it reads it, to refuse before asking.
    """
    status, current = sd.status, sd.spec.candidate.image
    if requested is not None and requested != current:
        return "refuse", f"promotion requested for {requested}, candidate is now {current}"
    generation = sd.identity.generation
    if status.observed_generation != generation:
        return "pending", (
            f"status is for generation {status.observed_generation}, the spec is at {generation}: "
            "waiting for the operator to judge the current spec"
        )
    if status.candidate is not None and status.candidate != current:
        return "refuse", f"verdict is for {status.candidate}, candidate is now {current}"
    verdict = status.verdict
    if verdict is None:
        return "refuse", f"no verdict yet for {current}"
    if verdict.result != "Passed":
        return "refuse", f"verdict is {verdict.result} ({verdict.reason})"
    if status.phase == Phase.ERROR:
        ready = find_condition(status.conditions, reasons.READY)
        return "refuse", f"phase is Error ({ready.reason if ready else 'unknown'}): fix it first"
    return "promote", ""


def decide(sd: ShadowDeployment, requested: str | None, now: str) -> Decision:
    """What to do about promotion in this pass, from the stored status (before this pass's)."""
    if promoted(sd):
        return NOTHING  # done; a repeated annotation or a resync changes nothing
    record = sd.status.promotion
    if requested is not None and record is not None and requested == record.image:
        requested = None  # a leftover request for what was promoted before: satisfied, not refused
    automatic = sd.spec.promotion.mode == "automatic"
    if requested is None and not automatic:
        return NOTHING
    action, why = refusal(sd, requested)
    if action == "refuse" and requested is None:
        return NOTHING  # automatic mode waits for Passed quietly: nobody asked, nothing to refuse
    if action != "promote":
        return Decision(action, why)
    verdict = sd.status.verdict
    assert verdict is not None
    spec = sd.spec
    record = Promotion(
        image=spec.candidate.image,
        replaced=spec.primary.image or f"deployment/{spec.primary.deployment_ref.name}",  # type: ignore[union-attr]
        trigger="manual" if requested is not None else "automatic",
        promoted_at=now,
        generation=sd.identity.generation,
        verdict_evaluated_at=verdict.evaluated_at,
        workload=spec.candidate if spec.primary.image is not None else None,
    )
    return Decision("promote", record=record)


def due(sd: ShadowDeployment, status: ShadowDeploymentStatus, requested: str | None) -> bool:
    """Whether the status just written makes the next pass promote (so it should come soon)."""
    if promoted(sd) or status.phase != Phase.PASSED:
        return False
    if requested is not None:
        return requested == sd.spec.candidate.image
    return sd.spec.promotion.mode == "automatic"


def effective(sd: ShadowDeployment, record: Promotion | None = None) -> ShadowDeployment:
    """`sd` as the builders and status see it: `record` (default: the stored one) in its status and,
    for an operator-run primary, spec.primary replaced by the promoted candidate workload for as
    long as spec.primary.image is still the image the promotion replaced. Once someone changes
    spec.primary.image (the pipeline committing the promotion, or anything else) the spec wins."""
    record = record or sd.status.promotion
    if record is None:
        return sd
    status = sd.status if sd.status.promotion == record else sd.status.model_copy(update={"promotion": record})
    spec = sd.spec
    if record.workload is not None and spec.primary.image is not None and spec.primary.image == record.replaced:
        wire = {**record.workload.to_wire(), "replicas": spec.primary.replicas}
        primary = PrimarySpec.model_validate(wire, by_alias=True, by_name=False)
        spec = spec.model_copy(update={"primary": primary})
    return dataclasses.replace(sd, spec=spec, status=status)


def promoted_message(sd: ShadowDeployment) -> str:
    record = sd.status.promotion
    assert record is not None
    how = "on request" if record.trigger == "manual" else "automatically (spec.promotion.mode)"
    head = (
        f"{record.image} promoted {how} at {record.promoted_at}, on the Passed verdict of {record.verdict_evaluated_at}"
    )
    ref = sd.spec.primary.deployment_ref
    if ref is None:
        return (
            f"{head}: the operator runs the primary with the candidate's image and settings; the candidate and "
            f"the mirror are removed. Set spec.primary.image to {record.image} to make it permanent "
            "(the operator never changes the spec)."
        )
    if record.referenced_deployment_patched:
        return f"{head}: Deployment {ref.name} now runs it; the candidate and the mirror are removed."
    return (
        f"{head}: set Deployment {ref.name}'s image to {record.image} (spec.promotion.patchReferencedDeployment "
        "is false, so the operator leaves that Deployment to you); the candidate and the mirror are removed."
    )


def with_promotion(sd: ShadowDeployment, status: ShadowDeploymentStatus, decision: Decision, now: str):
    """The computed status with promotion applied: phase Promoted and its conditions, or the Promoted
    condition saying why a request is refused. `sd` is the effective object (`effective`)."""
    generation = sd.identity.generation
    conditions = list(status.conditions)
    update: dict[str, Any] = {"promotion": sd.status.promotion}
    if promoted(sd):
        message = promoted_message(sd)
        conditions = set_condition(conditions, reasons.PROMOTED, True, reasons.PROMOTED, message, generation, now)
        if status.phase == Phase.ERROR:  # e.g. the primary could not be applied: Error says what to fix
            return status.model_copy(update={**update, "conditions": conditions})
        nothing = "The candidate was promoted: nothing is mirrored."
        conditions = set_condition(conditions, reasons.MIRRORING, False, reasons.PROMOTED, nothing, generation, now)
        if status.phase != Phase.DEPLOYING:  # while the promoted primary rolls out, Ready says so
            for type_, value, reason, text in (
                (reasons.READY, True, reasons.PROMOTED, message),
                (reasons.RECONCILING, False, reasons.RECONCILED, ""),
                (reasons.STALLED, False, reasons.RECONCILED, ""),
            ):
                conditions = set_condition(conditions, type_, value, reason, text, generation, now)
        mirror = Mirror(state="Inactive", router=sd.spec.traffic.router, percent=0, host=sd.spec.service.name)
        update.update(phase=Phase.PROMOTED, mirror=mirror, conditions=conditions)
        return status.model_copy(update=update)
    if decision.action == "refuse":
        text = f"Promotion of {sd.spec.candidate.image} refused: {decision.message}."
        conditions = set_condition(conditions, reasons.PROMOTED, False, decision.reason, text, generation, now)
    elif decision.action == "none":
        # Nothing asked now (annotation removed, or a new candidate after a promotion): no stale condition.
        conditions = [c for c in conditions if c.type != reasons.PROMOTED]
    return status.model_copy(update={**update, "conditions": conditions})


def referenced_container(names: tuple[str, ...]) -> int | None:
    """Which container of a referenced Deployment is the model: the one named `model`, else the only one."""
    if "model" in names:
        return names.index("model")
    return 0 if len(names) == 1 else None


def image_patch(index: int, name: str, image: str) -> list[dict[str, Any]]:
    """JSON patch setting one container's image; the `test` fails if the containers moved since read."""
    path = f"/spec/template/spec/containers/{index}"
    return [
        {"op": "test", "path": f"{path}/name", "value": name},
        {"op": "replace", "path": f"{path}/image", "value": image},
    ]


def timestamp_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
