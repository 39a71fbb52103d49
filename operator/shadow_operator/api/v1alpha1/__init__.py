"""shadow.mlops.dev/v1alpha1."""

from .spec import AnalysisSpec, CandidateSpec, PrimarySpec, RecordingSpec, ShadowDeploymentSpec, TrafficSpec
from .status import Check, Condition, Coverage, Mirror, Phase, ShadowDeploymentStatus, Verdict

GROUP = "shadow.mlops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ShadowDeployment"
PLURAL = "shadowdeployments"
SINGULAR = "shadowdeployment"
SHORT_NAMES = ["shadow", "sd"]

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "AnalysisSpec",
    "CandidateSpec",
    "Check",
    "Condition",
    "Coverage",
    "Mirror",
    "Phase",
    "PrimarySpec",
    "RecordingSpec",
    "ShadowDeploymentSpec",
    "ShadowDeploymentStatus",
    "TrafficSpec",
    "Verdict",
]
