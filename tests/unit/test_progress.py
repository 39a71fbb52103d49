"""Pure status computation: phases, conditions, mirror, coverage and quiet idle reconciles."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from shadow_operator.api.v1alpha1 import Coverage, Phase, ShadowDeploymentStatus, Verdict
from shadow_operator.contract import reasons
from shadow_operator.contract.resource import ShadowDeployment
from shadow_operator.contract.timestamps import timestamp
from shadow_operator.controller.conditions import find_condition, set_condition
from shadow_operator.controller.progress import (
    Outcome,
    compute_coverage,
    compute_status,
    error_status,
    phase_for,
)
from shadow_operator.controller.validation import Problem

from .factories import NOW, REFERENCED_PRIMARY, make_deployment, make_sd

NOW_TEXT = "2025-03-03T12:00:00Z"
ENOUGH_SAMPLES = 1000  # make_sd's analysis.minSamples: coverage is then time alone
OLD_IMAGE = "registry.example/recsys:1.9.0"
NEW_IMAGE = "registry.example/recsys:2.0.0"  # the contract's candidate


def _ready(**kwargs):
    return make_deployment(**kwargs)


def _all_available(builtin: bool = False) -> Outcome:
    deployments = [
        ("primary", "recommender-primary", _ready(name="recommender-primary")),
        ("candidate", "recommender-candidate", _ready(name="recommender-candidate", replicas=1)),
    ]
    if builtin:
        deployments.append(("router", "recommender-router", _ready(name="recommender-router", replicas=2)))
    return Outcome(deployments=tuple(deployments))


def _with_status(sd: ShadowDeployment, status: ShadowDeploymentStatus) -> ShadowDeployment:
    return dataclasses.replace(sd, status=status)


def _condition(status: ShadowDeploymentStatus, type_: str):
    found = find_condition(status.conditions, type_)
    assert found is not None, f"no {type_} condition in {status.conditions}"
    return found


def _shadowing_status(
    since: str, candidate: str = NEW_IMAGE, verdict: Verdict | None = None, samples: int = ENOUGH_SAMPLES
) -> ShadowDeploymentStatus:
    """A stored status as an earlier reconcile would have left it: shadowing `candidate` since `since`."""
    sd = make_sd({"candidate": {"image": candidate}})
    start = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    status = compute_status(sd, _all_available(), start)
    assert status.shadowing_since == since
    # As if the job had reported enough samples already: coverage is then time alone.
    status = status.model_copy(update={"coverage": status.coverage.model_copy(update={"samples": samples})})
    return status.model_copy(update={"verdict": verdict}) if verdict else status


def _verdict(result: str, reason: str, message: str = "What decided it.") -> Verdict:
    return Verdict(result=result, reason=reason, message=message, evaluated_at=NOW_TEXT)


def _coverage(percent: int) -> Coverage:
    return Coverage(
        elapsed="0s", required="168h", required_samples=1000, percent=percent, summary=f"{percent}% of 168h"
    )


# -- error ---------------------------------------------------------------------------------------------


def test_problems_give_phase_error():
    problem = Problem(reasons.SERVICE_NOT_FOUND, "spec.service.name: Service recommender not found.")
    status = compute_status(make_sd(generation=4), Outcome(problems=(problem,)), NOW)

    assert status.phase == Phase.ERROR
    assert status.observed_generation == 4
    ready = _condition(status, reasons.READY)
    assert (ready.status, ready.reason, ready.message) == ("False", "ServiceNotFound", problem.message)
    stalled = _condition(status, reasons.STALLED)
    assert (stalled.status, stalled.reason, stalled.message) == ("True", "ServiceNotFound", problem.message)
    reconciling = _condition(status, reasons.RECONCILING)
    assert (reconciling.status, reconciling.reason) == ("False", "ServiceNotFound")
    assert all(c.observed_generation == 4 and c.last_transition_time == NOW_TEXT for c in status.conditions)


def test_several_problems_join_and_the_first_names_the_reason():
    problems = (Problem(reasons.INVALID_INTERVAL, "first"), Problem(reasons.INVALID_JSON_PATH, "second"))
    status = compute_status(make_sd(), Outcome(problems=problems), NOW)
    ready = _condition(status, reasons.READY)
    assert (ready.reason, ready.message) == ("InvalidInterval", "first; second")


def test_apply_error_gives_phase_error():
    status = compute_status(make_sd(), Outcome(apply_error="admission webhook denied the request"), NOW)
    assert status.phase == Phase.ERROR
    assert _condition(status, reasons.STALLED).reason == reasons.APPLY_FAILED
    assert _condition(status, reasons.READY).message == "admission webhook denied the request"


def test_error_status_keeps_mirror_and_coverage():
    previous = _shadowing_status("2025-03-01T00:00:00Z")
    status = error_status(previous, 9, [Problem(reasons.INVALID_SPEC, "spec.traffic.mirrorPercent: too big")], NOW)
    assert status.phase == Phase.ERROR
    assert status.observed_generation == 9
    assert (status.mirror, status.coverage, status.shadowing_since) == (
        previous.mirror,
        previous.coverage,
        previous.shadowing_since,
    )
    # Mirroring says what the route is still doing.
    assert _condition(status, reasons.MIRRORING) == _condition(previous, reasons.MIRRORING)
    assert _condition(status, reasons.READY).status == "False"
    assert _condition(status, reasons.STALLED).status == "True"


# -- deploying -------------------------------------------------------------------------------------------


def test_missing_primary_is_waited_for():
    outcome = Outcome(
        deployments=(
            ("primary", "recommender-primary", None),
            ("candidate", "recommender-candidate", _ready(name="recommender-candidate", replicas=1)),
        )
    )
    status = compute_status(make_sd(), outcome, NOW)
    assert status.phase == Phase.DEPLOYING
    ready = _condition(status, reasons.READY)
    assert (ready.status, ready.reason) == ("False", reasons.PRIMARY_NOT_AVAILABLE)
    assert ready.message == "Waiting for Deployment recommender-primary (primary): not created yet."
    reconciling = _condition(status, reasons.RECONCILING)
    assert (reconciling.status, reconciling.reason) == ("True", reasons.PRIMARY_NOT_AVAILABLE)
    assert _condition(status, reasons.STALLED).status == "False"
    mirroring = _condition(status, reasons.MIRRORING)
    assert (mirroring.status, mirroring.reason) == ("False", reasons.MIRROR_NOT_READY)
    assert status.mirror is not None
    assert (status.mirror.state, status.mirror.percent, status.mirror.host) == ("Inactive", 0, "recommender")
    assert status.shadowing_since is None
    assert status.coverage is None


def test_unavailable_candidate_is_waited_for():
    outcome = Outcome(
        deployments=(
            ("primary", "recommender-primary", _ready(name="recommender-primary")),
            ("candidate", "recommender-candidate", _ready(name="recommender-candidate", replicas=2, available=1)),
        )
    )
    status = compute_status(make_sd(), outcome, NOW)
    assert status.phase == Phase.DEPLOYING
    ready = _condition(status, reasons.READY)
    assert ready.reason == reasons.CANDIDATE_NOT_AVAILABLE
    assert ready.message == "Waiting for Deployment recommender-candidate (candidate): 1/2 replicas available."


def test_deployment_not_yet_rolled_out_at_its_generation_is_waited_for():
    stale = _ready(name="recommender-candidate", replicas=1, generation=3, observed_generation=2)
    outcome = Outcome(
        deployments=(
            ("primary", "recommender-primary", _ready(name="recommender-primary")),
            ("candidate", "recommender-candidate", stale),
        )
    )
    assert compute_status(make_sd(), outcome, NOW).phase == Phase.DEPLOYING


def test_unavailable_router_is_waited_for():
    outcome = Outcome(
        deployments=(
            *_all_available().deployments,
            ("router", "recommender-router", _ready(name="recommender-router", replicas=2, updated=1)),
        )
    )
    status = compute_status(make_sd({"traffic": {"router": "builtin"}}), outcome, NOW)
    assert status.phase == Phase.DEPLOYING
    assert _condition(status, reasons.READY).reason == reasons.ROUTER_NOT_AVAILABLE
    assert status.mirror is not None and status.mirror.router == "builtin"


def test_the_first_waiting_deployment_names_the_reason():
    outcome = Outcome(
        deployments=(
            ("primary", "recsys", _ready(name="recsys", available=0)),
            ("candidate", "recommender-candidate", None),
        )
    )
    status = compute_status(make_sd(REFERENCED_PRIMARY), outcome, NOW)
    assert _condition(status, reasons.READY).reason == reasons.PRIMARY_NOT_AVAILABLE
    assert "recsys (primary): 0/3 replicas available" in _condition(status, reasons.READY).message


# -- shadowing -----------------------------------------------------------------------------------------


def test_everything_available_is_shadowing():
    status = compute_status(make_sd(generation=2), _all_available(), NOW)
    assert status.phase == Phase.SHADOWING
    assert status.observed_generation == 2
    assert status.primary == "registry.example/recsys:1.4.2"
    assert status.candidate == NEW_IMAGE
    ready = _condition(status, reasons.READY)
    assert (ready.status, ready.reason) == ("True", reasons.SHADOWING)
    assert ready.message == "Shadowing; 0% of 168h of the business cycle covered."
    mirroring = _condition(status, reasons.MIRRORING)
    assert (mirroring.status, mirroring.reason) == ("True", reasons.MIRROR_ACTIVE)
    assert mirroring.message == "100% of recommender's requests."
    reconciling = _condition(status, reasons.RECONCILING)
    assert (reconciling.status, reconciling.reason, reconciling.message) == ("False", reasons.RECONCILED, None)
    assert _condition(status, reasons.STALLED).status == "False"
    assert status.mirror is not None
    assert status.mirror.to_wire() == {"state": "Active", "router": "istio", "percent": 100.0, "host": "recommender"}
    assert status.shadowing_since == NOW_TEXT
    assert status.coverage is not None
    assert (status.coverage.percent, status.coverage.summary) == (0, "0% of 168h")


def test_condition_types_are_written_once_each():
    status = compute_status(make_sd(), _all_available(), NOW)
    types = [c.type for c in status.conditions]
    assert sorted(types) == sorted(
        {reasons.READY, reasons.RECONCILING, reasons.STALLED, reasons.MIRRORING, reasons.ANALYZED}
    )


def test_referenced_primary_is_shown_as_a_deployment():
    status = compute_status(make_sd(REFERENCED_PRIMARY), _all_available(), NOW)
    assert status.primary == "deployment/recsys"


def test_mirror_percent_zero_is_shadowing_without_mirroring():
    status = compute_status(make_sd({"traffic": {"mirrorPercent": 0}}), _all_available(), NOW)
    assert status.phase == Phase.SHADOWING
    assert status.mirror is not None and status.mirror.state == "Inactive"
    mirroring = _condition(status, reasons.MIRRORING)
    assert (mirroring.status, mirroring.reason) == ("False", reasons.MIRROR_DISABLED)


def test_partial_mirror_is_described():
    status = compute_status(make_sd({"traffic": {"mirrorPercent": 12.5}}), _all_available(), NOW)
    assert _condition(status, reasons.MIRRORING).message == "12.5% of recommender's requests."
    assert status.mirror is not None and status.mirror.percent == 12.5


# -- coverage --------------------------------------------------------------------------------------------


def test_coverage_half_way():
    since = timestamp(NOW - timedelta(hours=84))
    sd = _with_status(make_sd(), _shadowing_status(since))
    status = compute_status(sd, _all_available(), NOW)
    assert status.shadowing_since == since
    assert status.coverage is not None
    assert status.coverage.to_wire() == {
        "elapsed": "84h",
        "required": "168h",
        "samples": 1000,
        "requiredSamples": 1000,
        "percent": 50,
        "summary": "50% of 168h",
    }
    assert _condition(status, reasons.READY).message == "Shadowing; 50% of 168h of the business cycle covered."


@pytest.mark.parametrize(
    ("elapsed", "percent", "shown"),
    [
        (timedelta(0), 0, "0s"),
        (timedelta(hours=1), 0, "0s"),
        (timedelta(hours=1, minutes=41), 1, "1h40m48s"),
        (timedelta(hours=167, minutes=59), 99, "166h19m12s"),
        (timedelta(hours=168), 100, "168h"),
        (timedelta(days=30), 100, "168h"),
        (timedelta(hours=-5), 0, "0s"),  # a clock behind the stored time never goes negative
    ],
)
def test_coverage_is_quantised_down_to_whole_percent(elapsed, percent, shown):
    since = timestamp(NOW - elapsed)
    coverage = compute_coverage(make_sd(), since, NOW, ENOUGH_SAMPLES)
    assert (coverage.percent, coverage.elapsed) == (percent, shown)
    assert coverage.summary == f"{percent}% of 168h"


def test_coverage_at_an_exact_percent_boundary():
    since = timestamp(NOW - timedelta(hours=168) * 29 / 100)
    assert compute_coverage(make_sd(), since, NOW, ENOUGH_SAMPLES).percent == 29


def test_coverage_keeps_the_samples_the_job_reported():
    coverage = compute_coverage(make_sd(), timestamp(NOW - timedelta(hours=1)), NOW, 4321)
    assert coverage.samples == 4321
    assert coverage.required_samples == 1000


def test_coverage_follows_min_duration():
    sd = make_sd({"analysis": {"minDuration": "24h"}})
    coverage = compute_coverage(sd, timestamp(NOW - timedelta(hours=6)), NOW, ENOUGH_SAMPLES)
    assert (coverage.percent, coverage.elapsed, coverage.required, coverage.summary) == (25, "6h", "24h", "25% of 24h")


def test_zero_min_duration_is_covered_at_once():
    coverage = compute_coverage(make_sd({"analysis": {"minDuration": "0s"}}), NOW_TEXT, NOW, ENOUGH_SAMPLES)
    assert coverage.percent == 100


def test_coverage_is_held_back_by_missing_samples():
    """Half the cycle's time with no record reaching the job is 0%, not 50% (seen on a real node)."""
    half = timestamp(NOW - timedelta(hours=84))
    assert compute_coverage(make_sd(), half, NOW, 0).to_wire() == {
        "elapsed": "84h",
        "required": "168h",
        "samples": 0,
        "requiredSamples": 1000,
        "percent": 0,
        "summary": "0% of 168h (0 of 1000 samples)",
    }
    assert compute_coverage(make_sd(), half, NOW, 250).percent == 25
    assert compute_coverage(make_sd(), half, NOW, 999).percent == 50  # time is then the lesser


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (timedelta(hours=84), timedelta(hours=84, minutes=30)),
        (timedelta(minutes=1), timedelta(minutes=59)),
        (timedelta(hours=200), timedelta(hours=900)),
    ],
    ids=["50%", "0%", "100%"],
)
def test_idle_reconciles_within_a_percent_write_nothing(first, second):
    start = NOW - timedelta(hours=900)
    sd = _with_status(make_sd(generation=3), _shadowing_status(timestamp(start)))
    status_1 = compute_status(sd, _all_available(), start + first)
    # The next pass reads back what the first one wrote.
    status_2 = compute_status(_with_status(sd, status_1), _all_available(), start + second)
    assert status_2.to_wire() == status_1.to_wire()


