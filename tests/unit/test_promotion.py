"""Promotion, pure: the decision, the object the builders see, the children left, the status written."""

from __future__ import annotations

import io
from typing import Any

import pytest

from shadow_operator.api.v1alpha1 import Phase
from shadow_operator.contract import reasons
from shadow_operator.controller.admission import required_access
from shadow_operator.controller.builders import all_child_keys, desired_state
from shadow_operator.controller.conditions import find_condition
from shadow_operator.controller.observed import Observed
from shadow_operator.controller.progress import Outcome, compute_status
from shadow_operator.controller.promote import PromoteError, promote
from shadow_operator.controller.promotion import (
    NOTHING,
    PROMOTE_ANNOTATION,
    Decision,
    decide,
    due,
    effective,
    image_patch,
    promoted,
    referenced_container,
    refusal,
    requested_image,
    with_promotion,
)

from ..support.json_api import FakeApiServer
from .factories import NOW, REFERENCED_PRIMARY, make_sd, make_service, sd_body

CANDIDATE = "registry.example/recsys:2.0.0"
PRIMARY = "registry.example/recsys:1.4.2"
NOW_TEXT = "2025-03-03T12:00:00Z"
CANDIDATE_SETTINGS = {
    "candidate": {
        "image": CANDIDATE,
        "replicas": 1,
        "port": 9090,
        "env": [{"name": "MODEL", "value": "v2"}],
        "args": ["--fast"],
    }
}


def stored(result: str = "Passed", reason: str = "Passed", generation: int = 1, **extra: Any) -> dict[str, Any]:
    phase = {"Passed": "Passed", "Failed": "Failed", "Inconclusive": "Inconclusive"}[result]
    status = {
        "phase": phase,
        "observedGeneration": generation,
        "candidate": CANDIDATE,
        "verdict": {"result": result, "reason": reason, "evaluatedAt": "2025-03-03T11:50:00Z", "checks": []},
    }
    status.update(extra)
    return status


def sd_with(status: dict[str, Any] | None, overrides: dict[str, Any] | None = None, generation: int = 1):
    return make_sd(overrides or {}, status=status, generation=generation)


# -- the decision -------------------------------------------------------------------------------------


def test_nothing_is_promoted_unless_asked_in_manual_mode():
    assert decide(sd_with(stored()), None, NOW_TEXT) == NOTHING


def test_a_passed_verdict_for_the_current_candidate_and_generation_is_promoted():
    decision = decide(sd_with(stored(), CANDIDATE_SETTINGS), CANDIDATE, NOW_TEXT)
    assert decision.action == "promote"
    record = decision.record
    assert (record.image, record.replaced, record.trigger) == (CANDIDATE, PRIMARY, "manual")
    assert (record.generation, record.verdict_evaluated_at, record.promoted_at) == (1, "2025-03-03T11:50:00Z", NOW_TEXT)
    assert record.workload.port == 9090 and record.workload.args == ["--fast"]


@pytest.mark.parametrize(
    ("status", "requested", "message"),
    [
        (stored("Inconclusive", "CoverageIncomplete"), CANDIDATE, "verdict is Inconclusive (CoverageIncomplete)"),
        (stored("Failed", "CandidateErrors"), CANDIDATE, "verdict is Failed (CandidateErrors)"),
        (
            stored(candidate="registry.example/recsys:1.9.0"),
            CANDIDATE,
            f"verdict is for registry.example/recsys:1.9.0, candidate is now {CANDIDATE}",
        ),
        (
            stored(),
            "registry.example/recsys:1.9.0",
            f"promotion requested for registry.example/recsys:1.9.0, candidate is now {CANDIDATE}",
        ),
        ({"phase": "Shadowing", "observedGeneration": 1, "candidate": CANDIDATE}, CANDIDATE, "no verdict yet for"),
    ],
)
def test_a_request_is_refused_naming_why(status, requested, message):
    decision = decide(sd_with(status), requested, NOW_TEXT)
    assert decision.action == "refuse"
    assert decision.record is None
    assert message in decision.message


