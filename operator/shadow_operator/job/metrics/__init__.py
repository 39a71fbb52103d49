"""What Prometheus says about both models: provider.py (the two-method interface), factory.py
(provider_for),
prometheus.py (the one provider), promql.py (the queries), collect.py (asking them, and the answers
as slices)."""

from .collect import collect, slices_from_queries
from .factory import PROMETHEUS, provider_for
from .provider import MetricsProvider, MetricsQueryError, MetricsUnavailable

__all__ = [
    "PROMETHEUS",
    "MetricsProvider",
    "MetricsQueryError",
    "MetricsUnavailable",
    "collect",
    "provider_for",
    "slices_from_queries",
]
