"""How the comparison job judges: thresholds, business cycle, confidence, Prometheus, the noise baseline."""

from __future__ import annotations

from pydantic import Field

from ..base import ApiModel, Duration, Fraction


class PrometheusSpec(ApiModel):
    """The Prometheus that scrapes the router or the recorders."""

    url: str = Field(pattern=r"^https?://", description="Base URL, e.g. http://prometheus.monitoring:9090.")
    timeout: Duration = Field(default="10s", description="Timeout of each query.")


class LatencyRatio(ApiModel):
    """Highest allowed candidate/primary latency ratio per percentile."""

    p50: float | None = Field(default=None, gt=0, description="Ratio at the median, e.g. 1.2.")
    p95: float | None = Field(default=None, gt=0, description="Ratio at the 95th percentile, e.g. 1.3.")
    p99: float | None = Field(default=None, gt=0, description="Ratio at the 99th percentile, e.g. 1.5.")


class AbsDiff(ApiModel):
    """Highest allowed absolute difference between the two predictions (regression)."""

    mean: float | None = Field(default=None, ge=0, description="Mean absolute difference.")
    p95: float | None = Field(default=None, ge=0, description="95th percentile of the absolute difference.")


class Thresholds(ApiModel):
    """Every check the candidate must pass, on every segment."""

    latency_ratio: LatencyRatio | None = Field(default=None, description="Candidate/primary latency ratios.")
    max_error_rate: Fraction | None = Field(default=None, description="Highest candidate error rate, e.g. 0.001.")
    max_error_rate_increase: Fraction | None = Field(
        default=None, description="Highest rise of the candidate's error rate over the primary's, e.g. 0.0005."
    )
    min_agreement: Fraction | None = Field(
        default=None, description="classification: lowest fraction of requests where both predict the same."
    )
    max_abs_diff: AbsDiff | None = Field(default=None, description="regression: highest absolute difference.")
    max_feature_missing_rate: Fraction | None = Field(
        default=None, description="Highest fraction of requests missing any recorded feature."
    )


class BaselineSpec(ApiModel):
    """A second copy of the primary that receives the same mirrored copies as the candidate (noise baseline)."""

    replicas: int = Field(default=1, ge=1, le=20, description="Pods of the baseline copy of the primary.")


class AnalysisSpec(ApiModel):
    """How and how long the candidate is judged."""

    interval: Duration = Field(
        default="10m",
        description="How often the comparison job runs: whole minutes that divide an hour (1m, 5m, 10m, 30m) "
        "or whole hours that divide a day (1h, 2h, 6h).",
    )
    min_duration: Duration = Field(
        default="168h",
        description="Shortest shadow period before a Passed verdict: a full business cycle, so every hour "
        "of day and day of week is seen. A week (168h) is the usual choice.",
    )
    min_samples: int = Field(default=1000, ge=1, description="Fewest mirrored pairs overall before a verdict.")
    min_samples_per_segment: int = Field(
        default=100, ge=1, description="Fewest pairs in a segment before that segment's checks count."
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Confidence level of the intervals the rate checks use."
    )
    prometheus: PrometheusSpec | None = Field(
        default=None, description="Prometheus to query; without it the job analyses from records alone."
    )
    thresholds: Thresholds = Field(default_factory=Thresholds, description="The checks and their limits.")
    baseline: BaselineSpec | None = Field(
        default=None,
        description="Judge agreement, absolute difference and latency against the noise of two identical "
        "primaries: the operator runs a copy of the primary (spec.primary.image and its settings) that "
        "receives the same mirrored copies as the candidate, so a non-deterministic model is not failed for "
        "noise the primary itself has, and latency compares two copies that travelled the same path. Needs "
        "spec.primary.image.",
    )