def test_a_status_from_an_older_generation_is_waited_for_not_promoted():
    decision = decide(sd_with(stored(generation=1), generation=2), CANDIDATE, NOW_TEXT)
    assert decision.action == "pending"
    assert "generation 1" in decision.message and "at 2" in decision.message


def test_the_error_phase_blocks_promotion_even_with_a_passed_verdict():
    status = stored()
    status["phase"] = "Error"
    action, why = refusal(sd_with(status), CANDIDATE)
    assert action == "refuse" and "phase is Error" in why


def test_automatic_mode_promotes_the_first_passed_verdict_and_waits_quietly_before():
    automatic = {"promotion": {"mode": "automatic"}}
    assert decide(sd_with(stored("Inconclusive", "InsufficientData"), automatic), None, NOW_TEXT) == NOTHING
    decision = decide(sd_with(stored(), automatic), None, NOW_TEXT)
    assert decision.action == "promote" and decision.record.trigger == "automatic"


def test_once_promoted_a_repeated_request_or_a_leftover_one_changes_nothing():
    record = decide(sd_with(stored()), CANDIDATE, NOW_TEXT).record
    status = {**stored(), "phase": "Promoted", "promotion": record.to_wire()}
    assert decide(sd_with(status), CANDIDATE, NOW_TEXT) == NOTHING
    # The next candidate: a leftover annotation naming the promoted image is not a refusal.
    next_round = sd_with({**status, "candidate": "x"}, {"candidate": {"image": "registry.example/recsys:3.0.0"}})
    assert not promoted(next_round)
    assert decide(next_round, CANDIDATE, NOW_TEXT) == NOTHING


def test_the_annotation_is_the_request():
    body = sd_body()
    assert requested_image(body) is None
    body["metadata"]["annotations"] = {PROMOTE_ANNOTATION: f" {CANDIDATE} "}
    assert requested_image(body) == CANDIDATE
    body["metadata"]["annotations"] = {PROMOTE_ANNOTATION: ""}
    assert requested_image(body) is None


def test_due_when_the_status_just_written_allows_the_next_pass_to_promote():
    sd = sd_with(stored())
    status = compute_status(sd, Outcome(), NOW)
    assert not due(sd, status, None)  # manual, nobody asked
    assert due(sd, status.model_copy(update={"phase": Phase.PASSED}), CANDIDATE)
    assert not due(sd, status.model_copy(update={"phase": Phase.SHADOWING}), CANDIDATE)


# -- the promoted object and its children ------------------------------------------------------------


def promoted_sd(overrides: dict[str, Any] | None = None):
    overrides = {**CANDIDATE_SETTINGS, **(overrides or {})}
    sd = sd_with(stored(), overrides)
    decision = decide(sd, CANDIDATE, NOW_TEXT)
    return effective(sd, decision.record), decision


def test_the_primary_runs_the_candidates_workload_with_its_own_replicas():
    sd, _ = promoted_sd()
    assert promoted(sd)
    primary = sd.spec.primary
    assert (primary.image, primary.port, primary.args, primary.replicas) == (CANDIDATE, 9090, ["--fast"], 3)
    assert [e.name for e in primary.env] == ["MODEL"]


def test_the_spec_wins_once_primary_image_is_changed():
    _sd, decision = promoted_sd()
    caught_up = make_sd({**CANDIDATE_SETTINGS, "primary": {"image": CANDIDATE, "port": 8081}}, status=stored())
    view = effective(caught_up, decision.record)
    assert (view.spec.primary.image, view.spec.primary.port) == (CANDIDATE, 8081)


