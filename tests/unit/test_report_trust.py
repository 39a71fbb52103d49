"""Trusted reports (issue 11): only this object's ConfigMap, naming this object, reaches status; and it fits."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from shadow_operator.api.v1alpha1 import Check
from shadow_operator.contract.report import REPORT_KEY, ErrorText, Report, trusted_report
from shadow_operator.controller.builders import desired_state
from shadow_operator.controller.observed import Observed
from shadow_operator.job import cli as analysis_cli
from shadow_operator.job.publish import (
    REPORT_BUDGET_BYTES,
    REPORT_TRUNCATED,
    publish_operations,
    report_data,
    report_owner_problem,
    report_within_budget,
)

from .factories import make_sd
from .report_factory import FAILING_SEGMENT, make_report, segment_slice

UID = "uid-1"
CONFIGMAP_LIMIT = 1 << 20  # what the API server accepts for a ConfigMap's data


def report_body(report: Report | None, owner_uid: str = UID, controller: bool = True, version: str = "7") -> dict:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "recommender-report",
            "namespace": "default",
            "uid": "cm-uid",
            "resourceVersion": version,
            "ownerReferences": [
                {
                    "apiVersion": "shadow.mlops.dev/v1alpha1",
                    "kind": "ShadowDeployment",
                    "name": "recommender",
                    "uid": owner_uid,
                    "controller": controller,
                }
            ],
        },
    }
    if report is not None:
        body["data"] = {REPORT_KEY: report.model_dump_json()}
    return body


# -- what the operator trusts ------------------------------------------------------------------------


def test_the_operator_creates_the_report_configmap_owned_and_empty():
    children = desired_state(make_sd(), Observed(), "img").children
    [configmap] = [c for c in children if (c["kind"], c["metadata"]["name"]) == ("ConfigMap", "recommender-report")]
    [owner] = configmap["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ShadowDeployment", UID, True)
    assert "data" not in configmap, "the operator's apply must never own (and so overwrite) the job's data"
    order = [(c["kind"], c["metadata"]["name"]) for c in children]
    assert order.index(("ConfigMap", "recommender-report")) < order.index(("CronJob", "recommender-analysis"))


def test_a_report_in_its_own_configmap_naming_its_object_is_trusted():
    report, problem = trusted_report(report_body(make_report()), "default", "recommender", UID)
    assert problem is None and report is not None and report.verdict.result == "Failed"


def test_no_report_yet_is_not_a_problem():
    assert trusted_report(None, "default", "recommender", UID) == (None, None)
    assert trusted_report(report_body(None), "default", "recommender", UID) == (None, None)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (report_body(make_report(), owner_uid="uid-of-a-namesake"), "not controlled by this ShadowDeployment"),
        (report_body(make_report(), controller=False), "not controlled by this ShadowDeployment"),
        (
            report_body(
                make_report(result="Passed", reason="AllChecksPassed").model_copy(update={"shadow": "default/other"})
            ),
            "'default/other', not 'default/recommender'",
        ),
        ({**report_body(None), "data": {REPORT_KEY: '{"verdict": "Passed"}'}}, "no readable report.json"),
    ],
    ids=["other owner", "owner but not controller", "another object's report", "unreadable"],
)
def test_an_untrusted_report_is_ignored_and_says_why(body, says):
    report, problem = trusted_report(body, "default", "recommender", UID)
    assert report is None, "an untrusted report must never reach status"
    assert says in problem


def _tampered(edit) -> dict:
    """A report body whose JSON was edited after the job wrote it: `edit` changes the parsed document."""
    document = make_report().model_dump(mode="json")
    edit(document)
    return {**report_body(None), "data": {REPORT_KEY: json.dumps(document)}}


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("hour", 24, "verdict.checks[0].hour: Input should be less than or equal to 23"),
        ("hour", -1, "verdict.checks[0].hour: Input should be greater than or equal to 0"),
        ("hour", "14h", "verdict.checks[0].hour: Input should be a valid integer"),
        ("source", "datadog", "verdict.checks[0].source: Input should be 'records' or 'prometheus'"),
    ],
)
def test_a_check_with_an_impossible_hour_or_source_makes_the_report_untrusted(field, value, says):
    body = _tampered(lambda document: document["verdict"]["checks"][0].update({field: value}))
    report, problem = trusted_report(body, "default", "recommender", UID)
    assert report is None, "an invalid report must never reach status"
    assert f"holds no readable report.json ({says}" in problem
    assert problem.endswith(
        "so it is ignored: the next run of the comparison job (CronJob <name>-analysis) replaces it."
    )


def test_a_slice_with_an_impossible_hour_or_source_makes_the_report_untrusted():
    def edit(document):
        document["slices"][0]["hour"] = 99
        document["slices"][1]["source"] = "guesswork"

    _, problem = trusted_report(_tampered(edit), "default", "recommender", UID)
    assert "slices[0].hour: Input should be less than or equal to 23" in problem
    assert "slices[1].source: Input should be 'records' or 'prometheus'" in problem


def test_the_fields_an_untrusted_report_fails_on_are_named_briefly():
    """The problem goes into an Event: a report failing everywhere names three fields, each cut short."""

    def edit(document):
        for check in document["verdict"]["checks"]:
            check["source"] = "x"
        document["verdict"]["checks"][0]["y" * 5000] = 1

    _, problem = trusted_report(_tampered(edit), "default", "recommender", UID)
    assert problem.count(": Input should be") + problem.count(": Extra inputs") == 3
    assert " more), so it is ignored" in problem and "y" * 200 not in problem
    assert len(problem) < 1000


def test_a_report_json_that_is_not_json_is_named_as_such():
    body = {**report_body(None), "data": {REPORT_KEY: "{not json"}}
    _, problem = trusted_report(body, "default", "recommender", UID)
    assert "holds no readable report.json (not JSON: " in problem


def test_the_hour_and_source_of_a_trusted_report_reach_status():
    from shadow_operator.api.v1alpha1 import CheckSource
    from shadow_operator.controller.progress import verdict_for_status

    hourly = Check(name="errorRate", segment="all", hour=14, passed=False, candidate=0.5, threshold=0.01)
    seen = Check(name="errorRate", segment="history=<1", source=CheckSource.PROMETHEUS, passed=False)
    published = make_report(extra_checks=[hourly, seen])
    report, problem = trusted_report(report_body(published), "default", "recommender", UID)
    assert problem is None
    status = verdict_for_status(report.verdict).to_wire()
    wired = {(c["segment"], c.get("hour"), c["source"]) for c in status["checks"] if c.get("passed") is False}
    assert {("all", 14, "records"), ("history=<1", None, "prometheus")} <= wired
    whole = next(c for c in status["checks"] if c["segment"] == "all" and "hour" not in c)
    assert whole["source"] == "records"


def test_an_unowned_configmap_with_a_report_is_ignored():
    body = report_body(make_report())
    del body["metadata"]["ownerReferences"]
    report, problem = trusted_report(body, "default", "recommender", UID)
    assert report is None and "its controller: none" in problem


# -- what the job publishes ----------------------------------------------------------------------------


class FakeKube:
    def __init__(self, configmap: dict | None):
        self.configmap = configmap
        self.patches: list[list[dict]] = []

    def get(self, kind, namespace, name, cached=True):
        assert (kind, namespace, name) == ("ConfigMap", "default", "recommender-report")
        return self.configmap

    def json_patch(self, kind, namespace, name, operations):
        self.patches.append(operations)
        return {}

    def apply(self, body):  # the job may not create ConfigMaps: it must never apply one
        raise AssertionError("the job applied (created) a ConfigMap")


def test_the_job_patches_only_the_configmap_its_object_controls():
    kube = FakeKube(report_body(None))
    analysis_cli._publish(kube, make_sd(), make_report())
    [operations] = kube.patches
    assert operations[0] == {"op": "test", "path": "/metadata/uid", "value": "cm-uid"}
    assert operations[1]["path"] == "/data" and json.loads(operations[1]["value"][REPORT_KEY])["shadow"]


@pytest.mark.parametrize(
    ("configmap", "says"),
    [(None, "does not exist: the operator creates it"), (report_body(None, owner_uid="x"), "not controlled by")],
    ids=["missing", "someone else's"],
)
def test_the_job_refuses_to_publish_elsewhere(configmap, says):
    kube = FakeKube(configmap)
    with pytest.raises(analysis_cli.CommandError, match=says):
        analysis_cli._publish(kube, make_sd(), make_report())
    assert kube.patches == []
    assert says in report_owner_problem(make_sd(), configmap)


def test_publish_operations_replace_the_data_of_the_object_read():
    operations = publish_operations(report_body(None), make_report())
    assert [op["op"] for op in operations] == ["test", "add"]


# -- the size budget -------------------------------------------------------------------------------------


def _with_hours_and_segments(values: int, hours: int = 24, errors_text: int = 0, features: int = 0) -> Report:
    """One segment with `values` buckets, each also per hour of day: the issue's 1.6 MB report at 20 values."""
    base = make_report()
    error = [("E" * errors_text, 3)] if errors_text else []
    slices = [s for s in base.slices if s.hour is None and s.segment == "all"]
    for value in range(values):
        segment = f"country=v{value:04d}"
        slices.append(segment_slice(segment, 500 + value, 1, 0.97, top_errors=error * 5))
        slices += [s.model_copy(update={"hour": hour}) for hour in range(hours) for s in [slices[-1]]]
    if features:
        missing = {f"$.features.f{i:05d}": 0.001 for i in range(features)}
        slices = [s.model_copy(update={"feature_missing": missing}) for s in slices]
    return base.model_copy(update={"slices": slices})


