"""A/A through the real router under CPU contention (issue 10, item 2: symmetric measurement).

The candidate is the primary: one model server (benchmarks/aa.py `serve`) plays both roles, so a
model process the hog deschedules delays both answers alike, and whatever separates the two
latency distributions is the router's own measurement. A CPU hog keeps one core busy (it stops by
itself after the run, and is killed when the run ends); a few thousand requests go through
`shadowctl router` on 127.0.0.1; then the comparison job's pipeline (dataset.load ->
stats.compute_slices -> checks.latency_ratio_check) judges the records: at p50, p95 and p99, on
every slice, the ratio's interval contains 1.0 and no latency check fails.
"""

from __future__ import annotations

import pytest
from benchmarks import aa

pytestmark = pytest.mark.timeout(180)

REQUESTS = 3000
CONCURRENCY = 4


def _describe(ratios: list[aa.Ratio]) -> str:
    return "\n".join(
        f"{r.slice} {r.percentile}: primary {r.primary_ms} ms, candidate {r.candidate_ms} ms, ratio "
        f"{r.ratio and round(r.ratio, 3)} [{r.low and round(r.low, 3)}, {r.high and round(r.high, 3)}] passed={r.passed}"
        for r in ratios
    )


def test_identical_candidate_measures_like_the_primary_under_cpu_contention(tmp_path):
    result = aa.run_aa(tmp_path, REQUESTS, CONCURRENCY, contention=True, shared=True, timeout=60)
    assert result.answered == REQUESTS
    assert result.pairs >= REQUESTS - 50  # the warm-up's records are left out; every copy answered
    overall = [r for r in result.ratios if r.slice == "all"]
    assert {r.percentile for r in overall} == {"p50", "p95", "p99"}
    summary = _describe(result.ratios)
    for ratio in result.ratios:
        assert ratio.passed is not False, summary
        # every slice with an interval (all traffic always has one) holds 1.0
        assert ratio.contains_one() or (ratio.slice != "all" and ratio.low is None), summary


def test_latency_is_the_upstream_connections_own(tmp_path):
    """Both sides' latency_ms come from the Protocol's stamps (write -> last byte parsed): with a
    model answering in well under a millisecond, neither side carries the router's own work."""
    result = aa.run_aa(tmp_path, 400, 2, contention=False, shared=True, timeout=30)
    p50 = {r.slice: r for r in result.ratios if r.percentile == "p50"}["all"]
    assert p50.primary_ms is not None and p50.candidate_ms is not None
    assert p50.primary_ms > 0 and p50.candidate_ms > 0
    assert p50.contains_one(), _describe(result.ratios)
