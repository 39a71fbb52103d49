"""Pure helpers for Kubernetes-style conditions (type, status, reason, message, times)."""

from __future__ import annotations

from collections.abc import Iterable

from ..api.v1alpha1 import Condition


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
    conditions = list(conditions)
    existing = find_condition(conditions, type_)
    keep_time = existing is not None and existing.status == wire_status
    updated = Condition(
        type=type_,
        status=wire_status,
        reason=reason,
        message=message,
        last_transition_time=existing.last_transition_time if keep_time else now,
        observed_generation=generation,
    )
    if existing is None:
        return [*conditions, updated]
    return [updated if condition.type == type_ else condition for condition in conditions]


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((condition for condition in conditions if condition.type == type_), None)
