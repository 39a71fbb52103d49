"""PromQL rendering, query windows and the provider factory: pure functions, no Prometheus."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from shadow_operator.api.v1alpha1.analysis import PrometheusSpec
from shadow_operator.contract.report import METRICS_ERROR
from shadow_operator.job.metrics.collect import collect
from shadow_operator.job.metrics.factory import provider_for
from shadow_operator.job.metrics.prometheus import PrometheusProvider
from shadow_operator.job.metrics.promql import (
    error_rate_query,
    escape_label_value,
    latency_quantile_query,
    plan_queries,
    queries_for,
    request_rate_query,
    requests_query,
    window_for,
)
from shadow_operator.job.metrics.provider import MetricsProvider, MetricsQueryError, MetricsUnavailable


def test_requests_and_rate():
    assert requests_query("primary", "all", "7d") == (
        'sum(increase(shadow_requests_total{role="primary",segment="all"}[7d]))'
    )
    assert request_rate_query("candidate", "history=<1", "3600s") == (
        'sum(rate(shadow_requests_total{role="candidate",segment="history=<1"}[3600s]))'
    )


def test_error_rate_is_non_ok_over_all_and_zero_without_errors():
    assert error_rate_query("candidate", "history=<1", "1h") == (
        '(sum(rate(shadow_requests_total{role="candidate",segment="history=<1",outcome!="ok"}[1h])) or vector(0))'
        ' / sum(rate(shadow_requests_total{role="candidate",segment="history=<1"}[1h]))'
    )


@pytest.mark.parametrize(("quantile", "text"), [(0.5, "0.5"), (0.95, "0.95"), (0.99, "0.99"), (1, "1.0")])
def test_latency_quantile(quantile, text):
    assert latency_quantile_query(quantile, "primary", "all", "7d") == (
        f"histogram_quantile({text}, sum by (le) "
        '(rate(shadow_request_duration_seconds_bucket{role="primary",segment="all"}[7d])))'
    )


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("history=<1", "history=<1"),
        ('city=a"b', 'city=a\\"b'),
        ("path=C:\\x", "path=C:\\\\x"),
        ('odd=\\"', 'odd=\\\\\\"'),  # backslash first, so the quote's escape is not doubled
        ("two=lines\nhere", "two=lines\\nhere"),
    ],
)
def test_label_values_are_escaped(value, escaped):
    assert escape_label_value(value) == escaped
    assert f'segment="{escaped}"' in requests_query("primary", value, "1h")
    assert f'segment="{escaped}"' in error_rate_query("primary", value, "1h")
    assert f'segment="{escaped}"' in latency_quantile_query(0.5, "primary", value, "1h")


def test_queries_name_one_shadow_deployment_when_asked():
    """The job asks about its own object only: a shared Prometheus scrapes many objects' routers."""
    plan = plan_queries(["history=<1"], "1h", shadow='team-a/rec"sys')
    assert plan and all('{shadow="team-a/rec\\"sys",role=' in query for query in plan), plan
    assert error_rate_query("primary", "all", "1h", "ns/a").count('shadow="ns/a"') == 2
    assert "shadow=" not in requests_query("primary", "all", "1h")


def test_role_is_escaped_too():
    assert 'role="a\\"b"' in request_rate_query('a"b', "all", "1h")


@pytest.mark.parametrize(
    ("seconds", "window"),
    [
        (604800, "7d"),
        (86400, "1d"),
        (129600, "36h"),
        (3600, "1h"),
        (5400, "90m"),
        (60, "1m"),
        (90, "90s"),
        (3600.0004, "1h"),  # float noise is not a second
        (3600.2, "3601s"),  # rounded up: the window covers the whole period
        (0.2, "1s"),
    ],
)
def test_window_for(seconds, window):
    assert window_for(seconds) == window


@pytest.mark.parametrize("seconds", [0, -5, float("inf"), float("nan")])
def test_window_for_rejects_non_positive(seconds):
    with pytest.raises(ValueError, match="positive number of seconds"):
        window_for(seconds)


@pytest.mark.parametrize("window", ["", "7", "1 h", "1h]) or vector(1", "-1h"])
def test_renderers_reject_a_window_that_is_not_a_duration(window):
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        requests_query("primary", "all", window)


@pytest.mark.parametrize("quantile", [-0.1, 1.5])
def test_quantile_outside_0_1(quantile):
    with pytest.raises(ValueError, match="between 0 and 1"):
        latency_quantile_query(quantile, "primary", "all", "1h")


