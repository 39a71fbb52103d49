"""A comparison report built by hand: a candidate that fails on users without purchase history.

The candidate raises KeyError('purchase_count') when the feature is absent (segment `history=<1`),
so its error rate there is 4.13% against a 1% limit; everywhere else it is fine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from shadow_operator.api.v1alpha1 import Check, Verdict
from shadow_operator.contract.metric_names import LATENCY_BUCKETS
from shadow_operator.contract.report import (
    CORRUPT_RECORD,
    METRICS_ERROR,
    DataProblem,
    ErrorText,
    HistogramBucket,
    Latency,
    Report,
    ReportCoverage,
    SideStats,
    SliceStats,
)

FAILING_SEGMENT = "history=<1"
KEY_ERROR = "KeyError: 'purchase_count'"
VERDICT_REASON = "CandidateErrors"
START_TS = 1714521600.0  # 2024-05-01T00:00:00Z
BOUNDS_MS = [b * 1000 for b in LATENCY_BUCKETS] + [1e308]


def _lognormal_histogram(requests: int, median_ms: float, sigma: float) -> tuple[list[HistogramBucket], Latency]:
    """Bucket counts and percentiles of a log-normal latency distribution."""

    def cdf(ms: float) -> float:
        if ms >= 1e300:
            return 1.0
        return 0.5 * (1 + math.erf((math.log(ms) - math.log(median_ms)) / (sigma * math.sqrt(2))))

    buckets, below = [], 0
    for bound in BOUNDS_MS:
        upto = round(requests * cdf(bound))
        buckets.append(HistogramBucket(le_ms=bound, count=upto - below))
        below = upto
    z = {"p50": 0.0, "p95": 1.6449, "p99": 2.3263}
    latency = Latency(**{q: median_ms * math.exp(sigma * v) for q, v in z.items()})
    return buckets, latency


def side(
    requests: int,
    errors: int,
    median_ms: float,
    sigma: float = 0.6,
    top_errors: Sequence[tuple[str, int]] = (),
) -> SideStats:
    histogram, latency = _lognormal_histogram(requests, median_ms, sigma)
    return SideStats(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else None,
        outcomes={"ok": requests - errors, "error": errors} if errors else {"ok": requests},
        top_errors=[ErrorText(text=t, count=n) for t, n in top_errors],
        latency_ms=latency,
        latency_histogram=histogram,
    )


def segment_slice(
    segment: str, pairs: int, candidate_errors: int, agreement: float, median_ms: float = 51.0, **kwargs
) -> SliceStats:
    primary_errors = max(1, pairs // 900)
    return SliceStats(
        segment=segment,
        pairs=pairs,
        primary=side(pairs, primary_errors, 42.0, top_errors=[("ValueError: negative basket size", primary_errors)]),
        candidate=side(pairs, candidate_errors, median_ms, sigma=0.7, **kwargs),
        agreement=agreement,
        comparable=pairs - candidate_errors - primary_errors,
        feature_missing={"$.features.purchase_count": 0.065, "$.features.last_seen_days": 0.0},
    )


def hour_slices(segment: str = "all") -> list[SliceStats]:
    """Hour-of-day slices: less traffic at night, the candidate's errors peak in the evening."""
    slices = []
    for hour in range(24):
        if hour == 4:
            continue  # an hour without traffic: the line breaks there
        pairs = int(1200 + 1000 * math.sin((hour - 6) / 24 * 2 * math.pi))
        candidate_errors = int(pairs * (0.004 + 0.01 * max(0.0, math.sin((hour - 12) / 12 * math.pi))))
        slices.append(
            SliceStats(
                segment=segment,
                hour=hour,
                pairs=pairs,
                primary=SideStats(requests=pairs, errors=pairs // 900, error_rate=(pairs // 900) / pairs),
                candidate=SideStats(requests=pairs, errors=candidate_errors, error_rate=candidate_errors / pairs),
                agreement=0.972 - 0.01 * max(0.0, math.sin((hour - 12) / 12 * math.pi)),
                comparable=pairs - candidate_errors,
            )
        )
    return slices


def make_checks(extra_segments: Sequence[str] = ()) -> list[Check]:
    checks = [
        Check(
            name="errorRate",
            segment="all",
            primary=0.0011,
            candidate=0.0094,
            threshold=0.01,
            passed=True,
            samples=48210,
        ),
        Check(
            name="latencyP99Ratio",
            segment="all",
            primary=168.7,
            candidate=231.5,
            threshold=1.5,
            passed=True,
            samples=48210,
            message="candidate p99 231.5 ms is 1.37x the primary's 168.7 ms",
        ),
        Check(name="agreement", segment="all", candidate=0.9712, threshold=0.95, passed=True, samples=47540),
        Check(
            name="errorRate",
            segment="history=1-100",
            primary=0.001,
            candidate=0.0031,
            threshold=0.01,
            passed=True,
            samples=31870,
        ),
        Check(
            name="latencyP99Ratio",
            segment="history=>=100",
            primary=170.2,
            candidate=None,
            threshold=1.5,
            passed=None,
            samples=64,
            message="64 pairs, fewer than minSamplesPerSegment (100)",
        ),
        Check(name="agreement", segment=FAILING_SEGMENT, candidate=0.9530, threshold=0.95, passed=True, samples=2983),
        Check(
            name="errorRate",
            segment=FAILING_SEGMENT,
            primary=0.0016,
            candidate=0.0413,
            threshold=0.01,
            passed=False,
            samples=3120,
            message=f"candidate error rate 4.13% > 1.00% (95% interval 3.47%-4.85%); {KEY_ERROR} in 127",
        ),
    ]
    checks += [
        Check(name="errorRate", segment=s, primary=0.001, candidate=0.002, threshold=0.01, passed=True, samples=500)
        for s in extra_segments
    ]
    return checks


def hour_checks(
    name: str = "errorRate",
    segment: str = "all",
    failing: Sequence[int] = (),
    inconclusive: Sequence[int] = (),
    hours: Sequence[int] = range(24),
) -> list[Check]:
    """One check per hour of day of `segment`: passing but for the hours given."""
    checks = []
    for hour in hours:
        passed = False if hour in failing else None if hour in inconclusive else True
        candidate = 0.03 if passed is False else 0.004
        checks.append(
            Check(
                name=name,
                segment=segment,
                hour=hour,
                primary=0.001,
                candidate=candidate,
                threshold=0.01,
                passed=passed,
                samples=2000,
                message=None if passed else f"candidate error rate {candidate:.1%} at {hour:02d}:00",
            )
        )
    return checks


def make_report(
    extra_segments: Sequence[str] = (),
    result: str = "Failed",
    reason: str = VERDICT_REASON,
    extra_checks: Sequence[Check] = (),
) -> Report:
    slices = [
        segment_slice("all", 48210, 453, 0.9712, top_errors=[(KEY_ERROR, 127), ("TimeoutError: no answer in 2s", 6)]),
        segment_slice(
            FAILING_SEGMENT,
            3120,
            129,
            0.9530,
            median_ms=38.0,
            top_errors=[(KEY_ERROR, 127), ("TimeoutError: no answer in 2s", 2)],
        ),
        segment_slice("history=1-100", 31870, 99, 0.9741),
        segment_slice("history=>=100", 64, 0, 0.9844, median_ms=90.0),
        *(segment_slice(s, 500, 1, 0.97) for s in extra_segments),
        *hour_slices(),
    ]
    verdict = Verdict(
        result=result,
        reason=reason,
        message=f"candidate error rate 4.13% exceeds the 1.00% limit in segment {FAILING_SEGMENT} (3,120 pairs)",
        evaluated_at="2024-05-08T06:10:00Z",
        checks=[*make_checks(extra_segments), *extra_checks],
    )
    return Report(
        shadow="default/recommender",
        generated_at="2024-05-08T06:10:02Z",
        candidate="registry.example/recsys:2.0.0",
        coverage=ReportCoverage(
            first_ts=START_TS,
            last_ts=START_TS + 626400,
            elapsed_seconds=626400,
            required_seconds=604800,
            samples=48210,
            required_samples=1000,
            percent=100,
        ),
        slices=slices,
        verdict=verdict,
        problems=[
            DataProblem(code=CORRUPT_RECORD, count=3, message="3 lines of records-0004.jsonl were truncated JSON"),
            DataProblem(
                code=METRICS_ERROR,
                message="Prometheus at http://prometheus.monitoring:9090 returned no samples for "
                "shadow_mirror_total; mirror drops are unknown",
            ),
        ],
        queries={
            'sum(rate(shadow_requests_total{shadow="recommender",role="candidate",outcome="error"}[7d]))': 0.0094,
            'sum(rate(shadow_mirror_total{shadow="recommender",result="dropped"}[7d]))': None,
        },
    )
