"""Every condition type and reason the operator writes, in one place.

Reasons are CamelCase API values: tools (kstatus, Argo CD, alerts) match on them, so a
reason is never renamed once released.
"""

# Condition types. Ready is the summary GitOps tools read; Reconciling and Stalled are
# kstatus's "abnormal-true" pair; Mirroring says whether live traffic is being copied;
# Analyzed carries the comparison job's latest verdict for the current candidate.
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
MIRRORING = "Mirroring"
ANALYZED = "Analyzed"
# builtin router: whether a router Pod is available, and so whether the client Service routes
# through the router (True) or straight to the primary (False).
ROUTER_AVAILABLE = "RouterAvailable"
# Promotion (docs/promotion.md): True once the candidate was promoted; False while a request to
# promote is refused, the message naming why.
PROMOTED = "Promoted"

# The spec is wrong in a way only the operator can see: phase Error until it is fixed.
INVALID_SPEC = "InvalidSpec"
INVALID_JSON_PATH = "InvalidJsonPath"
INVALID_INTERVAL = "InvalidInterval"
PRIMARY_DEPLOYMENT_NOT_FOUND = "PrimaryDeploymentNotFound"
PRIMARY_DEPLOYMENT_UNUSABLE = "PrimaryDeploymentUnusable"
SERVICE_NOT_FOUND = "ServiceNotFound"
SERVICE_PORT_MISMATCH = "ServicePortMismatch"
SERVICE_NOT_SWITCHABLE = "ServiceNotSwitchable"
SERVICE_CLAIMED = "ServiceClaimed"
CANDIDATE_WOULD_SERVE_USERS = "CandidateWouldServeUsers"
CHILD_NAME_CONFLICT = "ChildNameConflict"
# The API server refused a child object (schema, quota, RBAC).
APPLY_FAILED = "ApplyFailed"

# Progress.
RECONCILED = "Reconciled"
PRIMARY_NOT_AVAILABLE = "PrimaryNotAvailable"
CANDIDATE_NOT_AVAILABLE = "CandidateNotAvailable"
ROUTER_NOT_AVAILABLE = "RouterNotAvailable"
SHADOWING = "Shadowing"
MIRROR_ACTIVE = "MirrorActive"
MIRROR_DISABLED = "MirrorDisabled"
MIRROR_NOT_READY = "MirrorNotReady"
AWAITING_ANALYSIS = "AwaitingAnalysis"
# Routing of the client Service in builtin mode (condition RouterAvailable, Events).
ROUTED_THROUGH_ROUTER = "RoutedThroughRouter"
ROUTER_STARTING = "RouterStarting"
ROUTER_UNAVAILABLE = "RouterUnavailable"
ROUTED_TO_PRIMARY = "RoutedToPrimary"
# Promotion: the Promoted condition's reasons and the Events posted with them. PROMOTED (above) is
# the reason too, on Ready, Mirroring and Promoted once the candidate is the primary.
PROMOTION_REFUSED = "PromotionRefused"
PROMOTION_FAILED = "PromotionFailed"
# Notifications (spec.notifications): an endpoint that could not be reached after every retry.
NOTIFICATION_FAILED = "NotificationFailed"

SPEC_ERRORS = frozenset(
    {
        INVALID_SPEC,
        INVALID_JSON_PATH,
        INVALID_INTERVAL,
        PRIMARY_DEPLOYMENT_NOT_FOUND,
        PRIMARY_DEPLOYMENT_UNUSABLE,
        SERVICE_NOT_FOUND,
        SERVICE_PORT_MISMATCH,
        SERVICE_NOT_SWITCHABLE,
        SERVICE_CLAIMED,
        CANDIDATE_WOULD_SERVE_USERS,
        CHILD_NAME_CONFLICT,
    }
)

# Verdict reasons, written by the comparison job (one code per verdict).
VERDICT_PASSED = "Passed"
CANDIDATE_ERRORS = "CandidateErrors"
LATENCY_REGRESSION = "LatencyRegression"
PREDICTION_DIVERGENCE = "PredictionDivergence"
FEATURE_UNAVAILABLE = "FeatureUnavailable"
INSUFFICIENT_DATA = "InsufficientData"
COVERAGE_INCOMPLETE = "CoverageIncomplete"
METRICS_UNAVAILABLE = "MetricsUnavailable"
THRESHOLDS_INCONSISTENT = "ThresholdsInconsistent"
