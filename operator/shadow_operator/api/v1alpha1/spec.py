"""ShadowDeployment spec, v1alpha1: what the user declares."""

from __future__ import annotations

from pydantic import Field

from ..base import ApiModel
from .analysis import AnalysisSpec
from .promotion import NotificationTarget, PromotionSpec
from .recording import RecordingSpec
from .traffic import TrafficSpec
from .workloads import CandidateSpec, PrimarySpec, ServiceRef


class ShadowDeploymentSpec(ApiModel):
    """A primary model, a candidate that shadows it, and how the candidate is judged."""

    service: ServiceRef = Field(description="The Service clients call; the host of the mirror route.")
    primary: PrimarySpec = Field(description="The model serving users today.")
    candidate: CandidateSpec = Field(description="The model under evaluation; its answers never reach users.")
    traffic: TrafficSpec = Field(default_factory=TrafficSpec, description="How traffic is mirrored.")
    recording: RecordingSpec = Field(default_factory=RecordingSpec, description="What is recorded from each pair.")
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="How the candidate is judged.")
    promotion: PromotionSpec = Field(
        default_factory=PromotionSpec, description="How a Passed candidate becomes the primary."
    )
    notifications: list[NotificationTarget] = Field(
        default_factory=list,
        max_length=10,
        description="Endpoints told of each verdict and phase transition (a JSON POST with a Slack-compatible text).",
    )
