"""Notifications, pure parts and the sender with a fake network: transitions, payloads, retries, dedup."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shadow_operator.api.v1alpha1 import Check, Coverage, Phase, ShadowDeploymentStatus, Verdict
from shadow_operator.api.v1alpha1.promotion import NotificationTarget
from shadow_operator.contract.resource import SpecInvalid
from shadow_operator.controller.admission import required_access
from shadow_operator.controller.notifications import MAX_CHECKS, Notifier, SendError, payload, targets_of, transition
from shadow_operator.kube.client import KubeError

from .factories import make_sd, sd_body

UID = "uid-1"


def verdict(result: str = "Failed", failing: int = 12, evaluated: str = "2025-03-03T11:50:00Z") -> Verdict:
    checks = [
        Check(
            name="errorRate",
            segment=f"s{i}",
            candidate=0.04,
            threshold=0.01,
            passed=False,
            message=f"rate 4% > 1% see http://prometheus.monitoring:9090/graph?{i}",
        )
        for i in range(failing)
    ]
    checks.append(Check(name="agreement", segment="all", passed=True))
    return Verdict(result=result, reason="CandidateErrors", message="errors", evaluated_at=evaluated, checks=checks)


def status(phase: Phase, **extra: Any) -> ShadowDeploymentStatus:
    return ShadowDeploymentStatus(phase=phase, candidate="registry.example/recsys:2.0.0", **extra)


COVERAGE = Coverage(
    elapsed="168h", required="168h", samples=4821, required_samples=1000, percent=100, summary="100% of 168h"
)


# -- transitions ----------------------------------------------------------------------------------


def test_only_a_change_into_a_notified_phase_is_a_transition():
    shadowing = status(Phase.SHADOWING)
    failed = status(Phase.FAILED, verdict=verdict())
    change = transition(UID, shadowing, failed)
    assert (change.before, change.after) == ("Shadowing", "Failed")
    assert transition(UID, failed, failed) is None, "a resync with the same phase sends nothing"
    assert transition(UID, status(Phase.PENDING), status(Phase.DEPLOYING)) is None
    assert transition(UID, failed, shadowing) is None


def test_the_same_transition_has_the_same_key_and_a_new_verdict_a_new_one():
    shadowing = status(Phase.SHADOWING)
    first = transition(UID, shadowing, status(Phase.FAILED, verdict=verdict()))
    again = transition(UID, shadowing, status(Phase.FAILED, verdict=verdict()))
    later = transition(UID, shadowing, status(Phase.FAILED, verdict=verdict(evaluated="2025-03-04T00:00:00Z")))
    assert first.key == again.key
    assert first.key != later.key
    assert transition("uid-2", shadowing, status(Phase.FAILED, verdict=verdict())).key != first.key


# -- payload ----------------------------------------------------------------------------------------


def test_payload_has_headline_top_failing_checks_coverage_and_slack_text_without_links():
    change = transition(UID, status(Phase.SHADOWING), status(Phase.FAILED, verdict=verdict(), coverage=COVERAGE))
    body = payload("ml", "recommender", change, status(Phase.FAILED, verdict=verdict(), coverage=COVERAGE))
    assert body["headline"] == (
        "ShadowDeployment ml/recommender: candidate registry.example/recsys:2.0.0 Failed (CandidateErrors)"
    )
    assert body["transition"] == {"from": "Shadowing", "to": "Failed"}
    assert len(body["failingChecks"]) == MAX_CHECKS
    assert all(check["segment"] != "all" for check in body["failingChecks"]), "only failing checks"
    assert body["coverage"]["percent"] == 100 and body["coverage"]["summary"] == "100% of 168h"
    assert body["text"].startswith(body["headline"])
    assert "100% of 168h" in body["text"] and "s0" in body["text"]
    for text in (body["text"], *(c["message"] for c in body["failingChecks"])):
        assert "http" not in text and "prometheus.monitoring" not in text


def test_a_failing_checks_hour_and_source_reach_the_payload_and_its_text():
    from shadow_operator.api.v1alpha1 import CheckSource

    hourly = Check(name="agreement", segment="all", hour=19, candidate=0.5, threshold=0.8, passed=False)
    seen = Check(name="errorRate", segment="history=<1", source=CheckSource.PROMETHEUS, passed=False)
    whole = Check(name="errorRate", segment="history=<1", passed=False, message="KeyError")
    failed = status(
        Phase.FAILED,
        verdict=Verdict(
            result="Failed", reason="CandidateErrors", evaluated_at="2025-03-03T11:50:00Z", checks=[whole, hourly, seen]
        ),
    )
    body = payload("ml", "recommender", transition(UID, status(Phase.SHADOWING), failed), failed)
    assert [(c["segment"], c.get("hour"), c["source"]) for c in body["failingChecks"]] == [
        ("history=<1", None, "records"),
        ("all", 19, "records"),
        ("history=<1", None, "prometheus"),
    ]
    lines = body["text"].splitlines()
    assert "• errorRate [history=<1]: KeyError" in lines
    assert "• agreement [all @19h]: failed" in lines
    assert "• errorRate [history=<1 (prometheus)]: failed" in lines


def test_an_error_payload_names_the_ready_reason():
    from shadow_operator.controller.conditions import set_condition

    conditions = set_condition([], "Ready", False, "ServiceNotFound", "Service recommender not found", 1, "t")
    failed = status(Phase.ERROR, conditions=conditions)
    body = payload("ml", "recommender", transition(UID, status(Phase.SHADOWING), failed), failed)
    assert "Error (ServiceNotFound: Service recommender not found)" in body["headline"]
    assert body["failingChecks"] == [] and body["verdict"] is None


# -- the spec and admission ----------------------------------------------------------------------------


def test_a_target_has_exactly_one_url_source():
    with pytest.raises(SpecInvalid, match="exactly one of url or urlFrom"):
        make_sd({"notifications": [{"on": ["Failed"]}]})
    with pytest.raises(SpecInvalid, match="exactly one of url or urlFrom"):
        make_sd({"notifications": [{"url": "http://x", "urlFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]})
    with pytest.raises(SpecInvalid):
        make_sd({"notifications": [{"url": "ftp://x"}]})
    sd = make_sd({"notifications": [{"urlFrom": {"secretKeyRef": {"name": "slack", "key": "url"}}, "on": ["Failed"]}]})
    assert sd.spec.notifications[0].on == ["Failed"]
    assert make_sd({"notifications": [{"url": "https://x"}]}).spec.notifications[0].on == [
        "Failed",
        "Passed",
        "Inconclusive",
        "Error",
        "Promoted",
    ]


def test_targets_are_read_leniently_from_a_spec_that_is_otherwise_invalid():
    body = sd_body({"notifications": [{"url": "http://127.0.0.1:1/hook"}], "traffic": {"mirrorPercent": 900}})
    with pytest.raises(SpecInvalid):
        make_sd({"traffic": {"mirrorPercent": 900}})
    assert [t.url for t in targets_of(body["spec"])] == ["http://127.0.0.1:1/hook"]
    assert targets_of({"notifications": [{"url": 3}]}) == []


def test_reading_a_url_from_a_secret_needs_the_authors_access_to_it():
    secret = {"urlFrom": {"secretKeyRef": {"name": "slack", "key": "url"}}}
    sd = make_sd({"notifications": [secret, {**secret, "on": ["Passed"]}, {"url": "https://x"}]})
    secrets = [a for a in required_access(sd, True) if a.resource == "secrets"]
    assert [(a.verb, a.name, a.field) for a in secrets] == [
        ("get", "slack", "spec.notifications[0].urlFrom.secretKeyRef.name")
    ]
    assert not [a for a in required_access(make_sd(), True) if a.resource == "secrets"]


# -- the sender -----------------------------------------------------------------------------------------


class Network:
    """A fake endpoint: answers from a script, records every POST."""

    def __init__(self, answers: list[SendError | None]):
        self.answers = answers
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def post(self, url: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.posts.append((url, body))
            answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer


INVOLVED = {"apiVersion": "shadow.mlops.dev/v1alpha1", "kind": "ShadowDeployment", "metadata": {
    "name": "recommender", "namespace": "ml", "uid": UID}}  # fmt: skip


def target(**fields: Any) -> NotificationTarget:
    return NotificationTarget.model_validate(fields, by_alias=True)


def notifier(network: Network, gave_up: list | None = None, resolve=None, delays=(0.01, 0.01, 0.01, 0.01)):
    return Notifier(
        resolve or (lambda *a: "http://secret.example/hook"),
        on_give_up=(lambda involved, message: gave_up.append(message)) if gave_up is not None else None,
        post=network.post,
        delays=delays,
    )


def test_a_failed_post_is_retried_and_a_transition_is_sent_once():
    network = Network([SendError("answered 500", True)])
    sender = notifier(network)
    hooks = [target(url="http://a.example/1"), target(url="http://b.example/2", on=["Passed"])]
    assert sender.submit(("k",), INVOLVED, hooks, "Failed", {"phase": "Failed"}) == 1
    assert sender.submit(("k",), INVOLVED, hooks, "Failed", {"phase": "Failed"}) == 0, "deduplicated"
    assert sender.wait_idle(5)
    assert [url for url, _ in network.posts] == ["http://a.example/1", "http://a.example/1"]
    sender.close()


def test_retries_are_bounded_and_giving_up_is_reported():
    network = Network([SendError("answered 503", True)] * 10)
    gave_up: list[str] = []
    sender = notifier(network, gave_up)
    sender.submit(("k",), INVOLVED, [target(url="http://a.example/1")], "Failed", {"phase": "Failed"})
    assert sender.wait_idle(5)
    assert len(network.posts) == 5
    assert gave_up and "gave up after 5 attempt(s)" in gave_up[0] and "answered 503" in gave_up[0]
    sender.close()


def test_a_client_error_is_not_retried():
    network = Network([SendError("answered 404", False)])
    gave_up: list[str] = []
    sender = notifier(network, gave_up)
    sender.submit(("k",), INVOLVED, [target(url="http://a.example/1")], "Passed", {"phase": "Passed"})
    assert sender.wait_idle(5)
    assert len(network.posts) == 1 and "answered 404" in gave_up[0]
    sender.close()


def test_submit_never_waits_for_the_network():
    release = threading.Event()
    network = Network([])
    slow = Notifier(lambda *a: "", post=lambda url, body: (release.wait(5), network.post(url, body)), delays=())
    started = threading.Event()
    threading.Thread(
        target=lambda: (slow.submit(("k",), INVOLVED, [target(url="http://a/1")], "Failed", {}), started.set())
    ).start()
    assert started.wait(1), "submit blocked on a slow endpoint"
    release.set()
    assert slow.wait_idle(5) and len(network.posts) == 1
    slow.close()


def test_a_url_from_a_secret_is_read_at_send_time_and_a_missing_grant_is_explained():
    network = Network([])
    reads: list[tuple[str, str, str]] = []

    def resolve(namespace: str, name: str, key: str) -> str:
        reads.append((namespace, name, key))
        return "https://hooks.example/T/B/x"

    sender = notifier(network, resolve=resolve)
    from_secret = target(urlFrom={"secretKeyRef": {"name": "slack", "key": "url"}})
    sender.submit(("k",), INVOLVED, [from_secret], "Failed", {})
    assert sender.wait_idle(5)
    assert reads == [("ml", "slack", "url")] and network.posts[0][0] == "https://hooks.example/T/B/x"
    sender.close()

    def forbidden(*_: str) -> str:
        raise KubeError(403, 'secrets "slack" is forbidden')

    gave_up: list[str] = []
    denied = notifier(Network([]), gave_up, resolve=forbidden)
    denied.submit(("k",), INVOLVED, [from_secret], "Failed", {})
    assert denied.wait_idle(5)
    assert "may not read Secret slack" in gave_up[0] and "namespace ml" in gave_up[0]
    denied.close()
