"""The Prometheus metrics provider against a real Prometheus scraping known counters.

The exporter's counters grow linearly at known rates from a shared zero (see
LinearExporter), so error rates, latency quantiles and even increase() have exact expected
values. Misbehaving endpoints (closed port, HTTP 500, black hole, silence) must turn into
MetricsUnavailable quickly and into a MetricsError problem in `collect`, never an exception.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from shadow_demo.stack import SCRAPE_JOB, Prometheus
from shadow_operator.api.v1alpha1.analysis import PrometheusSpec
from shadow_operator.contract.metric_names import REQUEST_DURATION, REQUESTS_TOTAL
from shadow_operator.contract.report import METRICS_ERROR
from shadow_operator.job.metrics.collect import QUERY_CONCURRENCY, collect
from shadow_operator.job.metrics.factory import provider_for
from shadow_operator.job.metrics.prometheus import PrometheusProvider
from shadow_operator.job.metrics.promql import (
    error_rate_query,
    latency_quantile_query,
    plan_queries,
    request_rate_query,
    requests_query,
)
from shadow_operator.job.metrics.provider import MetricsQueryError, MetricsUnavailable

from .harness import free_port, wait_for
from .prometheus_harness import (
    BlackHole,
    CannedServer,
    LinearExporter,
    Series,
    SilentServer,
    ensure_prometheus,
)

HISTORY = "history=<1"
ODD = 'city=a"b\\c'  # a label value PromQL must escape
SAMPLES = 5
WINDOW_SECONDS = 3600  # renders as 1h: holds every sample the exporter ever served

# Requests per second by (role, segment) and outcome.
REQUEST_RATES = {
    ("primary", "all"): {"ok": 297, "http_5xx": 3},  # error rate 0.01
    ("candidate", "all"): {"ok": 282, "http_5xx": 10, "timeout": 8},  # 0.06: every non-ok outcome counts
    ("primary", HISTORY): {"ok": 99, "http_5xx": 1},  # 0.01
    ("candidate", HISTORY): {"ok": 92, "http_5xx": 8},  # 0.08
    ("primary", ODD): {"ok": 10},  # no error series at all: 0, not empty
}
# Cumulative requests per second at or below each bound, per 100 requests per second.
BOUNDS = ("0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf")
BUCKETS = {"primary": (20, 50, 90, 98, 100, 100, 100), "candidate": (5, 25, 60, 90, 96, 100, 100)}
SCALE = {"all": 3, HISTORY: 1}
# histogram_quantile interpolates linearly inside the bucket that holds rank q * total.
LATENCY = {
    "primary": {0.5: 0.025 + 0.025 * 30 / 30, 0.95: 0.1 + 0.15 * 5 / 8, 0.99: 0.25 + 0.25 * 1 / 2},
    "candidate": {0.5: 0.05 + 0.05 * 25 / 35, 0.95: 0.25 + 0.25 * 5 / 6, 0.99: 0.5 + 0.5 * 3 / 4},
}
EXACT = {"rel": 1e-9, "abs": 1e-12}


def exporter_series() -> list[Series]:
    series = [
        Series(REQUESTS_TOTAL, {"role": role, "segment": segment, "outcome": outcome}, rate)
        for (role, segment), outcomes in REQUEST_RATES.items()
        for outcome, rate in outcomes.items()
    ]
    for role, cumulative in BUCKETS.items():
        for segment, scale in SCALE.items():
            labels = {"role": role, "segment": segment}
            series += [
                Series(f"{REQUEST_DURATION}_bucket", {**labels, "le": le}, n * scale)
                for le, n in zip(BOUNDS, cumulative, strict=True)
            ]
            series.append(Series(f"{REQUEST_DURATION}_sum", labels, 10.0 * scale))
            series.append(Series(f"{REQUEST_DURATION}_count", labels, cumulative[-1] * scale))
    return series


@dataclass
class Backend:
    prometheus: Prometheus
    exporter: LinearExporter
    provider: PrometheusProvider


@pytest.fixture(scope="session")
def prometheus_binary():
    try:
        return ensure_prometheus()
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def backend(prometheus_binary, tmp_path_factory) -> Iterator[Backend]:
    exporter = LinearExporter(
        exporter_series(), {REQUESTS_TOTAL: "counter", REQUEST_DURATION: "histogram"}, SAMPLES
    ).start()
    prometheus = Prometheus(tmp_path_factory.mktemp("prometheus"), [exporter.address], str(prometheus_binary))
    provider = PrometheusProvider(prometheus.url, timeout=5)
    prometheus.start()
    try:
        prometheus.wait_ready(timeout=20)
        wait_for(lambda: provider.run_query(f'up{{job="{SCRAPE_JOB}"}}') == 1, timeout=10, what="the first scrape")
        wait_for(lambda: exporter.frozen, timeout=SAMPLES + 5, what=f"{SAMPLES} scrapes")
        stored = f'count_over_time({REQUESTS_TOTAL}{{role="primary",segment="all",outcome="ok"}}[1h])'
        wait_for(lambda: provider.run_query(stored) == SAMPLES, timeout=5, what=f"{SAMPLES} samples stored")
        # More than 1.1 sample intervals after the last sample, rate() stops extrapolating to "now".
        time.sleep(max(0.0, exporter.timestamps[-1] / 1000 + 2.0 - time.time()))
        yield Backend(prometheus, exporter, provider)
    except BaseException:
        print("---- prometheus log (tail) ----\n" + prometheus.log_tail())
        raise
    finally:
        provider.close()
        prometheus.stop()
        exporter.stop()


def rate_of(role: str, segment: str) -> float:
    return sum(REQUEST_RATES[(role, segment)].values())


def test_collect_renders_and_answers_every_query(backend):
    values, problems = asyncio.run(collect(backend.provider, [HISTORY], WINDOW_SECONDS))

    assert problems == []
    assert list(values) == plan_queries([HISTORY], "1h")
    assert len(values) == 2 * 2 * 5
    # The exact text a reader of the report sees.
    assert values['sum(increase(shadow_requests_total{role="primary",segment="history=<1"}[1h]))'] == pytest.approx(
        backend.exporter.expected_increase(100), **EXACT
    )
    assert values[
        '(sum(rate(shadow_requests_total{role="primary",segment="history=<1",outcome!="ok"}[1h])) or vector(0))'
        ' / sum(rate(shadow_requests_total{role="primary",segment="history=<1"}[1h]))'
    ] == pytest.approx(0.01, **EXACT)
    assert values[
        '(sum(rate(shadow_requests_total{role="candidate",segment="history=<1",outcome!="ok"}[1h])) or vector(0))'
        ' / sum(rate(shadow_requests_total{role="candidate",segment="history=<1"}[1h]))'
    ] == pytest.approx(0.08, **EXACT)
    assert values[
        "histogram_quantile(0.99, sum by (le) "
        '(rate(shadow_request_duration_seconds_bucket{role="candidate",segment="history=<1"}[1h])))'
    ] == pytest.approx(0.875, **EXACT)
    assert values[
        "histogram_quantile(0.99, sum by (le) "
        '(rate(shadow_request_duration_seconds_bucket{role="primary",segment="all"}[1h])))'
    ] == pytest.approx(0.375, **EXACT)

    for role in ("primary", "candidate"):
        for segment in ("all", HISTORY):
            errors = sum(n for outcome, n in REQUEST_RATES[(role, segment)].items() if outcome != "ok")
            assert values[requests_query(role, segment, "1h")] == pytest.approx(
                backend.exporter.expected_increase(rate_of(role, segment)), **EXACT
            )
            assert values[error_rate_query(role, segment, "1h")] == pytest.approx(
                errors / rate_of(role, segment), **EXACT
            )
            for quantile, expected in LATENCY[role].items():
                assert values[latency_quantile_query(quantile, role, segment, "1h")] == pytest.approx(expected, **EXACT)


def test_request_rate_and_escaped_label_values(backend):
    provider = backend.provider
    increase = backend.exporter.expected_increase(1)
    assert provider.run_query(request_rate_query("candidate", "all", "1h")) == pytest.approx(
        300 * increase / 3600, **EXACT
    )
    # The escaped value reaches the series whose label holds a quote and a backslash.
    assert requests_query("primary", ODD, "1h") == (
        'sum(increase(shadow_requests_total{role="primary",segment="city=a\\"b\\\\c"}[1h]))'
    )
    assert provider.run_query(requests_query("primary", ODD, "1h")) == pytest.approx(10 * increase, **EXACT)
    # No non-ok series at all: an error rate of 0, not an empty answer.
    assert provider.run_query(error_rate_query("primary", ODD, "1h")) == 0.0


def test_empty_vectors_are_none_and_listed(backend):
    nowhere = "country=nowhere"
    assert backend.provider.run_query(requests_query("primary", nowhere, "1h")) is None
    # A segment with series but no latency observations at all is NaN, also "no data".
    assert backend.provider.run_query(latency_quantile_query(0.5, "primary", ODD, "1h")) is None

    values, problems = asyncio.run(collect(backend.provider, [HISTORY, nowhere], WINDOW_SECONDS))

    empty = [query for query, value in values.items() if value is None]
    assert len(values) == 2 * 3 * 5
    assert empty == [q for q in plan_queries([HISTORY, nowhere], "1h") if f'segment="{nowhere}"' in q]
    assert len(empty) == 10
    [problem] = problems
    assert problem.code == METRICS_ERROR
    assert problem.count == 10
    assert problem.message.startswith("10 of 30 Prometheus queries returned no data: ")
    assert all(query in problem.message for query in empty)


def test_queries_that_cannot_be_answered_as_one_value(backend):
    with pytest.raises(
        MetricsQueryError, match=f"returned {sum(map(len, REQUEST_RATES.values()))} series, expected one"
    ):
        backend.provider.run_query(REQUESTS_TOTAL)
    with pytest.raises(
        MetricsQueryError, match=r"rejected 'sum\(rate\(': HTTP 400: bad_data: .*unclosed left parenthesis"
    ):
        backend.provider.run_query("sum(rate(")
    assert backend.provider.run_query("scalar(vector(2.5))") == 2.5  # a scalar result is one value too


def test_online_through_the_factory(backend):
    provider = provider_for("prometheus", PrometheusSpec(url=backend.prometheus.url + "/", timeout="2s"))
    assert provider.is_online()
    assert provider.timeout == 2


def test_closed_port_is_unavailable_quickly():
    provider = provider_for("prometheus", {"url": f"http://127.0.0.1:{free_port()}", "timeout": "5s"})
    started = time.monotonic()
    assert provider.is_online() is False
    with pytest.raises(MetricsUnavailable, match=r"unreachable: \[Errno 111\] Connection refused"):
        provider.run_query("vector(1)")
    values, problems = asyncio.run(collect(provider, [HISTORY], WINDOW_SECONDS))
    # A refused connect fails at once: the probe, the query and collect's first batch together
    # take less than one timeout, however loaded the machine (waiting it out would take 5s each).
    assert time.monotonic() - started < provider.timeout
    assert values == {}
    [problem] = problems
    assert problem.code == METRICS_ERROR
    assert problem.count == 20
    assert "Connection refused" in problem.message


def test_http_500_is_unavailable_without_retries():
    server = CannedServer(500, b'{"status":"error","error":"boom"}').start()
    try:
        provider = PrometheusProvider(server.url, timeout=2)
        with pytest.raises(MetricsUnavailable, match=r"answered 'vector\(1\)' with HTTP 500: error: boom") as raised:
            provider.run_query("vector(1)")
        assert not isinstance(raised.value, MetricsQueryError)
        assert server.hits == 1  # the client library's default would retry three times with backoff
        assert provider.is_online() is False
        values, problems = asyncio.run(collect(provider, [HISTORY], WINDOW_SECONDS))
        assert values == {}
        assert [p.code for p in problems] == [METRICS_ERROR]
        assert "HTTP 500: error: boom" in problems[0].message
        assert server.hits <= 2 + QUERY_CONCURRENCY  # collect stops after the first failure
    finally:
        server.stop()


def test_answer_that_is_not_prometheus_json():
    server = CannedServer(200, b"<html>login</html>", "text/html").start()
    try:
        with pytest.raises(MetricsUnavailable, match="malformed answer"):
            PrometheusProvider(server.url, timeout=2).run_query("vector(1)")
    finally:
        server.stop()


@pytest.mark.parametrize("endpoint", [BlackHole, SilentServer], ids=["connect-black-holed", "never-answers"])
def test_timeout_bounds_every_call(endpoint):
    hole = endpoint()
    try:
        # Bounds derived from the timeout, generous for a loaded machine: unbounded calls would hang.
        timeout = 2
        provider = PrometheusProvider(hole.url, timeout=timeout)
        started = time.monotonic()
        with pytest.raises(MetricsUnavailable, match=r"did not answer 'vector\(1\)' within 2s"):
            provider.run_query("vector(1)")
        assert timeout * 0.9 < time.monotonic() - started < timeout * 5

        asked: list[str] = []
        run_query = provider.run_query

        def counting(query: str) -> float | None:
            asked.append(query)
            return run_query(query)

        provider.run_query = counting
        values, problems = asyncio.run(collect(provider, [HISTORY], WINDOW_SECONDS))
        # The first batch times out together and the rest never starts (20 queries, 4 at a time,
        # would otherwise take 5 timeouts): counted, not timed, so a loaded machine cannot fail it.
        assert len(asked) == QUERY_CONCURRENCY
        assert values == {}
        assert [(p.code, p.count) for p in problems] == [(METRICS_ERROR, 20)]
    finally:
        hole.close()