def _json_size(report: Report) -> int:
    return len(report.model_dump_json().encode())


def test_a_report_that_fits_is_published_whole():
    report = make_report()
    assert report_within_budget(report) == report
    assert json.loads(report_data(report)[REPORT_KEY]) == json.loads(report.model_dump_json())


def test_the_issues_realistic_report_keeps_every_segment_and_drops_hour_windows():
    report = _with_hours_and_segments(values=20, features=30)
    assert _json_size(report) > CONFIGMAP_LIMIT, "the fixture must be as large as the issue's 1.6 MB report"
    published = report_within_budget(report)
    assert _json_size(published) <= REPORT_BUDGET_BYTES
    assert all(s.hour is None for s in published.slices)
    assert {s.segment for s in published.slices} == {s.segment for s in report.slices}
    assert published.verdict == report.verdict and published.coverage == report.coverage
    [note] = [p for p in published.problems if p.code == REPORT_TRUNCATED]
    assert "hour-of-day slices" in note.message and "shadowctl analyze" in note.message


def test_the_worst_case_the_api_allows_still_fits_and_keeps_the_verdict():
    """segments, values and features are unbounded lists in the CRD: thousands of slices with long error
    texts and features, thousands of checks, problems and queries must still publish."""
    report = _with_hours_and_segments(values=120, hours=24, errors_text=4000, features=200)
    failing = Check(name="errorRate", segment=FAILING_SEGMENT, candidate=0.04, threshold=0.01, passed=False,
                    message="x" * 100_000)  # fmt: skip
    # The verdict lists its cause first, then what it explains (all traffic among them).
    explained = Check(name="errorRate", segment="all", candidate=0.011, threshold=0.01, passed=False, message="e")
    checks = [failing, explained] + [
        Check(name="agreement", segment=f"country=v{i:04d}", passed=True, message="y" * 500) for i in range(3000)
    ]
    report = report.model_copy(
        update={
            "verdict": report.verdict.model_copy(update={"checks": checks}),
            "problems": [p.model_copy(update={"message": "z" * 10_000}) for p in report.problems * 500],
            "queries": {f'sum(rate(x{{segment="{i}"}}[7d]))' + "q" * 200: 0.1 for i in range(3000)},
        }
    )
    assert _json_size(report) > 20 * CONFIGMAP_LIMIT
    published = report_within_budget(report)
    size = len(report_data(report)[REPORT_KEY].encode())
    assert size <= REPORT_BUDGET_BYTES < CONFIGMAP_LIMIT, f"published report is {size} bytes"
    assert (published.verdict.result, published.verdict.reason) == (report.verdict.result, report.verdict.reason)
    assert published.coverage == report.coverage and published.candidate == report.candidate
    first = published.verdict.checks[0]
    assert (first.name, first.segment, first.passed) == ("errorRate", FAILING_SEGMENT, False), "the cause stays first"
    assert any(p.code == REPORT_TRUNCATED for p in published.problems)
    # The operator still reads it back.
    body = report_body(None)
    body["data"] = report_data(report)
    assert trusted_report(body, "default", "recommender", UID)[0] == published