def test_a_new_percent_is_a_new_status():
    start = NOW - timedelta(hours=100)
    sd = _with_status(make_sd(), _shadowing_status(timestamp(start)))
    status_1 = compute_status(sd, _all_available(), start + timedelta(hours=84))
    status_2 = compute_status(_with_status(sd, status_1), _all_available(), start + timedelta(hours=86))
    assert status_2.to_wire() != status_1.to_wire()
    assert (status_1.coverage.percent, status_2.coverage.percent) == (50, 51)
    # Only the Ready message moved, not its transition time.
    assert (
        _condition(status_2, reasons.READY).last_transition_time
        == _condition(status_1, reasons.READY).last_transition_time
    )


def test_first_reconcile_from_empty_status_then_idle():
    sd = make_sd()
    status_1 = compute_status(sd, _all_available(), NOW)
    status_2 = compute_status(_with_status(sd, status_1), _all_available(), NOW + timedelta(minutes=5))
    assert status_2.to_wire() == status_1.to_wire()
    assert status_2.shadowing_since == NOW_TEXT


def test_a_new_candidate_image_restarts_the_cycle():
    previous = _shadowing_status("2025-02-20T00:00:00Z", candidate=OLD_IMAGE)
    status = compute_status(_with_status(make_sd(), previous), _all_available(), NOW)
    assert status.candidate == NEW_IMAGE
    assert status.shadowing_since == NOW_TEXT
    assert status.coverage is not None and status.coverage.percent == 0


