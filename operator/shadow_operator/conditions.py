"""Pure helpers for Kubernetes-style conditions (type, status, reason, message, times)."""

from __future__ import annotations

from collections.abc import Iterable

from .api.v1alpha1 import Condition


def set_condition(
    conditions: Iterable[Condition],
    type_: str,
    status: bool | None,
    reason: str,
    message: str | None,
    generation: int,
    now: str,
) -> list[Condition]:
    """Return `conditions` with `type_` set; lastTransitionTime moves only when status flips."""
    wire_status = {True: "True", False: "False", None: "Unknown"}[status]
    message = message or None  # omitted rather than "", which some API servers store as null
    result: list[Condition] = []
    replaced = False
    for condition in conditions:
        if condition.type != type_:
            result.append(condition)
            continue
        transition = condition.last_transition_time if condition.status == wire_status else now
        result.append(
            Condition(
                type=type_,
                status=wire_status,
                reason=reason,
                message=message,
                last_transition_time=transition,
                observed_generation=generation,
            )
        )
        replaced = True
    if not replaced:
        result.append(
            Condition(
                type=type_,
                status=wire_status,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    return result


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((condition for condition in conditions if condition.type == type_), None)
