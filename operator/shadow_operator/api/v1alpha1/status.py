"""ShadowDeployment status, v1alpha1: what the operator observed and concluded."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from ..base import PRESERVE_UNKNOWN, ApiModel
from .workloads import CandidateSpec


class Phase(StrEnum):
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    SHADOWING = "Shadowing"
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"
    PROMOTED = "Promoted"


class Condition(ApiModel):
    """A condition as the Kubernetes API conventions define it."""

    type: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$", description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str | None = Field(
        default=None, description="Human-readable details, saying what to do when it is a problem."
    )
    last_transition_time: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When status last changed.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was computed from."
    )


class Mirror(ApiModel):
    """The state of the mirror route."""

    state: Literal["Active", "Inactive"] = Field(description="Active when live traffic is being copied.")
    router: Literal["istio", "builtin"] = Field(description="What copies the traffic.")
    percent: float = Field(ge=0, le=100, description="Percent of requests copied.")
    host: str = Field(description="The Service whose traffic is copied.")


class Coverage(ApiModel):
    """How much of the business cycle and of the required samples has been seen."""

    elapsed: str = Field(description="Shadow time so far, rounded down to the last whole percent, e.g. 43h40m.")
    required: str = Field(description="analysis.minDuration.")
    samples: int = Field(default=0, ge=0, description="Mirrored pairs analysed so far.")
    required_samples: int = Field(ge=0, description="analysis.minSamples.")
    hours_seen: int | None = Field(
        default=None,
        ge=0,
        description="Hours of the business cycle (minDuration in hour buckets, a week from Monday 00:00 UTC) "
        "holding at least one pair; absent while no report has counted them, or for cycles under 2h.",
    )
    required_hours: int | None = Field(default=None, ge=0, description="Hours in the business cycle.")
    percent: int = Field(
        ge=0,
        le=100,
        description="The lowest of shadow time over minDuration, samples over minSamples and hours seen over "
        "the cycle's hours, in whole percent "
        "(status moves in 1% steps).",
    )
    summary: str = Field(description="One-line form for kubectl get, e.g. '26% of 168h'.")


class CheckSource(StrEnum):
    """What a check was measured on. The one home of these values: the job, the report's trust
    check and the operator all use this enum (the API types sit below `contract/`, which imports them)."""

    RECORDS = "records"  # the mirrored pairs the recorders or the router wrote: every check can be made
    PROMETHEUS = "prometheus"  # the router's and recorders' metrics: all traffic, error-rate and latency checks only


class Check(ApiModel):
    """One threshold check on one slice of traffic: a segment, optionally one hour of day, from one source."""

    name: str = Field(description="The check, e.g. errorRate, latencyP99Ratio, agreement.")
    segment: str = Field(description="The segment it was computed on, e.g. 'all' or 'history=<1'.")
    hour: int | None = Field(
        default=None,
        ge=0,
        le=23,
        description="The hour of day (UTC, 0-23) the check covers, e.g. 14 for 14:00-15:00; absent when it "
        "covers every hour.",
    )
    source: CheckSource = Field(
        default=CheckSource.RECORDS,
        description="What it was measured on: records (the mirrored pairs, the default) or prometheus (the "
        "router's and recorders' metrics, which count all traffic where records may be sampled).",
    )
    primary: float | None = Field(default=None, description="The primary's value.")
    candidate: float | None = Field(default=None, description="The candidate's value.")
    threshold: float | None = Field(default=None, description="The configured limit.")
    passed: bool | None = Field(default=None, description="True or false; absent when inconclusive.")
    samples: int | None = Field(default=None, ge=0, description="Pairs the check is based on.")
    message: str | None = Field(default=None, description="The evidence in words.")


class Verdict(ApiModel):
    """The comparison job's latest conclusion."""

    result: Literal["Passed", "Failed", "Inconclusive"] = Field(description="Passed, Failed or Inconclusive.")
    reason: str = Field(
        pattern=r"^[A-Z][A-Za-z0-9]*$",
        description="One code: e.g. CandidateErrors, LatencyRegression, InsufficientData.",
    )
    message: str | None = Field(default=None, description="What decided the verdict.")
    evaluated_at: str = Field(json_schema_extra={"format": "date-time"}, description="When the job ran.")
    checks: list[Check] = Field(
        default_factory=list, description="Every check, one entry per slice it was made on (segment, hour, source)."
    )


class Promotion(ApiModel):
    """The last promotion: what the primary became, recorded by the operator (never in the spec)."""

    image: str = Field(description="The candidate image that was promoted.")
    replaced: str = Field(
        description="The primary before it: spec.primary.image, or deployment/<name> for a deploymentRef."
    )
    trigger: Literal["manual", "automatic"] = Field(
        description="manual: shadowctl promote or the shadow.mlops.dev/promote annotation; automatic: "
        "spec.promotion.mode."
    )
    promoted_at: str = Field(json_schema_extra={"format": "date-time"}, description="When it was accepted.")
    generation: int = Field(ge=0, description="The metadata.generation whose Passed verdict was promoted.")
    verdict_evaluated_at: str = Field(description="evaluatedAt of the Passed verdict that was promoted.")
    workload: CandidateSpec | None = Field(
        default=None,
        description="primary.image: the candidate's settings the operator now runs the primary with (replicas "
        "stay spec.primary.replicas) until spec.primary.image is changed, e.g. to this image by the pipeline. "
        "Shaped like spec.candidate.",
        # The candidate's schema again would double the CRD; the operator validates it when reading.
        json_schema_extra=PRESERVE_UNKNOWN,
    )
    referenced_deployment_patched: bool = Field(
        default=False, description="primary.deploymentRef: whether the operator set that Deployment's image."
    )


class ShadowDeploymentStatus(ApiModel):
    """Observed state, written by the operator only."""

    phase: Phase = Field(default=Phase.PENDING, description="Where the rollout stands.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the operator last reconciled."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready summarises (kstatus and Argo CD read it); Reconciling and Stalled follow kstatus; "
        "Mirroring says whether live traffic is copied.",
    )
    primary: str | None = Field(default=None, description="The primary as shown by kubectl get: image or deployment.")
    candidate: str | None = Field(
        default=None, description="The candidate image being shadowed; a new one restarts the business cycle."
    )
    mirror: Mirror | None = Field(default=None, description="The mirror route.")
    shadowing_since: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When mirroring of the current candidate began; coverage counts from here.",
    )
    coverage: Coverage | None = Field(default=None, description="Business-cycle and sample coverage so far.")
    verdict: Verdict | None = Field(default=None, description="The latest verdict with one entry per check.")
    promotion: Promotion | None = Field(
        default=None,
        description="The last promotion (docs/promotion.md). The spec is never changed by the operator: a "
        "pipeline commits the promoted image to spec.primary when it sees the Promoted condition.",
    )
