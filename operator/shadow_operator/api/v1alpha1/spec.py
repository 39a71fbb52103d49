"""ShadowDeployment spec, v1alpha1: what the user declares."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from ..base import DNS_LABEL, ApiModel, Duration, JsonPath, Port
from .podtemplate import EnvVar, PodTemplate, ResourceRequirements, SinkVolume

Fraction = Annotated[float, Field(ge=0, le=1)]


class ServiceRef(ApiModel):
    """The Service clients already call."""

    name: str = Field(
        pattern=DNS_LABEL,
        max_length=63,
        description="Name of the Service that clients call today, in the ShadowDeployment's namespace. "
        "It is the host of the mirror route. With primary.deploymentRef the Service must exist; "
        "otherwise the operator creates it in front of the primary when it is missing.",
    )
    port: Port = Field(description="The Service port clients call. Must be one of the Service's ports.")


class DeploymentRef(ApiModel):
    """An existing Deployment the operator reads but never owns or changes."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        description="Name of a Deployment in the same namespace that already serves the primary model.",
    )


class _ModelWorkload(ApiModel):
    replicas: int = Field(default=1, ge=0, le=1000, description="Number of Pods.")
    port: Port = Field(default=8080, description="Container port the model serves HTTP on.")
    env: list[EnvVar] = Field(default_factory=list, description="Environment variables of the model container.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Requests and limits of the model container."
    )
    args: list[str] | None = Field(default=None, description="Arguments passed to the image's entrypoint.")
    pod_template: PodTemplate | None = Field(
        default=None,
        description="Extra fields for the model's Pods, from an allowlist: metadata.labels and annotations; "
        "spec.nodeSelector, tolerations, affinity, topologySpreadConstraints, priorityClassName, "
        "imagePullSecrets, serviceAccountName, automountServiceAccountToken, securityContext (within Pod "
        "Security restricted), volumes (configMap, secret, persistentVolumeClaim, emptyDir, projected) and "
        "containers (an entry named model adds env, envFrom, resources and volumeMounts to the model "
        "container; other names are sidecars). Anything else is refused (docs/security.md).",
    )


class PrimarySpec(_ModelWorkload):
    """The model that serves users today: either run by the operator or an existing Deployment."""

    model_config = {
        "json_schema_extra": {"oneOf": [{"required": ["image"]}, {"required": ["deploymentRef"]}]},
    }

    image: str | None = Field(
        default=None,
        min_length=1,
        description="Container image of the primary model. Set either image or deploymentRef.",
    )
    deployment_ref: DeploymentRef | None = Field(
        default=None,
        description="Use a Deployment that already serves the primary model (the usual production case). "
        "The operator reads it and never owns or changes it. Set either image or deploymentRef.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> PrimarySpec:
        if (self.image is None) == (self.deployment_ref is None):
            raise ValueError("set exactly one of primary.image or primary.deploymentRef")
        return self


class CandidateSpec(_ModelWorkload):
    """The new model, which sees a copy of live traffic and never answers users."""

    image: str = Field(min_length=1, description="Container image of the candidate model.")


HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
DEFAULT_MIRROR_METHODS: tuple[HttpMethod, ...] = ("POST", "GET")
# Header names a rule cannot select on: what the router removes before it sees a request
# (hop-by-hop headers, the inbound x-shadow-* ones), Host (Istio routes by it: the
# VirtualService's hosts), and the keys Istio ignores in a header match.
UNMATCHABLE_HEADERS = frozenset(
    {"host", "uri", "scheme", "method", "authority", "connection", "keep-alive", "proxy-connection",
     "transfer-encoding", "te", "trailer", "upgrade", "content-length", "expect"}
)  # fmt: skip
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_~-]+$"  # RFC 9110 token without ` and | (they would break the reference's table)
URI_PATH = r"^/[^?#\s]*$"


def _uri_path(value: Any) -> Any:
    """The pattern's own message names no fix; this one does (the schema keeps the pattern)."""
    if isinstance(value, str) and not re.match(URI_PATH, value):
        raise ValueError(
            f"{value!r}: give a path starting with / and without ?, # or spaces (the query string is never "
            "matched), e.g. /predict"
        )
    return value


