"""recording.redact at the extract level: every leaf under a redacted path, scrubbed wherever it
reappears in what a record holds (prediction, segments, error text), bounded for hostile input."""

from __future__ import annotations

import json
import time

from shadow_operator.api.v1alpha1.recording import RecordingSpec
from shadow_operator.contract.records import SideResult
from shadow_operator.router.extract import REDACTED, UNPARSEABLE, Extractor, parse_body
from shadow_operator.router.redaction import MAX_NODES, UNCHECKED, Secrets, redact_paths

EMAIL = "alice.secret@example.com"
SSN = 987654321
CARD = {"number": "4111-1111-1111-1111", "holder": {"name": "Zed Secretname"}, "pin": 48151623}
HISTORY = ["hist-secret-one", 27182818, {"deep": "hist-secret-deep"}]
LEAVES = [EMAIL, str(SSN), "4111-1111-1111-1111", "Zed Secretname", "48151623", "hist-secret-one", "27182818",
          "hist-secret-deep"]  # fmt: skip
REQUEST = {"user": {"email": EMAIL, "ssn": SSN}, "card": CARD, "history": HISTORY, "x": 3}
REDACT = ["$.user.email", "$.user.ssn", "$.card", "$.history", "$.session.token"]


def _extractor(**recording) -> Extractor:
    return Extractor(RecordingSpec.model_validate({"redact": REDACT, **recording}, by_alias=True))


def _secrets(ex: Extractor, request=REQUEST, response=None) -> Secrets:
    secrets = ex.secrets(parse_body(json.dumps(request).encode()))
    if response is not None:
        secrets.add_document(response)
    return secrets


def _leaks(value) -> list[str]:
    text = value if isinstance(value, str) else json.dumps(value)
    return [leaf for leaf in LEAVES if leaf in text]


def test_a_prediction_that_echoes_the_request_is_scrubbed_leaf_by_leaf():
    ex = _extractor()
    secrets = _secrets(ex)
    echo = {"label": "ok", "echo": REQUEST, "elsewhere": {"who": f"mail {EMAIL} sent", "n": float(SSN)}}
    prediction = ex.prediction({"prediction": echo}, secrets)
    assert _leaks(prediction) == []
    assert prediction["label"] == "ok" and prediction["echo"]["x"] == 3, "what is not secret stays"
    assert prediction["elsewhere"] == {"who": f"mail {REDACTED} sent", "n": REDACTED}
    keyed = ex.prediction({"prediction": {EMAIL: 0.9, "other": 0.1}}, secrets)
    assert keyed == {REDACTED: 0.9, "other": 0.1}, "object keys too"
    assert ex.prediction({"prediction": SSN}, secrets) == REDACTED
    assert ex.prediction({"prediction": str(SSN)}, secrets) == REDACTED


def test_object_and_array_values_are_scrubbed_whatever_their_spelling():
    ex = _extractor()
    secrets = _secrets(ex)
    for dumped in (
        json.dumps(REQUEST, indent=2, sort_keys=True),  # other whitespace and key order than the request
        json.dumps({"card": CARD}, ensure_ascii=True).replace("/", "\\/"),
        f"card {CARD['number']} of {CARD['holder']['name']}, pin {CARD['pin']}, history {HISTORY}",
    ):
        for document in (parse_body(dumped.encode()), UNPARSEABLE):
            text = ex.error_text(500, dumped.encode(), document, secrets)
            assert _leaks(text) == [], text
    detail = {"detail": [{"input": {"holder": CARD["holder"], "number": CARD["number"]}, "msg": "bad"}]}
    text = ex.error_text(422, b"", detail, secrets)
    assert _leaks(text) == [] and '"msg":"bad"' in text, "an error object is scrubbed leaf by leaf"


def test_escaped_secrets_in_raw_text_are_scrubbed():
    ex = _extractor()
    tricky = 'o"brien/\\é@example.com'
    secrets = _secrets(ex, {"user": {"email": tricky}})
    raw = json.dumps({"echo": tricky}).encode()  # "o\"brien/\\\u00e9@example.com"
    text = ex.error_text(500, raw + b" and " + raw.replace(b"/", b"\\/"), UNPARSEABLE, secrets)
    assert "brien" not in text and text.count(REDACTED) == 2


def test_redacted_paths_in_the_answer_are_redacted_there_and_everywhere_else():
    ex = _extractor()
    response = {"prediction": {"label": "ok", "token": "resp-token-31337"}, "session": {"token": "resp-token-31337"}}
    secrets = _secrets(ex, response=response)
    assert ex.prediction(response, secrets) == {"label": "ok", "token": REDACTED}
    error = {"error": "denied", "session": {"token": "resp-token-31337"}}
    assert ex.error_text(403, json.dumps(error).encode(), error, _secrets(ex, response=error)) == "denied"
    listed = [{"session": "x"}, "resp-token-31337"]
    text = ex.error_text(500, json.dumps(listed).encode(), listed, _secrets(ex, response=error))
    assert "resp-token" not in text
    assert redact_paths(error, ex.redact) == {"error": "denied", "session": {"token": REDACTED}}
    assert error["session"]["token"] == "resp-token-31337", "the input is not modified"