def test_same_candidate_keeps_its_start_across_spec_changes():
    previous = _shadowing_status("2025-03-01T00:00:00Z")
    sd = _with_status(make_sd({"traffic": {"mirrorPercent": 50}}, generation=2), previous)
    status = compute_status(sd, _all_available(), NOW)
    assert status.shadowing_since == "2025-03-01T00:00:00Z"


def test_a_new_candidate_restarts_the_cycle_even_when_it_rolls_out_first():
    previous = _shadowing_status("2025-02-20T00:00:00Z", candidate=OLD_IMAGE)
    sd = _with_status(make_sd(), previous)
    rolling = Outcome(
        deployments=(
            ("primary", "recommender-primary", _ready(name="recommender-primary")),
            ("candidate", "recommender-candidate", _ready(name="recommender-candidate", replicas=1, available=0)),
        )
    )
    # Changing the image always rolls the candidate Deployment first.
    deploying = compute_status(sd, rolling, NOW)
    assert deploying.phase == Phase.DEPLOYING
    later = NOW + timedelta(minutes=2)
    status = compute_status(_with_status(sd, deploying), _all_available(), later)
    assert status.shadowing_since == timestamp(later)
    assert status.coverage is not None and status.coverage.percent == 0


def test_a_new_candidate_is_not_judged_by_the_old_verdict():
    previous = _shadowing_status(
        "2025-02-20T00:00:00Z", candidate=OLD_IMAGE, verdict=_verdict("Passed", reasons.VERDICT_PASSED)
    )
    status = compute_status(_with_status(make_sd(), previous), _all_available(), NOW)
    assert status.phase == Phase.SHADOWING


