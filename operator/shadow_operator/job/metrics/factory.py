"""`provider_for`: the metrics provider of a kind (spec.analysis.<kind>), unknown kinds refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import prometheus
from .provider import MetricsProvider

PROMETHEUS = "prometheus"
_PROVIDERS: dict[str, Callable[[Any], MetricsProvider]] = {PROMETHEUS: prometheus.from_spec}


def provider_for(kind: str, spec: Any) -> MetricsProvider:
    """The provider of `kind` configured from `spec` (a PrometheusSpec or a mapping of its fields)."""
    factory = _PROVIDERS.get(kind)
    if factory is None:
        known = ", ".join(repr(k) for k in sorted(_PROVIDERS))
        raise ValueError(f"unknown metrics provider {kind!r}; known providers: {known}")
    return factory(spec)
