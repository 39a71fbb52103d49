"""Metrics providers of the comparison job: what Prometheus says about both models.

Modelled on Flagger's metric providers: a provider answers two questions only
(`is_online`, `run_query`), `provider_for` picks one by kind and rejects unknown kinds,
and the PromQL is rendered by pure functions so the report can show every query verbatim
next to its value.

Every query is written to return exactly one series (or none). A provider makes one
attempt per query, bounded by its timeout (connect and first byte together, and the same
timeout is passed to Prometheus); `collect` stops issuing queries after the first
connection-level failure, so a black-holed Prometheus costs about one timeout per report.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import requests
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util import Retry, Timeout

from ..api.durations import parse_duration
from ..contract.metric_names import ALL_SEGMENTS, REQUEST_DURATION, REQUESTS_TOTAL, SHADOW_LABEL
from ..contract.records import OK, ROLES
from ..contract.report import METRICS_ERROR, DataProblem, Latency, SideStats, SliceStats

PROMETHEUS = "prometheus"
DEFAULT_TIMEOUT = "10s"  # PrometheusSpec's default
QUANTILES = (0.5, 0.95, 0.99)
QUERY_CONCURRENCY = 4
# HTTP statuses Prometheus uses for a query it rejects (bad_data, execution); anything
# else (404 on a wrong path, 401/403, 5xx) means the endpoint itself is not usable.
_QUERY_REJECTED = {400, 422}
_WINDOW = re.compile(r"^([0-9]+(ms|[smhdwy]))+$")
_MAX_LISTED_QUERIES = 20


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


class PrometheusProvider:
    """Instant queries against Prometheus's HTTP API, one attempt each, bounded by `timeout`."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url:
            raise ValueError("the prometheus metrics provider needs a url")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"the prometheus query timeout must be positive, not {timeout!r}")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        # Retry(total=0): one attempt, no backoff, no retry on 5xx (the client's default
        # retries three times with backoff). Timeout(total=...): connect and read together.
        self._client = PrometheusConnect(
            url=self.url, retry=Retry(total=0, read=False, redirect=False), timeout=Timeout(total=self.timeout)
        )

    def __repr__(self) -> str:
        return f"PrometheusProvider(url={self.url!r}, timeout={self.timeout})"

    def close(self) -> None:
        self._client.close()

    def is_online(self) -> bool:
        try:
            return self.run_query("vector(1)") == 1.0
        except MetricsUnavailable:
            return False

    def run_query(self, query: str) -> float | None:
        try:
            result = self._client.custom_query(
                query,
                # Prometheus abandons the evaluation itself after the same time.
                params={"timeout": f"{self.timeout:g}"},
                timeout=Timeout(total=self.timeout),
            )
        except PrometheusApiClientException as error:
            status, text = _http_error(str(error))
            if status in _QUERY_REJECTED:
                raise MetricsQueryError(
                    f"Prometheus at {self.url} rejected {query!r}: HTTP {status}: {text}"
                ) from error
            raise MetricsUnavailable(
                f"Prometheus at {self.url} answered {query!r} with HTTP {status}: {text}"
            ) from error
        except (requests.exceptions.JSONDecodeError, KeyError, TypeError) as error:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} sent a malformed answer to {query!r}: {type(error).__name__}: {error}"
            ) from error
        except requests.RequestException as error:
            if _timed_out(error):
                raise MetricsUnavailable(
                    f"Prometheus at {self.url} did not answer {query!r} within {self.timeout:g}s"
                ) from error
            raise MetricsUnavailable(f"Prometheus at {self.url} is unreachable: {_cause(error)}") from error
        return _single_value(self.url, query, result)


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _http_error(text: str) -> tuple[int | None, str]:
    """(status, Prometheus's own error text) from the client's `HTTP Status Code 400 (b'{...}')`."""
    match = re.match(r"HTTP Status Code (\d+) \((b(['\"]).*\3)\)$", text, re.DOTALL)
    if not match:
        return None, _shorten(text)
    try:
        body = ast.literal_eval(match.group(2)).decode("utf-8", "replace")
    except (ValueError, SyntaxError):
        return int(match.group(1)), _shorten(text)
    try:
        answer = json.loads(body)
        detail = f"{answer.get('errorType', 'error')}: {answer['error']}"
    except (ValueError, TypeError, KeyError, AttributeError):
        detail = body.strip() or "(empty body)"
    return int(match.group(1)), _shorten(detail)


def _timed_out(error: requests.RequestException) -> bool:
    reason = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(reason, urllib3.exceptions.NewConnectionError):  # a subclass of ConnectTimeoutError
        return False
    return isinstance(error, requests.exceptions.Timeout) or isinstance(reason, urllib3.exceptions.TimeoutError)


def _cause(error: requests.RequestException) -> str:
    """`[Errno 111] Connection refused` rather than urllib3's retry wrapper around it."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    text = str(reason or error)
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return errno.group(0).strip() if errno else _shorten(text)


def _number(url: str, query: str, sample: Any) -> float | None:
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError) as error:
        raise MetricsUnavailable(f"Prometheus at {url} sent a malformed sample for {query!r}: {sample!r}") from error
    return None if math.isnan(value) else value


def _single_value(url: str, query: str, result: Any) -> float | None:
    """The one value of an instant query's result (vector or scalar)."""
    if not isinstance(result, list):
        raise MetricsUnavailable(f"Prometheus at {url} sent a malformed answer to {query!r}: {result!r:.200}")
    if len(result) == 2 and isinstance(result[0], (int, float)) and isinstance(result[1], str):
        return _number(url, query, result)  # a scalar: [timestamp, "value"]
    if not result:
        return None
    if len(result) > 1:
        labels = [series.get("metric") for series in result[:3] if isinstance(series, dict)]
        raise MetricsQueryError(f"{query!r} returned {len(result)} series, expected one: {labels}")
    series = result[0]
    if not isinstance(series, dict) or "value" not in series:
        raise MetricsQueryError(f"{query!r} did not return an instant vector: {series!r:.200}")
    return _number(url, query, series["value"])