# -- conditions' transition times --------------------------------------------------------------------------


def test_ready_transition_time_stays_while_ready_stays_true():
    sd = make_sd()
    status_1 = compute_status(sd, _all_available(), NOW)
    status_2 = compute_status(_with_status(sd, status_1), _all_available(), NOW + timedelta(hours=30))
    ready_1, ready_2 = _condition(status_1, reasons.READY), _condition(status_2, reasons.READY)
    assert ready_1.last_transition_time == NOW_TEXT
    assert ready_2.last_transition_time == NOW_TEXT
    assert ready_2.message != ready_1.message  # coverage moved on, the transition did not


def test_ready_transition_time_moves_when_ready_flips():
    sd = make_sd()
    status_1 = compute_status(sd, _all_available(), NOW)
    later = NOW + timedelta(hours=1)
    outcome = Outcome(deployments=(("primary", "recommender-primary", None),))
    status_2 = compute_status(_with_status(sd, status_1), outcome, later)
    assert _condition(status_2, reasons.READY).last_transition_time == timestamp(later)
    # Stalled stayed False, so its time stayed.
    assert _condition(status_2, reasons.STALLED).last_transition_time == NOW_TEXT


def test_set_condition_replaces_in_place_and_appends_new_types():
    conditions = set_condition([], "Ready", True, "Shadowing", "", 1, "2025-01-01T00:00:00Z")
    conditions = set_condition(conditions, "Mirroring", False, "MirrorDisabled", None, 1, "2025-01-01T00:00:00Z")
    conditions = set_condition(conditions, "Ready", None, "Checking", "msg", 2, "2025-01-02T00:00:00Z")
    assert [(c.type, c.status, c.reason, c.message, c.observed_generation) for c in conditions] == [
        ("Ready", "Unknown", "Checking", "msg", 2),
        ("Mirroring", "False", "MirrorDisabled", None, 1),
    ]
    assert conditions[0].last_transition_time == "2025-01-02T00:00:00Z"


