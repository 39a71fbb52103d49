"""The mirror's circuit breaker, on a fake clock."""

from __future__ import annotations

from shadow_operator.router.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_connection_failures_and_probes_once_a_second():
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, probe_interval=1.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.connection_failed()
    assert breaker.allow() and not breaker.open
    breaker.connection_failed()
    assert breaker.open
    assert [breaker.allow() for _ in range(5)] == [False] * 5
    clock.now += 1.0
    assert breaker.allow(), "one probe per interval"
    assert not breaker.allow()
    breaker.connection_failed()  # the probe failed too: stay open
    clock.now += 0.5
    assert not breaker.allow()
    clock.now += 0.5
    assert breaker.allow()
    breaker.reached()  # the probe got an answer: closed again
    assert not breaker.open
    assert all(breaker.allow() for _ in range(10))


def test_an_answer_resets_the_count():
    breaker = CircuitBreaker(threshold=3)
    breaker.connection_failed()
    breaker.connection_failed()
    breaker.reached()
    breaker.connection_failed()
    breaker.connection_failed()
    assert not breaker.open
