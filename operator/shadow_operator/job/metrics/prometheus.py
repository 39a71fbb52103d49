"""The Prometheus provider: one HTTP API client (prometheus-api-client), one attempt per query."""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import requests
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util import Retry, Timeout

from ...api.durations import parse_duration
from .provider import MetricsQueryError, MetricsUnavailable

DEFAULT_TIMEOUT = "10s"  # PrometheusSpec's default
_QUERY_REJECTED = {400, 422}


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


def from_spec(spec: Any) -> PrometheusProvider:
    """From a PrometheusSpec, or a mapping with `url` and `timeout` (a duration string or seconds)."""
    if isinstance(spec, Mapping):
        url, timeout = spec.get("url"), spec.get("timeout") or DEFAULT_TIMEOUT
    else:
        url, timeout = getattr(spec, "url", None), getattr(spec, "timeout", None) or DEFAULT_TIMEOUT
    return PrometheusProvider(url, _seconds(timeout))