def test_plan_is_per_role_per_segment_all_first_without_duplicates():
    plan = plan_queries(["history=<1", "all", "history=<1"], "1h")
    assert plan == [
        *queries_for("primary", "all", "1h"),
        *queries_for("primary", "history=<1", "1h"),
        *queries_for("candidate", "all", "1h"),
        *queries_for("candidate", "history=<1", "1h"),
    ]
    assert queries_for("primary", "all", "1h") == [
        requests_query("primary", "all", "1h"),
        error_rate_query("primary", "all", "1h"),
        latency_quantile_query(0.5, "primary", "all", "1h"),
        latency_quantile_query(0.95, "primary", "all", "1h"),
        latency_quantile_query(0.99, "primary", "all", "1h"),
    ]


def test_factory_rejects_unknown_kinds_by_name():
    with pytest.raises(ValueError, match="unknown metrics provider 'datadog'; known providers: 'prometheus'"):
        provider_for("datadog", {"url": "http://datadog"})


@pytest.mark.parametrize(
    ("spec", "url", "timeout"),
    [
        (PrometheusSpec(url="http://prometheus.monitoring:9090"), "http://prometheus.monitoring:9090", 10),
        (PrometheusSpec(url="http://p:9090/", timeout="1m30s"), "http://p:9090", 90),
        ({"url": "http://p:9090", "timeout": "500ms"}, "http://p:9090", 0.5),
        ({"url": "http://p:9090"}, "http://p:9090", 10),
        ({"url": "http://p:9090", "timeout": 3}, "http://p:9090", 3),
        ({"url": "http://p:9090", "timeout": timedelta(seconds=2)}, "http://p:9090", 2),
    ],
)
def test_factory_builds_prometheus(spec, url, timeout):
    provider = provider_for("prometheus", spec)
    assert isinstance(provider, PrometheusProvider)
    assert isinstance(provider, MetricsProvider)
    assert (provider.url, provider.timeout) == (url, timeout)


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"timeout": "1s"}, "needs a url"), ({"url": "http://p", "timeout": "0s"}, "must be positive")],
)
def test_factory_rejects_bad_configuration(spec, message):
    with pytest.raises(ValueError, match=message):
        provider_for("prometheus", spec)


# collect() against in-memory providers: ordering, problems, fail-fast.


class FakeProvider:
    def __init__(self, answer):
        self.answer = answer
        self.asked: list[str] = []

    def is_online(self) -> bool:
        return True

    def run_query(self, query: str) -> float | None:
        self.asked.append(query)
        return self.answer(query)


def test_collect_keeps_plan_order_and_lists_empty_answers():
    provider = FakeProvider(lambda q: None if "history" in q and "candidate" in q else 1.0)
    values, problems = asyncio.run(collect(provider, ["history=<1"], 7 * 86400))
    assert list(values) == plan_queries(["history=<1"], "7d")
    empty = queries_for("candidate", "history=<1", "7d")
    assert [q for q, v in values.items() if v is None] == empty
    [problem] = problems
    assert (problem.code, problem.count) == (METRICS_ERROR, 5)
    assert problem.message == "5 of 20 Prometheus queries returned no data: " + "; ".join(empty)


def test_collect_stops_after_the_backend_fails_and_never_raises():
    def answer(query):
        raise MetricsUnavailable("Prometheus at http://p is unreachable: [Errno 111] Connection refused")

    provider = FakeProvider(answer)
    values, problems = asyncio.run(collect(provider, ["a=b", "c=d"], 60, concurrency=2))
    assert values == {}
    assert len(provider.asked) <= 2
    [problem] = problems
    assert (problem.code, problem.count) == (METRICS_ERROR, 30)
    assert problem.message == "Prometheus at http://p is unreachable: [Errno 111] Connection refused"


def test_collect_goes_on_after_one_query_fails():
    def answer(query):
        if query.startswith("histogram_quantile(0.99"):
            raise MetricsQueryError(f"{query!r} returned 2 series, expected one")
        return 0.5

    values, problems = asyncio.run(collect(FakeProvider(answer), [], 60))
    assert len(values) == 8
    [problem] = problems
    assert (problem.code, problem.count) == (METRICS_ERROR, 2)
    assert "returned 2 series" in problem.message


def test_collect_turns_a_provider_bug_into_a_problem():
    def answer(query):
        raise RuntimeError("bug")

    values, problems = asyncio.run(collect(FakeProvider(answer), [], 60, concurrency=1))
    assert values == {}
    assert [(p.code, p.count) for p in problems] == [(METRICS_ERROR, 10)]
    assert problems[0].message.startswith("RuntimeError running ")
