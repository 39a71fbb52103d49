"""The router's central promise: a slow or hanging candidate never delays the client's answer.

Asserted per request, against a bound far below the candidate's delay: a router that waited
for the copy (even once, even for one request) fails here.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shadow_operator.contract import metric_names as m

from .test_router import start, upstreams  # noqa: F401  (fixtures: real router processes, loopback upstreams)

REQUESTS = 60
# The candidate sleeps 2 s ("slow") or forever ("hang"); a client answer taking a quarter of
# that means the router waited for the copy. Generous for a loaded 2-core machine: the
# primary answers a loopback request in about a millisecond.
BOUND_SECONDS = 0.5


@pytest.mark.parametrize("mode", ["slow", "hang"])
def test_a_slow_or_hanging_candidate_never_delays_the_answer(start, mode):  # noqa: F811
    router = start("--candidate-timeout", "5s", "--max-in-flight", str(REQUESTS * 2), name=f"isolation-{mode}")

    def timed(i: int) -> tuple[float, int, object]:
        began = time.monotonic()
        status, _, body = router.post({"mode": mode, "x": i})
        return time.monotonic() - began, status, json.loads(body)["prediction"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(timed, range(REQUESTS)))
    assert [(status, prediction) for _, status, prediction in answers] == [(200, i) for i in range(REQUESTS)]
    slowest = max(seconds for seconds, _, _ in answers)
    assert slowest < BOUND_SECONDS, f"a client waited {slowest:.3f}s: the router waited for the candidate"
    # The copies really went out and were still pending or slow when every answer was in.
    assert router.metric(m.MIRROR_TOTAL, result="sampled") == REQUESTS
    if mode == "hang":
        assert router.metric("shadow_mirror_in_flight") > 0