def children_of(sd, observed: Observed | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    state = desired_state(sd, observed or Observed(), "img")
    return {(c["kind"], c["metadata"]["name"]): c for c in state.children}


@pytest.mark.parametrize("router", ["istio", "builtin"])
def test_promoted_children_are_the_primary_alone_and_the_rest_is_cleaned_up(router):
    sd, _ = promoted_sd({"traffic": {"router": router}})
    children = children_of(sd)
    gone = all_child_keys(sd) - set(children)
    for key in [
        ("Deployment", "recommender-candidate"),
        ("Service", "recommender-candidate"),
        ("CronJob", "recommender-analysis"),
    ]:
        assert key in gone
    assert not {k for k in children if k[0] in ("VirtualService", "DestinationRule")}
    assert ("Deployment", "recommender-router") not in children
    deployment = children[("Deployment", "recommender-primary")]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["model"], "no recorder sidecar once nothing is compared"
    assert containers[0]["image"] == CANDIDATE and deployment["spec"]["replicas"] == 3
    entry = children[("Service", "recommender")]
    assert entry["spec"]["selector"]["shadow.mlops.dev/role"] == "primary"
    assert entry["spec"]["ports"][0]["targetPort"] == 9090
    assert ("ConfigMap", "recommender-report") in children, "the verdict's evidence stays"


def test_a_builtin_router_gives_the_service_back_once_promoted():
    sd, _ = promoted_sd({"traffic": {"router": "builtin"}})
    service = make_service(selector={"app": "recommender"})
    state = desired_state(sd, Observed(service=service), "img")
    assert state.switch is None


def test_a_referenced_primary_is_never_built():
    sd, decision = promoted_sd(REFERENCED_PRIMARY)
    assert decision.record.workload is None and decision.record.replaced == "deployment/recsys"
    children = children_of(sd, Observed(service=make_service()))
    assert not [k for k in children if k[0] == "Deployment" and k[1] != "recommender-collector"]


# -- status ----------------------------------------------------------------------------------------


def test_promoted_status_has_phase_promoted_no_mirror_and_says_what_to_commit():
    sd, decision = promoted_sd()
    computed = compute_status(sd, Outcome(), NOW)
    status = with_promotion(sd, computed, decision, NOW_TEXT)
    assert status.phase == Phase.PROMOTED
    assert (status.mirror.state, status.mirror.percent) == ("Inactive", 0)
    assert status.promotion == decision.record
    condition = find_condition(status.conditions, reasons.PROMOTED)
    assert (condition.status, condition.reason) == ("True", reasons.PROMOTED)
    assert f"Set spec.primary.image to {CANDIDATE}" in condition.message
    ready = find_condition(status.conditions, reasons.READY)
    assert (ready.status, ready.reason) == ("True", reasons.PROMOTED)
    assert find_condition(status.conditions, reasons.MIRRORING).status == "False"
    assert status.to_wire()["promotion"]["workload"]["image"] == CANDIDATE


def test_a_referenced_primary_not_patched_tells_the_pipeline_what_to_do():
    sd, decision = promoted_sd(REFERENCED_PRIMARY)
    status = with_promotion(sd, compute_status(sd, Outcome(), NOW), decision, NOW_TEXT)
    message = find_condition(status.conditions, reasons.PROMOTED).message
    assert f"set Deployment recsys's image to {CANDIDATE}" in message
    assert "patchReferencedDeployment is false" in message


def test_a_refusal_is_a_false_promoted_condition_and_goes_when_the_request_does():
    sd = sd_with(stored("Inconclusive", "CoverageIncomplete"))
    decision = decide(sd, CANDIDATE, NOW_TEXT)
    status = with_promotion(sd, compute_status(sd, Outcome(), NOW), decision, NOW_TEXT)
    assert status.phase != Phase.PROMOTED
    condition = find_condition(status.conditions, reasons.PROMOTED)
    assert (condition.status, condition.reason) == ("False", reasons.PROMOTION_REFUSED)
    assert "verdict is Inconclusive (CoverageIncomplete)" in condition.message
    later = make_sd(status=status.to_wire())
    cleared = with_promotion(later, compute_status(later, Outcome(), NOW), NOTHING, NOW_TEXT)
    assert find_condition(cleared.conditions, reasons.PROMOTED) is None


def test_the_referenced_deployments_model_container_is_found_and_patched_safely():
    assert referenced_container(("model",)) == 0
    assert referenced_container(("istio-proxy", "model")) == 1
    assert referenced_container(("server",)) == 0
    assert referenced_container(("a", "b")) is None
    assert image_patch(1, "model", "x:2") == [
        {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "model"},
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "x:2"},
    ]