# -- verdicts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "percent", "phase"),
    [
        (None, 0, Phase.SHADOWING),
        (None, 100, Phase.SHADOWING),
        ("Failed", 3, Phase.FAILED),
        ("Passed", 100, Phase.PASSED),
        ("Inconclusive", 0, Phase.SHADOWING),
        ("Inconclusive", 99, Phase.SHADOWING),
        ("Inconclusive", 100, Phase.INCONCLUSIVE),
    ],
)
def test_phase_for(result, percent, phase):
    verdict = None if result is None else _verdict(result, "Whatever")
    assert phase_for(verdict, percent >= 100) == phase


def _judged(verdict: Verdict, hours: float) -> ShadowDeploymentStatus:
    since = timestamp(NOW - timedelta(hours=hours))
    sd = _with_status(make_sd(), _shadowing_status(since, verdict=verdict))
    return compute_status(sd, _all_available(), NOW)


def test_failed_verdict_fails_and_stalls():
    status = _judged(_verdict("Failed", reasons.LATENCY_REGRESSION, "p99 ratio 2.1 > 1.5 on history=<1"), 10)
    assert status.phase == Phase.FAILED
    ready = _condition(status, reasons.READY)
    assert (ready.status, ready.reason, ready.message) == (
        "False",
        "LatencyRegression",
        "p99 ratio 2.1 > 1.5 on history=<1",
    )
    stalled = _condition(status, reasons.STALLED)
    assert (stalled.status, stalled.reason) == ("True", "LatencyRegression")
    # The mirror keeps running: the evidence keeps coming.
    assert _condition(status, reasons.MIRRORING).status == "True"