def test_the_failing_segment_outlives_busier_passing_ones():
    report = _with_hours_and_segments(values=3000, hours=0)
    report = report.model_copy(
        update={"slices": [*report.slices, segment_slice(FAILING_SEGMENT, 10, 5, 0.5, top_errors=[("KeyError", 5)])]}
    )
    published = report_within_budget(report, budget=200_000)
    assert _json_size(published) <= 200_000
    segments = {s.segment for s in published.slices}
    assert FAILING_SEGMENT in segments and "all" in segments
    assert len(segments) < 3000


def test_long_error_texts_are_cut_only_as_a_last_resort():
    report = make_report()
    side = report.slices[0].candidate.model_copy(update={"top_errors": [ErrorText(text="e" * 2_000_000, count=1)]})
    report = report.model_copy(update={"slices": [report.slices[0].model_copy(update={"candidate": side})]})
    published = report_within_budget(report)
    assert _json_size(published) <= REPORT_BUDGET_BYTES
    assert published.slices and len(published.slices[0].candidate.top_errors[0].text) <= 256


def test_untrusted_report_problem_names_the_fix():
    _, problem = trusted_report(report_body(make_report(), owner_uid="z"), "default", "recommender", UID)
    assert "delete the ConfigMap and the operator recreates it" in problem