def test_patching_the_referenced_deployment_needs_the_authors_access():
    sd = make_sd({**REFERENCED_PRIMARY, "promotion": {"patchReferencedDeployment": True}})
    needed = {(a.verb, a.resource, a.name) for a in required_access(sd, True)}
    assert ("patch", "deployments", "recsys") in needed
    without = make_sd(REFERENCED_PRIMARY)
    assert ("patch", "deployments", "recsys") not in {
        (a.verb, a.resource, a.name) for a in required_access(without, True)
    }


def test_a_decision_defaults_to_refused_reason():
    assert Decision("refuse", "x").reason == reasons.PROMOTION_REFUSED


# -- shadowctl promote --------------------------------------------------------------------------------


class FakeKube:
    def __init__(self, bodies: list[dict[str, Any]]):
        self.bodies = bodies
        self.patches: list[list[dict[str, Any]]] = []

    def get(self, kind, namespace, name):
        return self.bodies.pop(0) if len(self.bodies) > 1 else self.bodies[0]

    def json_patch(self, kind, namespace, name, operations):
        assert kind == "ShadowDeployment"
        self.patches.append(operations)
        return {}


def test_shadowctl_promote_refuses_without_writing_when_not_passed():
    kube = FakeKube([sd_body(status=stored("Inconclusive", "CoverageIncomplete"))])
    out = io.StringIO()
    assert promote(kube, "default", "recommender", out, sleep=lambda _: None) == 1
    assert "verdict is Inconclusive (CoverageIncomplete)" in out.getvalue()
    assert kube.patches == []


def test_shadowctl_promote_annotates_waits_and_cleans_up():
    asked = sd_body(status=stored())
    done = sd_body(status={**stored(), "phase": "Promoted", "promotion": {"image": CANDIDATE}})
    done["metadata"]["annotations"] = {PROMOTE_ANNOTATION: CANDIDATE}
    done["status"]["promotion"] = decide(make_sd(status=stored()), CANDIDATE, NOW_TEXT).record.to_wire()
    kube = FakeKube([asked, done])
    out = io.StringIO()
    assert promote(kube, "default", "recommender", out, sleep=lambda _: None) == 0
    first, last = kube.patches
    assert first == [{"op": "add", "path": "/metadata/annotations", "value": {PROMOTE_ANNOTATION: CANDIDATE}}]
    assert last[-1] == {"op": "remove", "path": "/metadata/annotations/shadow.mlops.dev~1promote"}
    assert "promoted" in out.getvalue()


# -- shadowctl promote against a loopback API (the real client's requests) ----------------------------

SD_PATH = "/apis/shadow.mlops.dev/v1alpha1/namespaces/default/shadowdeployments/recommender"


@pytest.fixture
def api():
    server = FakeApiServer()
    yield server
    server.close()


def _annotations(api) -> dict[str, str]:
    return api.objects[SD_PATH]["metadata"].get("annotations") or {}