def test_passed_verdict_passes():
    status = _judged(_verdict("Passed", reasons.VERDICT_PASSED, "All checks passed."), 170)
    assert status.phase == Phase.PASSED
    ready = _condition(status, reasons.READY)
    assert (ready.status, ready.reason, ready.message) == ("True", "Passed", "All checks passed.")
    assert _condition(status, reasons.STALLED).status == "False"


def test_inconclusive_verdict_keeps_shadowing_until_the_cycle_is_complete():
    verdict = _verdict("Inconclusive", reasons.INSUFFICIENT_DATA, "312 of 1000 samples.")
    early = _judged(verdict, 84)
    assert early.phase == Phase.SHADOWING
    assert _condition(early, reasons.READY).reason == reasons.SHADOWING
    done = _judged(verdict, 168)
    assert done.phase == Phase.INCONCLUSIVE
    ready = _condition(done, reasons.READY)
    assert (ready.status, ready.reason, ready.message) == ("True", "InsufficientData", "312 of 1000 samples.")
    assert _condition(done, reasons.STALLED).status == "False"


def test_verdict_is_kept_in_status():
    verdict = _verdict("Passed", reasons.VERDICT_PASSED)
    assert _judged(verdict, 170).verdict == verdict


def test_timestamp_format():
    assert timestamp(datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC)) == "2025-01-02T03:04:05Z"