def test_reconcile_ignores_an_untrusted_report_and_says_so_once():
    """Through the Reconciler with a fake API: no verdict in status, one Warning Event per version."""
    from shadow_operator.controller.reconcile import Reconciler

    from .factories import NOW, sd_body

    forged = make_report(result="Passed", reason="AllChecksPassed").model_copy(update={"shadow": "default/other"})
    store: dict[tuple[str, str], dict] = {}
    events: list[tuple[str, str, str]] = []
    statuses: list[dict] = []
    version = {"now": "1"}
    sd = sd_body()
    sd["metadata"]["uid"] = UID

    def get(kind, namespace, name, cached=True):
        if kind == "ShadowDeployment":
            return sd
        if (kind, name) == ("ConfigMap", "recommender-report"):
            return report_body(forged, version=version["now"])
        return store.get((kind, name))

    def apply(body):
        live = json.loads(json.dumps(body))
        live["metadata"].update(uid=f"uid-{body['metadata']['name']}", generation=1)
        if body["kind"] == "Deployment":
            replicas = body["spec"]["replicas"]
            live["status"] = {"observedGeneration": 1, "availableReplicas": replicas, "updatedReplicas": replicas}
        store[(body["kind"], body["metadata"]["name"])] = live
        return live

    def patch_status(namespace, name, status):
        statuses.append(status)
        sd["status"] = {**(sd.get("status") or {}), **{k: v for k, v in status.items() if v is not None}}

    kube = SimpleNamespace(
        get=get,
        holder=lambda kind, namespace, name: get(kind, namespace, name, cached=False),
        apply=apply,
        patch_status=patch_status,
        post_event=lambda body, type_, reason, message: events.append((type_, reason, message)),
        json_patch=lambda *a: {},
        delete=lambda *a: None,
    )
    reconciler = Reconciler(kube, "img", clock=lambda: NOW)
    for _ in range(2):
        reconciler.reconcile(sd)
    version["now"] = "2"  # the forger writes again
    reconciler.reconcile(sd)
    status = sd["status"]
    assert status["phase"] == "Shadowing" and "verdict" not in status, "an untrusted Passed reached status"
    untrusted = [e for e in events if e[1] == "UntrustedReport"]
    assert len(untrusted) == 2, f"one Event per version of the forged report, not per pass: {untrusted}"
    assert untrusted[0][0] == "Warning" and "'default/other'" in untrusted[0][2]
    analyzed = next(c for c in status["conditions"] if c["type"] == "Analyzed")
    assert "UntrustedReport" in analyzed["message"] and analyzed["reason"] == "AwaitingAnalysis"
