"""The metrics provider interface, modelled on Flagger's: a provider answers two questions only
(`is_online`, `run_query`); `provider_for` (factory.py) picks one by kind and rejects unknown kinds.
One file per provider (prometheus.py).

Every query is written to return exactly one series (or none). A provider makes one attempt per
query, bounded by its timeout (connect and first byte together, and the same timeout is passed
to Prometheus).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class MetricsUnavailable(Exception):
    """The metrics backend could not answer: unreachable, timed out, HTTP error, bad response."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MetricsQueryError(MetricsUnavailable):
    """The backend is up but this one query failed (rejected, several series, odd result type)."""


@runtime_checkable
class MetricsProvider(Protocol):
    def is_online(self) -> bool:
        """True when the backend answers queries."""
        ...

    def run_query(self, query: str) -> float | None:
        """The value of an instant query returning one series; None for an empty vector or NaN.

        Raises MetricsUnavailable (or its subclass MetricsQueryError) when there is no answer.
        """
        ...


# ---------------------------------------------------------------- PromQL rendering
