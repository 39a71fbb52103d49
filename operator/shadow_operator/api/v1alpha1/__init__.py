"""shadow.mlops.dev/v1alpha1."""

from .analysis import AnalysisSpec
from .recording import RecordingSpec
from .spec import ShadowDeploymentSpec
from .status import Check, CheckSource, Condition, Coverage, Mirror, Phase, ShadowDeploymentStatus, Verdict
from .traffic import TrafficSpec
from .workloads import CandidateSpec, PrimarySpec

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
    "CheckSource",
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
