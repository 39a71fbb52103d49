"""The PromQL the comparison job asks, rendered by pure functions so the report can show every
query verbatim next to its value."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ...contract.metric_names import ALL_SEGMENTS, REQUEST_DURATION, REQUESTS_TOTAL, SHADOW_LABEL
from ...contract.records import OK, ROLES

QUANTILES = (0.5, 0.95, 0.99)
_WINDOW = re.compile(r"^([0-9]+(ms|[smhdwy]))+$")


def escape_label_value(value: str) -> str:
    """A label value as the inside of a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def window_for(seconds: float) -> str:
    """A Prometheus range duration covering `seconds`, in the largest whole unit: 7d, 1h, 90s.

    Rounded up to whole seconds (at least 1s), so the window never falls short of the period.
    """
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a query window must be a positive number of seconds, not {seconds!r}")
    whole = max(1, math.ceil(round(seconds, 3)))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _check_window(window: str) -> str:
    if not _WINDOW.match(window):
        raise ValueError(f"{window!r} is not a Prometheus duration such as 7d, 1h or 3600s")
    return window


def _selector(metric: str, role: str, segment: str, *extra: str, shadow: str | None = None) -> str:
    """`shadow`: the ShadowDeployment ("namespace/name") whose routers and recorders exported the
    series (their constant `shadow` label); without it, every object a shared Prometheus scrapes counts."""
    matchers = [f'role="{escape_label_value(role)}"', f'segment="{escape_label_value(segment)}"', *extra]
    if shadow is not None:
        matchers.insert(0, f'{SHADOW_LABEL}="{escape_label_value(shadow)}"')
    return f"{metric}{{{','.join(matchers)}}}"


def request_rate_query(role: str, segment: str, window: str, shadow: str | None = None) -> str:
    """Requests per second of one role in one segment, averaged over the window."""
    return f"sum(rate({_selector(REQUESTS_TOTAL, role, segment, shadow=shadow)}[{_check_window(window)}]))"


def requests_query(role: str, segment: str, window: str, shadow: str | None = None) -> str:
    """Requests of one role in one segment during the window."""
    return f"sum(increase({_selector(REQUESTS_TOTAL, role, segment, shadow=shadow)}[{_check_window(window)}]))"


def error_rate_query(role: str, segment: str, window: str, shadow: str | None = None) -> str:
    """Share of requests whose outcome is not ok; 0 (not empty) when there were no errors at all."""
    window = _check_window(window)
    failed = _selector(REQUESTS_TOTAL, role, segment, f'outcome!="{OK}"', shadow=shadow)
    everything = _selector(REQUESTS_TOTAL, role, segment, shadow=shadow)
    return f"(sum(rate({failed}[{window}])) or vector(0)) / sum(rate({everything}[{window}]))"


def latency_quantile_query(quantile: float, role: str, segment: str, window: str, shadow: str | None = None) -> str:
    """Latency quantile in seconds, from the request-duration histogram's buckets."""
    if not 0 <= quantile <= 1:
        raise ValueError(f"a quantile is between 0 and 1, not {quantile!r}")
    buckets = _selector(f"{REQUEST_DURATION}_bucket", role, segment, shadow=shadow)
    return f"histogram_quantile({float(quantile)!r}, sum by (le) (rate({buckets}[{_check_window(window)}])))"


def queries_for(role: str, segment: str, window: str, shadow: str | None = None) -> list[str]:
    """What `collect` asks about one role in one segment: requests, error rate, p50, p95, p99."""
    return [
        requests_query(role, segment, window, shadow),
        error_rate_query(role, segment, window, shadow),
        *(latency_quantile_query(q, role, segment, window, shadow) for q in QUANTILES),
    ]


def plan_queries(segments: Sequence[str], window: str, shadow: str | None = None) -> list[str]:
    """Every query `collect` issues, in order: per role, per segment (`all` first)."""
    ordered = list(dict.fromkeys([ALL_SEGMENTS, *segments]))
    return [query for role in ROLES for segment in ordered for query in queries_for(role, segment, window, shadow)]


# ---------------------------------------------------------------- Prometheus