def test_shadowctl_promote_says_when_there_is_nothing_to_promote(api):
    out = io.StringIO()
    with pytest.raises(PromoteError, match="ShadowDeployment default/recommender not found"):
        promote(api.kube(), "default", "recommender", out, sleep=lambda _: None)
    api.put(SD_PATH, sd_body(status={**stored(), "phase": "Promoted", "promotion": {"image": CANDIDATE}}))
    api.objects[SD_PATH]["status"]["promotion"] = decide(make_sd(status=stored()), CANDIDATE, NOW_TEXT).record.to_wire()
    assert promote(api.kube(), "default", "recommender", out, sleep=lambda _: None) == 0
    assert f"{CANDIDATE} is already promoted" in out.getvalue()
    assert api.writes() == []


def test_shadowctl_promote_refuses_an_invalid_spec_and_a_status_not_yet_judged_without_writing(api):
    invalid = sd_body(status=stored())
    invalid["spec"]["analysis"]["confidence"] = 7
    api.put(SD_PATH, invalid)
    out = io.StringIO()
    assert promote(api.kube(), "default", "recommender", out, sleep=lambda _: None) == 1
    assert "refused: the spec is invalid: " in out.getvalue() and "confidence" in out.getvalue()
    api.put(SD_PATH, sd_body(status=stored(generation=1), generation=2))
    out = io.StringIO()
    assert promote(api.kube(), "default", "recommender", out, sleep=lambda _: None) == 1
    assert "status is for generation 1, the spec is at 2" in out.getvalue()
    assert out.getvalue().rstrip().endswith("(try again in a moment)")
    assert api.writes() == []


def test_shadowctl_promote_reports_the_operators_refusal_and_takes_its_request_back(api):
    api.put(SD_PATH, sd_body(status=stored()))

    def operator_refuses(_: float) -> None:
        body = api.objects[SD_PATH]
        assert _annotations(api) == {PROMOTE_ANNOTATION: CANDIDATE}  # the request, as a pipeline would set it
        body["status"]["conditions"] = [
            {"type": reasons.PROMOTED, "status": "False", "reason": "PromotionRefused",
             "message": f"promotion requested for {CANDIDATE}: the Service changed meanwhile",
             "lastTransitionTime": NOW_TEXT, "observedGeneration": 1},
        ]  # fmt: skip

    out = io.StringIO()
    assert promote(api.kube(), "default", "recommender", out, sleep=operator_refuses) == 1
    assert "refused by the operator: promotion requested for" in out.getvalue()
    assert _annotations(api) == {}  # taken back with a `test` of the value it set


def test_shadowctl_promote_without_an_answer_leaves_the_request_and_says_how_to_watch(api):
    body = sd_body(status=stored())
    body["metadata"]["annotations"] = {"team": "recsys"}
    api.put(SD_PATH, body)
    out = io.StringIO()
    assert promote(api.kube(), "default", "recommender", out, timeout=0, sleep=lambda _: None) == 3
    assert _annotations(api) == {"team": "recsys", PROMOTE_ANNOTATION: CANDIDATE}  # added beside the others
    assert "no answer from the operator within 0s; the request stays" in out.getvalue()
    assert "kubectl get shadowdeployment recommender -n default" in out.getvalue()
    out = io.StringIO()
    assert promote(api.kube(), "default", "recommender", out, wait=False) == 0  # asked again: the same request
    assert _annotations(api)[PROMOTE_ANNOTATION] == CANDIDATE


def test_shadowctl_promote_names_the_api_error_it_could_not_get_past(api):
    api.put(SD_PATH, sd_body(status=stored()))
    api.fail("PATCH", SD_PATH, 403, "forbidden: cannot patch shadowdeployments", times=None)
    with pytest.raises(PromoteError, match=r"cannot annotate ShadowDeployment default/recommender: .*forbidden"):
        promote(api.kube(), "default", "recommender", io.StringIO(), sleep=lambda _: None)
    api.fail("GET", SD_PATH, 403, "forbidden: cannot get shadowdeployments", times=None)
    with pytest.raises(PromoteError, match=r"cannot read ShadowDeployment default/recommender: .*forbidden"):
        promote(api.kube(), "default", "recommender", io.StringIO(), sleep=lambda _: None)