def test_segments_never_show_a_redacted_value_read_from_elsewhere():
    ex = _extractor(
        segments=[
            {"name": "note", "path": "$.note"},
            {"name": "answer", "path": "$.who", "source": "response"},
            {"name": "size", "path": "$.size", "bounds": [10]},
        ]
    )
    request = {**REQUEST, "note": EMAIL, "size": 3}
    secrets = _secrets(ex, request)
    facts = ex.request_facts(request, {"who": f"for {CARD['number']}"}, secrets)
    assert facts.segments == {"note": REDACTED, "answer": f"for {REDACTED}", "size": "<10"}


def test_an_event_time_path_under_redaction_is_never_the_records_ts():
    request = {"user": {"email": EMAIL, "ssn": 1_700_000_000}}
    ex = _extractor(eventTimePath="$.user.ssn")
    assert ex.request_facts(request).ts > 1_700_000_000 + 86400


def test_an_unread_request_body_fails_closed():
    ex = _extractor(segments=[{"name": "who", "path": "$.who", "source": "response"}])
    secrets = ex.secrets(UNPARSEABLE, known=False)  # streamed past maxBodyBytes, or not JSON
    response = {"prediction": {"echo": EMAIL}, "who": EMAIL}
    assert ex.prediction(response, secrets) is None, "no prediction rather than one both sides agree on"
    assert ex.error_text(500, EMAIL.encode(), UNPARSEABLE, secrets) == REDACTED
    assert ex.request_facts(UNPARSEABLE, response, secrets).segments == {"who": REDACTED}


def test_nothing_is_built_when_nothing_is_redacted():
    ex = Extractor(RecordingSpec())
    assert ex.secrets({"user": {"email": EMAIL}}) is None
    prediction = {"echo": EMAIL}
    assert ex.prediction({"prediction": prediction}, None) is prediction, "no copy, no walk"
    assert ex.error_text(500, b"bad " + EMAIL.encode(), UNPARSEABLE, None) == f"bad {EMAIL}"


def test_hostile_sizes_are_bounded_and_fail_closed():
    ex = _extractor()
    huge = {"history": list(range(10_000_000, 10_000_000 + MAX_NODES + 1))}
    started = time.perf_counter()
    secrets = _secrets(ex, huge)
    assert not secrets.complete and ex.prediction({"prediction": 10_000_001}, secrets) is None
    deep: object = EMAIL
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    secrets = ex.secrets({"history": deep})
    assert not secrets.complete, "a redacted value too deep to read"
    secrets = _secrets(ex)
    assert secrets.value(deep) is UNCHECKED and ex.prediction({"prediction": deep}, secrets) is None
    wide = {"prediction": [f"item {i}" for i in range(200_000)] + [EMAIL]}
    assert ex.prediction(wide, secrets) is None, "past the scrub budget"
    big = (b"x" * (16 << 20)) + EMAIL.encode()
    assert ex.error_text(500, big, UNPARSEABLE, secrets) == "x" * 200
    assert time.perf_counter() - started < 5


def test_a_secret_at_the_cut_is_never_half_visible():
    ex = _extractor()
    secrets = _secrets(ex)
    for pad in range(180, 201):
        text = ex.error_text(500, b"y" * pad + EMAIL.encode() + b" tail", UNPARSEABLE, secrets)
        assert len(text) <= 200 and "alice" not in text and "example" not in text, pad
    many = (EMAIL + " ") * 1000
    assert "alice" not in ex.error_text(500, many.encode(), UNPARSEABLE, secrets)


def test_short_values_and_the_marker_itself():
    secrets = Secrets([("a",)])
    secrets.add_document({"a": ["7", "ed", "dact", "ok!"]})
    assert secrets.value("7 ed redacted ok!") == "7 ed redacted [redacted]"


def test_the_other_sides_redacted_answer_is_scrubbed_from_the_first_half():
    ex = _extractor()
    secrets = _secrets(ex)
    first = SideResult("ok", 1.0, 200, prediction={"t": "resp-token-31337"}, error=None)
    assert secrets.add_document({"session": {"token": "resp-token-31337"}})
    assert ex.rescrub(first, secrets).prediction == {"t": REDACTED}
    assert not secrets.add_document({"session": {"token": "resp-token-31337"}}), "nothing new"
