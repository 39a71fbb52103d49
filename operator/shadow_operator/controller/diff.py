"""Does a live object already have every field the operator wants? (Then nothing is written.)"""

from __future__ import annotations

from decimal import InvalidOperation
from typing import Any

from kubernetes.utils import parse_quantity

_EMPTY: tuple[Any, ...] = (None, {}, [], "")


def contains(live: Any, desired: Any) -> bool:
    """True when `live` holds every field of `desired` with an equal value.

    Fields the API server adds (defaults, status, clusterIP) are ignored; values it
    normalises (`1000m` -> `1`, `0.5` -> `500m`) compare by meaning; an empty desired
    value matches an absent one, because the server drops empty lists and maps.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return live is None and all(v in _EMPTY for v in desired.values())
        return all(
            (key in live and contains(live[key], value)) or (key not in live and value in _EMPTY)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if live is None:
            return not desired
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(desired) is type(live) and desired == live
    if desired == live:
        return True
    if isinstance(desired, (str, int, float)) and isinstance(live, (str, int, float)):
        return _same_quantity(desired, live)
    return False


def _same_quantity(a: str | int | float, b: str | int | float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    try:
        return parse_quantity(a) == parse_quantity(b)
    except (ValueError, InvalidOperation, TypeError):
        return False