UriPath = Annotated[
    str, BeforeValidator(_uri_path), Field(pattern=URI_PATH, max_length=1024, json_schema_extra={"pattern": URI_PATH})
]


class UriMatch(ApiModel):
    """The request path, matched as Istio's HTTPMatchRequest.uri: exact or prefix, case-sensitive."""

    model_config = {"json_schema_extra": {"oneOf": [{"required": ["exact"]}, {"required": ["prefix"]}]}}

    exact: UriPath | None = Field(
        default=None,
        description="The path must be exactly this (the query string is not part of it), e.g. /v2/models/m/infer. "
        "Set either exact or prefix.",
    )
    prefix: UriPath | None = Field(
        default=None,
        description="The path must start with this, character by character: /predict matches /predict, "
        "/predict/batch and /predictions (end it with / to match one directory only). Set either exact or prefix.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> UriMatch:
        if (self.exact is None) == (self.prefix is None):
            raise ValueError("set exactly one of uri.exact (one path) or uri.prefix (a path and all below it)")
        return self


class HeaderMatch(ApiModel):
    """A request header: present, or present with exactly this value."""

    name: str = Field(
        pattern=HEADER_NAME,
        max_length=256,
        description="Header name, case-insensitive (Istio mode writes it lower case). Not Host, hop-by-hop "
        "headers or x-shadow-*: the router never sees those.",
    )
    exact: str | None = Field(
        default=None,
        max_length=4096,
        description="The header's value must be exactly this (case-sensitive; a header sent several times is "
        "matched on its values joined with commas, as Envoy does). Unset: the header only has to be present.",
    )

    @model_validator(mode="after")
    def _matchable(self) -> HeaderMatch:
        lowered = self.name.lower()
        if lowered in UNMATCHABLE_HEADERS or lowered.startswith("x-shadow-"):
            raise ValueError(
                f"header {self.name!r} cannot select requests (the router removes it before matching, or Istio "
                "ignores it in a match); match on another header, or on uri"
            )
        return self


class MatchRule(ApiModel):
    """Requests matching every condition given (path, method, headers) are mirrored."""

    model_config = {"json_schema_extra": {"minProperties": 1}}

    uri: UriMatch | None = Field(default=None, description="The request path. Unset: any path.")
    methods: list[HttpMethod] | None = Field(
        default=None,
        min_length=1,
        description="The request method is one of these; each must be in mirrorMethods. Unset: any of mirrorMethods.",
    )
    headers: list[HeaderMatch] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Every one of these headers matches. Unset: any headers.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> MatchRule:
        if self.uri is None and not self.methods and not self.headers:
            raise ValueError(
                "an empty rule matches every request: give uri, methods or headers, or remove "
                "traffic.match to mirror every request (of mirrorMethods)"
            )
        names = [header.name.lower() for header in self.headers or []]
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"headers: each header once per rule, repeated: {repeated}")
        return self


