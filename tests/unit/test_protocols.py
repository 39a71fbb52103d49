"""recording.protocol: the prediction path each serving protocol presets, the model servers' real
answer and error shapes, and batch answers (lists of predictions) compared element by element,
the same by the router (records.compare) and by the job's join of one-sided records (SQL).

The response bodies below are copied from MLServer 1.7, KServe 0.16 and MLflow 2.22 answering
on loopback (tests/integration/test_model_servers.py runs the servers themselves).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from shadow_operator.api.base import describe_validation_error
from shadow_operator.api.v1alpha1.recording import PREDICTION_PATHS, RecordingSpec
from shadow_operator.contract.records import HTTP_5XX, OK, SideResult, compare
from shadow_operator.job.dataset import load
from shadow_operator.job.pairs import TABLE
from shadow_operator.router.extract import Extractor, parse_body

from .records_factory import NOW, SHADOW, one, side, write

MLSERVER_OK = (
    b'{"model_name":"model","id":"ab5d37e5","parameters":{},"outputs":[{"name":"predict","shape":[3,1],'
    b'"datatype":"INT64","parameters":{"content_type":"np"},"data":[1,0,0]}]}'
)
KSERVE_V2_OK = (
    b'{"model_name":"model","model_version":null,"id":"","parameters":null,"outputs":[{"name":"predict",'
    b'"shape":[3],"datatype":"INT64","parameters":null,"data":[1,0,0]}]}'
)
KSERVE_V1_OK = b'{"predictions":[1,0]}'
MLFLOW_OK = b'{"predictions": [1, 0]}'
KSERVE_ERROR = (
    b'{"error":"ValueError : X has 3 features, but DecisionTreeClassifier is expecting 2 features as input."}'
)
KSERVE_NOT_FOUND = b'{"error":"Model with name nope does not exist."}'
MLSERVER_MODEL_ERROR = b"Internal Server Error"  # an exception in the model, MLServer with debug off
MLSERVER_DEBUG_ERROR = (  # the same with debug on (MLServer's default): the traceback as text
    b'Traceback (most recent call last):\n  File "/venv/starlette/middleware/errors.py", line 165, in __call__\n'
    b"    await self.app(scope, receive, _send)\n"
    b"ValueError: Input X contains NaN.\nKNeighborsClassifier does not accept missing values encoded as NaN\n"
)
MLFLOW_ERROR = json.dumps(
    {
        "error_code": "BAD_REQUEST",
        "message": "Encountered an unexpected error while evaluating the model. Verify that the serialized "
        "input Dataframe is compatible with the model for inference.",
        "stack_trace": 'Traceback (most recent call last):\n  File "/venv/mlflow/pyfunc/scoring_server/__init__.py", '
        "line 369, in invocations\n    raw_predictions = model.predict(data, params=params)\n"
        "ValueError: Input X contains NaN.\nKNeighborsClassifier does not accept missing values encoded as NaN "
        "natively. For supervised learning, you might want to consider sklearn.ensemble.HistGradientBoosting\n",
    }
).encode()
MLFLOW_BAD_FORMAT = json.dumps(
    {"error_code": "BAD_REQUEST", "message": "The input must be a JSON dictionary with exactly one of the input fields"}
).encode()


def _recording(**fields) -> RecordingSpec:
    return RecordingSpec.model_validate(fields, by_alias=True)


# --- the preset --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "path"),
    [
        ("json", "$.prediction"),
        ("v2", "$.outputs[0].data"),
        ("kserve-v1", "$.predictions"),
        ("mlflow", "$.predictions"),
    ],
)
def test_each_protocol_presets_its_prediction_path(protocol, path):
    assert _recording(protocol=protocol).prediction_path == path
    assert PREDICTION_PATHS[protocol] == path


def test_json_is_the_default_protocol_and_keeps_todays_path():
    recording = RecordingSpec()
    assert (recording.protocol, recording.prediction_path) == ("json", "$.prediction")


def test_a_prediction_path_that_is_set_wins_over_the_protocols_preset():
    recording = _recording(protocol="v2", predictionPath="$.outputs[1].data")
    assert recording.prediction_path == "$.outputs[1].data"
    assert RecordingSpec(protocol="mlflow", prediction_path="$.predictions[0]").prediction_path == "$.predictions[0]"
    # null is unset: the preset again
    assert _recording(protocol="kserve-v1", predictionPath=None).prediction_path == "$.predictions"


def test_the_wire_form_carries_the_resolved_path_and_reads_back_the_same():
    recording = _recording(protocol="v2")
    wire = recording.to_wire()
    assert wire["protocol"] == "v2" and wire["predictionPath"] == "$.outputs[0].data"
    assert RecordingSpec.model_validate(wire, by_alias=True) == recording


def test_protocol_json_is_left_out_of_the_wire_so_existing_routers_keep_their_config():
    wire = RecordingSpec().to_wire()
    assert "protocol" not in wire and wire["predictionPath"] == "$.prediction"


def test_an_unknown_protocol_is_refused_by_name():
    with pytest.raises(ValidationError) as raised:
        _recording(protocol="triton")
    lines = describe_validation_error(raised.value, "spec.recording")
    assert any(line.startswith("spec.recording.protocol:") for line in lines), lines


@pytest.mark.parametrize(
    ("protocol", "body", "expected"),
    [
        ("v2", MLSERVER_OK, [1, 0, 0]),
        ("v2", KSERVE_V2_OK, [1, 0, 0]),
        ("kserve-v1", KSERVE_V1_OK, [1, 0]),
        ("mlflow", MLFLOW_OK, [1, 0]),
        ("json", b'{"prediction": 2}', 2),
    ],
)
def test_the_router_reads_the_prediction_from_each_servers_answer(protocol, body, expected):
    assert Extractor(_recording(protocol=protocol)).prediction(parse_body(body)) == expected


def test_without_the_preset_a_v2_answer_has_no_prediction():
    # The default path ($.prediction) finds nothing in a V2 answer: what the preset is for.
    assert Extractor(RecordingSpec()).prediction(parse_body(MLSERVER_OK)) is None


# --- error text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "text"),
    [
        (500, KSERVE_ERROR, "ValueError : X has 3 features, but DecisionTreeClassifier is expecting 2 features"),
        (404, KSERVE_NOT_FOUND, "Model with name nope does not exist."),
        (500, MLSERVER_MODEL_ERROR, "Internal Server Error"),
        (500, MLSERVER_DEBUG_ERROR, "ValueError: Input X contains NaN."),
        (400, b'{"error":"Model model-x not found"}', "Model model-x not found"),
        (400, MLFLOW_ERROR, "BAD_REQUEST: ValueError: Input X contains NaN.; Encountered an unexpected error"),
        (400, MLFLOW_BAD_FORMAT, "BAD_REQUEST: The input must be a JSON dictionary with exactly one"),
        (422, b'{"detail":[{"loc":["body","inputs"],"msg":"Field required"}]}', '[{"loc":["body","inputs"]'),
    ],
)
def test_error_text_of_each_servers_error_answer(status, body, text):
    extractor = Extractor(RecordingSpec())
    error = extractor.error_text(status, body, parse_body(body))
    assert error is not None and error.startswith(text), error
    assert len(error) <= 200


def test_mlflow_error_text_is_scrubbed_of_redacted_request_values():
    extractor = Extractor(_recording(protocol="mlflow", redact=["$.dataframe_split.data"]))
    request = parse_body(b'{"dataframe_split": {"columns": ["email"], "data": [["ann@example.com"]]}}')
    body = json.dumps(
        {"error_code": "BAD_REQUEST", "message": "m", "stack_trace": "ValueError: bad value 'ann@example.com'"}
    ).encode()
    error = extractor.error_text(400, body, parse_body(body), extractor.secrets(request))
    assert error is not None and "ann@example.com" not in error and error.startswith("BAD_REQUEST: ValueError")


# --- batches: records.compare --------------------------------------------------------------------


def _ok(prediction) -> SideResult:
    return SideResult(outcome=OK, latency_ms=1.0, status=200, prediction=prediction)


@pytest.mark.parametrize(
    ("primary", "candidate", "agree"),
    [
        ([1, 0, 0], [1, 0, 0], True),
        ([1, 0, 0], [1, 1, 0], False),  # one instance of three differs: the request disagrees
        ([1, 0], [1.0, 0.0], True),  # numbers by value, element by element
        ([1, 0], [1, 0, 0], False),  # a missing prediction is a disagreement
        ([], [], True),
        (["cat", None], ["cat", None], True),
        ([True], [1], False),  # as the job's SQL: a boolean is not a number
        ([[0.2, 0.8]], [[0.2, 0.8]], True),  # a nested element by its JSON text
        ([1], 1, False),  # a list against a scalar: different answers
        (2, 2.0, True),  # scalars: as before
        ("a", "b", False),
    ],
)
def test_classification_batches_agree_only_when_every_element_does(primary, candidate, agree):
    assert compare(_ok(primary), _ok(candidate), regression=False) == (agree, None)


@pytest.mark.parametrize(
    ("primary", "candidate", "diff"),
    [
        ([0.5, 1.0, 2.0], [0.5, 1.25, 1.0], 1.0),  # the largest elementwise difference
        ([3], [1], 2.0),
        ([1.0, 2.0], [1.0], None),  # lengths differ
        ([], [], None),
        ([1.0, "x"], [1.0, 2.0], None),  # an element that is not a number
        ([1.0, "2.5"], [1.0, 2.0], 0.5),  # numeric strings, as the SQL's TRY_CAST reads them
        (1.5, 1.0, 0.5),
        (True, 1.0, None),
    ],
)
def test_regression_batches_are_judged_by_their_largest_difference(primary, candidate, diff):
    agree, abs_diff = compare(_ok(primary), _ok(candidate), regression=True)
    assert agree is None and abs_diff == diff


def test_an_error_on_either_side_is_not_compared_even_in_a_batch():
    failed = SideResult(outcome=HTTP_5XX, latency_ms=1.0, status=500, error="Internal Server Error")
    assert compare(_ok([1, 0]), failed, regression=False) == (None, None)


# --- batches: the job's SQL on one-sided records agrees with records.compare ---------------------

CASES = [
    ([1, 0, 0], [1, 0, 0]),
    ([1, 0, 0], [1, 1, 0]),
    ([1, 0], [1.0, 0.0]),
    ([1, 0], [1, 0, 0]),
    ([], []),
    (["cat", None], ["cat", None]),
    (["cat", "dog"], ["cat", "cow"]),
    ([True], [1]),
    ([[0.2, 0.8]], [[0.2, 0.8]]),
    ([[0.2, 0.8]], [[0.8, 0.2]]),
    ([1], 1),
    (2, 2.0),
    ("a", "b"),
    ([0.5, 1.0, 2.0], [0.5, 1.25, 1.0]),
    ([1.0, "x"], [1.0, 2.0]),
    ([1.0, "2.5"], [1.0, 2.0]),
    (1.5, 1.0),
    ({"a": 1}, {"a": 1}),
]


@pytest.mark.parametrize("regression", [False, True])
def test_joined_one_sided_records_compare_batches_as_the_router_does(tmp_path: Path, regression: bool):
    primaries, candidates, expected = [], [], {}
    for i, (p, c) in enumerate(CASES):
        request_id = f"r{i:02d}"
        primaries.append(one(request_id, "primary", side(prediction=p)))
        candidates.append(one(request_id, "candidate", side(prediction=c)))
        expected[request_id] = compare(_ok(p), _ok(c), regression)
    write(tmp_path / "primary.jsonl", primaries)
    write(tmp_path / "candidate.jsonl", candidates)

    with load([tmp_path], SHADOW, now=NOW, regression=regression) as dataset:
        joined = {
            row[0]: (row[1], row[2])
            for row in dataset.con.execute(f"SELECT id, agree, abs_diff FROM {TABLE}").fetchall()
        }
    assert joined == expected
    if not regression:  # the cases that matter are really there
        assert expected["r01"] == (False, None) and expected["r02"] == (True, None)
    else:
        assert expected["r13"] == (None, 1.0)
