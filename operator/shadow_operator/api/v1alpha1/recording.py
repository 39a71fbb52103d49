"""What is recorded of each answer: prediction and segment paths, redaction, sampling, the sink."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from ..base import ApiModel, Duration, Fraction, JsonPath
from .volumes import SinkVolume


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