class TrafficSpec(ApiModel):
    """How live traffic is copied to the candidate."""

    router: Literal["istio", "builtin"] = Field(
        default="istio",
        description="istio: an Istio VirtualService mirrors requests and recorder sidecars capture both "
        "answers. builtin: the operator's own mirroring router sits behind the Service (for clusters "
        "without Istio); the Service is switched to it and restored when the ShadowDeployment is deleted.",
    )
    mirror_percent: float = Field(
        default=100, ge=0, le=100, description="Percent of live requests copied to the candidate, 0 to 100."
    )
    mirror_methods: list[HttpMethod] = Field(
        default_factory=lambda: list(DEFAULT_MIRROR_METHODS),
        min_length=1,
        json_schema_extra={"default": list(DEFAULT_MIRROR_METHODS)},
        description="Only requests with these methods are copied to the candidate (as Diffy does): a PUT, PATCH "
        "or DELETE usually changes state, and the candidate's copy would change it a second time. List them "
        "here to mirror them too. To mirror nothing, set mirrorPercent to 0.",
    )
    match: list[MatchRule] = Field(
        default_factory=list,
        max_length=32,
        description="Which requests are copied to the candidate: a request is mirrored when it matches any rule "
        "(and its method is in mirrorMethods, and it falls in mirrorPercent). Empty: every request of "
        "mirrorMethods. The same rules in both modes: the builtin router applies them itself, Istio mode turns "
        "each into a VirtualService route with match blocks (one per method) and the mirror.",
    )
    candidate_timeout: Duration = Field(
        default="2s",
        description="builtin router: how long a mirrored request may take before it is recorded as a timeout.",
    )
    max_in_flight: int = Field(
        default=256,
        ge=1,
        le=100000,
        description="builtin router: mirrored requests in flight at once; copies beyond it are dropped "
        "and counted, never queued. In istio mode it bounds the candidate's connection pool.",
    )
    max_body_bytes: int = Field(
        default=1048576,
        ge=0,
        description="builtin router: request bodies up to this size are buffered and may be mirrored; larger ones "
        "are streamed to the primary as they arrive, never buffered whole and never mirrored (recorders, "
        "with the default, record such requests without their request fields).",
    )
    body_limit_bytes: int = Field(
        default=268435456,
        ge=0,
        description="builtin router (recorders keep the default): request bodies larger than this are refused with 413 Content Too Large "
        "(a declared Content-Length before any of the body is read). 0: no limit (bodies past maxBodyBytes "
        "are streamed, so memory stays bounded whatever the size). Default 256 MiB.",
    )
    client_header_timeout: Duration = Field(
        default="10s",
        description="builtin router (recorders keep the default): how long a client may take to send a request's headers, counted from "
        "the connection's opening or the request's first byte; slower clients are answered 408 and "
        "disconnected (slowloris).",
    )
    client_body_timeout: Duration = Field(
        default="60s",
        description="builtin router (recorders keep the default): how long a client may take to send a whole request body once its "
        "headers are in; slower clients are answered 408 and disconnected.",
    )
    client_idle_timeout: Duration = Field(
        default="75s",
        description="builtin router (recorders keep the default): how long a keep-alive connection may wait for its next request before "
        "the router closes it. Keep it above the idle timeout of any load balancer in front (often 60s), so "
        "the router never closes a connection the balancer is about to reuse.",
    )
    max_connections: int = Field(
        default=4096,
        ge=1,
        le=1000000,
        description="builtin router (recorders keep the default): client connections open at once; a connection beyond it is answered "
        "503 and closed at once. Each idle connection costs a few KiB.",
    )
    strip_headers: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]] = Field(
        default_factory=list,
        description="builtin router: request headers removed from the candidate's copies only (the primary "
        "still gets them), by name, case-insensitive. The usual candidates are credentials the candidate "
        "must not be able to use or log: Authorization, Cookie, Proxy-Authorization, X-Api-Key. Inbound "
        "x-shadow-* headers are always removed from both paths.",
    )
    router_replicas: int = Field(default=2, ge=1, le=100, description="builtin router: number of router Pods.")
    router_grace_period: Duration = Field(
        default="30s",
        description="builtin router: how long the Service stays on the router while no router Pod is available "
        "before it is moved back to the primary (condition RouterAvailable, one Event). The Service moves to "
        "the router only once a router Pod is available.",
    )

    @model_validator(mode="after")
    def _rule_methods_are_mirrored(self) -> TrafficSpec:
        """A rule's method outside mirrorMethods could never be mirrored: say so rather than ignore it."""
        for i, rule in enumerate(self.match):
            if missing := [method for method in rule.methods or [] if method not in self.mirror_methods]:
                raise ValueError(
                    f"match[{i}].methods: {', '.join(missing)} not in mirrorMethods {list(self.mirror_methods)}, "
                    f"so this rule would never mirror it; add it to traffic.mirrorMethods or remove it from the rule"
                )
        return self