# ---------------------------------------------------------------- factory


def _seconds(timeout: Any) -> float:
    if isinstance(timeout, timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, str):
        return parse_duration(timeout).total_seconds()
    return float(timeout)


def _prometheus(spec: Any) -> PrometheusProvider:
    """From a PrometheusSpec, or a mapping with `url` and `timeout` (a duration string or seconds)."""
    if isinstance(spec, Mapping):
        url, timeout = spec.get("url"), spec.get("timeout") or DEFAULT_TIMEOUT
    else:
        url, timeout = getattr(spec, "url", None), getattr(spec, "timeout", None) or DEFAULT_TIMEOUT
    return PrometheusProvider(url, _seconds(timeout))


_PROVIDERS = {PROMETHEUS: _prometheus}


def provider_for(kind: str, spec: Any) -> MetricsProvider:
    """The provider of `kind` configured from `spec` (a PrometheusSpec or a mapping of its fields)."""
    factory = _PROVIDERS.get(kind)
    if factory is None:
        known = ", ".join(repr(k) for k in sorted(_PROVIDERS))
        raise ValueError(f"unknown metrics provider {kind!r}; known providers: {known}")
    return factory(spec)


# ---------------------------------------------------------------- collection


async def collect(
    provider: MetricsProvider,
    segments: list[str],
    window_seconds: float,
    concurrency: int = QUERY_CONCURRENCY,
    shadow: str | None = None,
) -> tuple[dict[str, float | None], list[DataProblem]]:
    """Ask `provider` every query of `plan_queries`; never raises.

    Returns the answered queries in plan order ({PromQL: value}, None for no data) and the
    problems: one METRICS_ERROR with the first failure's message when queries failed (after
    a connection-level failure no further queries are started), one listing the queries
    that returned nothing.
    """
    plan = plan_queries(segments, window_for(window_seconds), shadow)
    answered: dict[int, float | None] = {}
    failures: list[str] = []
    unavailable = False
    gate = asyncio.Semaphore(max(1, concurrency))

    async def ask(index: int, query: str) -> None:
        nonlocal unavailable
        async with gate:
            if unavailable:
                return
            try:
                answered[index] = await asyncio.to_thread(provider.run_query, query)
            except MetricsQueryError as error:
                failures.append(error.message)
            except MetricsUnavailable as error:
                failures.append(error.message)
                unavailable = True
            except Exception as error:  # a provider bug must not lose the whole report
                failures.append(f"{type(error).__name__} running {query!r}: {error}")
                unavailable = True

    await asyncio.gather(*(ask(i, q) for i, q in enumerate(plan)))

    values = {plan[i]: answered[i] for i in sorted(answered)}
    problems: list[DataProblem] = []
    if failures:
        problems.append(DataProblem(code=METRICS_ERROR, count=len(plan) - len(answered), message=failures[0]))
    empty = [query for query, value in values.items() if value is None]
    if empty:
        listed = "; ".join(empty[:_MAX_LISTED_QUERIES])
        more = f"; and {len(empty) - _MAX_LISTED_QUERIES} more" if len(empty) > _MAX_LISTED_QUERIES else ""
        problems.append(
            DataProblem(
                code=METRICS_ERROR,
                count=len(empty),
                message=f"{len(empty)} of {len(plan)} Prometheus queries returned no data: {listed}{more}",
            )
        )
    return values, problems


# ---------------------------------------------------------------- answers as slices

METRICS_SEGMENT_PREFIX = "prometheus:"


def slices_from_queries(
    queries: Mapping[str, float | None], segments: Sequence[str], window_seconds: float, shadow: str | None = None
) -> list[SliceStats]:
    """Prometheus's answers as slices (segment `prometheus:<segment>`): all traffic, not just
    the sampled records, for the error-rate and latency checks. A segment with any answer
    missing is left out (collect already listed it as a problem)."""
    window = window_for(window_seconds)
    result = []
    for segment in dict.fromkeys([ALL_SEGMENTS, *segments]):
        sides = {}
        for role in ROLES:
            requests_, error_rate, *quantiles = (queries.get(q) for q in queries_for(role, segment, window, shadow))
            if requests_ is None or error_rate is None or any(v is None or not math.isfinite(v) for v in quantiles):
                break
            count = round(requests_)
            p50, p95, p99 = (v * 1000 for v in quantiles)
            sides[role] = SideStats(
                requests=count,
                errors=round(error_rate * count),
                error_rate=error_rate,
                latency_ms=Latency(p50=p50, p95=p95, p99=p99),
            )
        if len(sides) == len(ROLES):
            result.append(
                SliceStats(
                    segment=f"{METRICS_SEGMENT_PREFIX}{segment}",
                    pairs=min(side.requests for side in sides.values()),
                    primary=sides["primary"],
                    candidate=sides["candidate"],
                )
            )
    return result