class Segment(ApiModel):
    """A dimension to slice every comparison by, e.g. users with and without purchase history."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63, description="Segment name, used in reports.")
    path: JsonPath = Field(description="JSON path of the value in the body, e.g. $.features.purchase_count.")
    source: Literal["request", "response"] = Field(default="request", description="Which body the path is read from.")
    bounds: list[float] | None = Field(
        default=None,
        description="Numeric values are bucketed at these ascending bounds, e.g. [1, 100] gives "
        "the buckets <1, 1-100 and >=100. A missing value is its own bucket, 'missing'.",
    )
    values: list[str] | None = Field(
        default=None,
        description="Categorical values kept as their own bucket; every other value folds into 'other' "
        "so metrics cardinality stays bounded. Without bounds or values, the first 20 distinct values are kept.",
    )

    @model_validator(mode="after")
    def _one_bucketing(self) -> Segment:
        if self.bounds is not None and self.values is not None:
            raise ValueError("set at most one of bounds or values")
        if self.bounds is not None and list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("bounds must be strictly ascending")
        return self


class RecordRetention(ApiModel):
    """How much the collector keeps; past either limit it deletes whole files, oldest first."""

    max_bytes: int = Field(
        default=2147483648,
        ge=1048576,
        description="Total bytes of records the collector keeps (default 2 GiB); past it the least recently "
        "written files are deleted. With the default emptyDir it also sizes that volume.",
    )
    max_age: Duration = Field(
        default="336h",
        description="Files not written for longer than this are deleted (default 336h, two weeks): longer "
        "than analysis.minDuration, so a whole business cycle stays available to the comparison job.",
    )


class RecordSink(ApiModel):
    """Where pair records are written."""

    type: Literal["jsonl"] = Field(default="jsonl", description="Rotating JSON Lines files in a directory.")
    path: str = Field(
        default="/var/lib/shadow/records",
        pattern=r"^/",
        description="Directory of the record files: in the router and recorder Pods a local spool (an emptyDir) "
        "the files wait in until the collector has them, and in the collector Pod where they are kept.",
    )
    volume: SinkVolume | None = Field(
        default=None,
        description="The collector's volume: a persistentVolumeClaim (e.g. {persistentVolumeClaim: {claimName: "
        "shadow-records}}) or an emptyDir; no other kind. Only the <name>-collector Pod mounts it, so "
        "ReadWriteOnce is enough. Default: an emptyDir sized from retention.maxBytes, whose records are lost "
        "when the collector Pod is deleted.",
    )
    rotate_bytes: int = Field(default=67108864, ge=1024, description="Start a new file past this size.")
    retention: RecordRetention = Field(
        default_factory=RecordRetention, description="How long and how much the collector keeps."
    )


# Where each serving protocol puts the prediction in its answer (recording.protocol).
PREDICTION_PATHS = {
    "json": "$.prediction",  # the model's own JSON
    "v2": "$.outputs[0].data",  # V2 / Open Inference protocol: MLServer, KServe, Triton
    "kserve-v1": "$.predictions",  # KServe's v1 protocol (TensorFlow Serving's REST API)
    "mlflow": "$.predictions",  # MLflow's scoring server (/invocations)
}


class RecordingSpec(ApiModel):
    """What is captured from each request and each answer."""

    protocol: Literal["json", "v2", "kserve-v1", "mlflow"] = Field(
        default="json",
        description="The serving protocol both models answer in; it presets predictionPath. "
        "json: the model's own JSON, predictionPath `$.prediction`. "
        "v2: the V2 / Open Inference protocol (MLServer, KServe, Triton), `$.outputs[0].data`. "
        "kserve-v1: KServe's v1 protocol, `$.predictions`. "
        "mlflow: MLflow's scoring server, `$.predictions`. "
        "A prediction that is a list (a batch of N instances answered with N predictions) is compared "
        "element by element: see predictionType.",
    )
    prediction_path: JsonPath | None = Field(
        default=None,
        description="JSON path of the prediction in the response body. Default: the protocol's path "
        "(`$.prediction` for json). When set, it wins over the protocol's preset.",
    )
    prediction_type: Literal["classification", "regression"] = Field(
        default="classification",
        description="classification: predictions are compared for equality (agreement). "
        "regression: by absolute difference. When both predictions are lists (a batch request), "
        "they are compared element by element and a request is judged by its worst element: it agrees "
        "only if the lists have the same length and every element is equal, and its absolute difference "
        "is the largest elementwise one (lists of different lengths: none).",
    )
    segments: list[Segment] = Field(default_factory=list, description="Dimensions to slice every comparison by.")
    features: list[JsonPath] = Field(
        default_factory=list,
        description="JSON paths of features in the request body; each is recorded as present or missing.",
    )
    redact: list[JsonPath] = Field(
        default_factory=list, description="JSON paths removed from everything recorded; they never leave the router."
    )
    sample_rate: Fraction = Field(default=1.0, description="Fraction of mirrored pairs written to the sink, 0 to 1.")
    request_id_header: str = Field(
        default="x-request-id",
        pattern=r"^[A-Za-z0-9-]+$",
        description="Header that identifies a request; created when absent, used to join both answers.",
    )
    event_time_path: JsonPath | None = Field(
        default=None,
        description="JSON path of the request's event time in the request body (epoch seconds, or an "
        "RFC 3339 string). Set it when replaying logged traffic so records carry the original times and "
        "hour-of-day slices follow them; values that are missing, unparseable or in the future fall back "
        "to the arrival time. Default: the arrival time.",
    )
    sink: RecordSink = Field(default_factory=RecordSink, description="Where records are written.")

    @model_validator(mode="before")
    @classmethod
    def _preset_prediction_path(cls, data: Any) -> Any:
        """An unset predictionPath is the protocol's (PREDICTION_PATHS); a set one wins."""
        if not isinstance(data, dict) or data.get("predictionPath", data.get("prediction_path")) is not None:
            return data
        protocol = data.get("protocol", "json")
        if not isinstance(protocol, str) or protocol not in PREDICTION_PATHS:
            return data  # the protocol field's own validation names the problem
        data = {k: v for k, v in data.items() if k not in ("predictionPath", "prediction_path")}
        return {**data, "predictionPath": PREDICTION_PATHS[protocol]}

    @model_serializer(mode="wrap")
    def _leave_out_default_protocol(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """protocol json is left out of what is serialized: routers configured before the field
        existed keep their config (and config-hash, so their Pods do not roll)."""
        data = handler(self)
        if data.get("protocol") == "json":
            del data["protocol"]
        return data


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


class PromotionSpec(ApiModel):
    """How the candidate becomes the primary once its verdict is Passed (docs/promotion.md)."""

    mode: Literal["manual", "automatic"] = Field(
        default="manual",
        description="manual: promote only when asked (`shadowctl promote NAME`, or the annotation "
        "shadow.mlops.dev/promote set to the candidate image). automatic: promote on the first Passed verdict "
        "for the current candidate. Either way only a Passed verdict for the current candidate image, "
        "computed for the current generation, is ever promoted.",
    )
    patch_referenced_deployment: bool = Field(
        default=False,
        description="primary.deploymentRef only: on promotion, set the referenced Deployment's model container "
        "image to the candidate's. Its author must be allowed to patch that Deployment. Off (the default), "
        "the operator never changes it: the promotion is a Promoted condition and Event for a pipeline to act on.",
    )


NotificationEvent = Literal["Failed", "Passed", "Inconclusive", "Error", "Promoted"]


class SecretKeySelector(ApiModel):
    """A key of a Secret in the ShadowDeployment's namespace."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253, description="The Secret.")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="The key holding the URL.")


class UrlSource(ApiModel):
    """Where a notification URL is read from, at send time."""

    secret_key_ref: SecretKeySelector = Field(description="A key of a Secret holding the URL (e.g. a Slack webhook).")


class NotificationTarget(ApiModel):
    """An HTTP endpoint that receives a JSON POST on the phase transitions listed in `on`."""

    model_config = {
        "json_schema_extra": {"oneOf": [{"required": ["url"]}, {"required": ["urlFrom"]}]},
    }

    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=2048,
        description="The endpoint. Set either url or urlFrom (a webhook URL that is itself a credential, "
        "like Slack's, belongs in a Secret).",
    )
    url_from: UrlSource | None = Field(
        default=None,
        description="Read the URL from a Secret when sending. Its author must be allowed to get that Secret, "
        "and the operator must have been granted get on it in this namespace (docs/promotion.md).",
    )
    on: list[NotificationEvent] = Field(
        default_factory=lambda: ["Failed", "Passed", "Inconclusive", "Error", "Promoted"],
        min_length=1,
        description="Phases whose arrival is sent: Failed, Passed, Inconclusive, Error, Promoted (default: all).",
    )

    @model_validator(mode="after")
    def _exactly_one_url(self) -> NotificationTarget:
        if (self.url is None) == (self.url_from is None):
            raise ValueError("set exactly one of url or urlFrom")
        return self


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
