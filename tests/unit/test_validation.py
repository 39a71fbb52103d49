"""validation.validate: what the schema cannot see, each with its reason; reconcile.rivals."""

from __future__ import annotations

import pytest

from shadow_operator.contract import reasons
from shadow_operator.controller.observed import Observed
from shadow_operator.controller.reconcile import Claim, rivals
from shadow_operator.controller.validation import Problem, json_paths, validate

from .factories import REFERENCED_PRIMARY, make_deployment, make_sd, make_service

BUILTIN = {"traffic": {"router": "builtin"}}


def _only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


# -- valid ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "observed"),
    [
        ({}, Observed()),
        ({}, Observed(service=make_service())),
        (BUILTIN, Observed()),
        (BUILTIN, Observed(service=make_service())),
        (REFERENCED_PRIMARY, Observed(service=make_service(), primary_ref=make_deployment())),
        ({**BUILTIN, **REFERENCED_PRIMARY}, Observed(service=make_service(), primary_ref=make_deployment())),
        # A Service the operator created is the builders' business, whatever its shape.
        ({}, Observed(service=make_service(selector=None, ports=[], owner_uids=["uid-1"]))),
        # The builtin router took this Service over already: its two ports are its own doing.
        (
            BUILTIN,
            Observed(
                service=make_service(
                    selector={"shadow.mlops.dev/name": "recommender", "shadow.mlops.dev/role": "router"},
                    ports=[{"port": 80}, {"port": 9090}],
                    original_routing={"owner": "recommender", "selector": {"app": "recommender"}, "targetPort": 8080},
                )
            ),
        ),
    ],
    ids=[
        "istio",
        "istio-user-service",
        "builtin",
        "builtin-user-service",
        "deployment-ref",
        "builtin-deployment-ref",
        "owned-service",
        "already-switched",
    ],
)
def test_valid_spec_has_no_problems(overrides, observed):
    assert validate(make_sd(overrides), observed) == []


# -- static ---------------------------------------------------------------------------------------


def test_json_paths_lists_every_path_with_its_field():
    sd = make_sd({"recording": {"redact": ["$.user.email"]}})
    assert json_paths(sd) == [
        ("spec.recording.predictionPath", "$.prediction"),
        ("spec.recording.segments[0].path", "$.features.purchase_count"),
        ("spec.recording.features[0]", "$.features.purchase_count"),
        ("spec.recording.features[1]", "$.features.last_seen_days"),
        ("spec.recording.redact[0]", "$.user.email"),
    ]


def test_invalid_json_path_names_the_field():
    sd = make_sd({"recording": {"features": ["$.features.ok", "$.features[*]"]}})
    problem = _only(validate(sd, Observed()))
    assert problem.reason == reasons.INVALID_JSON_PATH
    assert problem.message.startswith("spec.recording.features[1]: ")
    assert "character 11" in problem.message


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"recording": {"predictionPath": "$..prediction"}}, "spec.recording.predictionPath"),
        ({"recording": {"segments": [{"name": "h", "path": "$.a[?(@.b)]"}]}}, "spec.recording.segments[0].path"),
        ({"recording": {"redact": ["$.ok", "$.ok", "$.*"]}}, "spec.recording.redact[2]"),
    ],
)
def test_every_json_path_is_checked(overrides, field):
    problem = _only(validate(make_sd(overrides), Observed()))
    assert (problem.reason, problem.message.split(": ")[0]) == (reasons.INVALID_JSON_PATH, field)


def test_every_bad_path_is_reported():
    sd = make_sd({"recording": {"features": ["$.a[*]", "$..b"]}})
    problems = validate(sd, Observed())
    assert [p.message.split(": ")[0] for p in problems] == ["spec.recording.features[0]", "spec.recording.features[1]"]


@pytest.mark.parametrize("interval", ["7m", "90s", "5h", "45m"])
def test_invalid_interval(interval):
    problem = _only(validate(make_sd({"analysis": {"interval": interval}}), Observed()))
    assert problem.reason == reasons.INVALID_INTERVAL
    assert f"analysis.interval {interval!r}" in problem.message


def test_duplicate_segment_names():
    segments = [
        {"name": "history", "path": "$.a"},
        {"name": "country", "path": "$.b"},
        {"name": "history", "path": "$.c"},
    ]
    problem = _only(validate(make_sd({"recording": {"segments": segments}}), Observed()))
    assert problem.reason == reasons.INVALID_SPEC
    assert problem.message.startswith("spec.recording.segments: names must be unique")
    assert "['history']" in problem.message


# -- against the cluster -------------------------------------------------------------------------------


def test_referenced_primary_not_found():
    problem = _only(validate(make_sd(REFERENCED_PRIMARY), Observed(service=make_service())))
    assert problem.reason == reasons.PRIMARY_DEPLOYMENT_NOT_FOUND
    assert problem.message.startswith("spec.primary.deploymentRef: Deployment recsys not found in namespace default")


def test_referenced_primary_needs_the_service():
    problem = _only(validate(make_sd(REFERENCED_PRIMARY), Observed(primary_ref=make_deployment())))
    assert problem.reason == reasons.SERVICE_NOT_FOUND
    assert problem.message.startswith("spec.service.name: Service recommender not found in namespace default")


def test_referenced_primary_with_nothing_found_reports_both():
    problems = validate(make_sd(REFERENCED_PRIMARY), Observed())
    assert [p.reason for p in problems] == [reasons.PRIMARY_DEPLOYMENT_NOT_FOUND, reasons.SERVICE_NOT_FOUND]


def test_managed_primary_does_not_need_the_service():
    assert validate(make_sd(), Observed(service=None)) == []


def test_service_port_mismatch_lists_the_ports():
    service = make_service(ports=[{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}])
    problem = _only(validate(make_sd(), Observed(service=service)))
    assert problem.reason == reasons.SERVICE_PORT_MISMATCH
    assert problem.message.startswith("spec.service.port: Service recommender has no port 80")
    assert "(its ports: 8080, 9090)" in problem.message


def test_service_port_mismatch_without_ports():
    problems = validate(make_sd(), Observed(service=make_service(ports=[])))
    assert [p.reason for p in problems] == [reasons.SERVICE_PORT_MISMATCH]
    assert "(its ports: none)" in problems[0].message


def test_service_claimed_by_an_older_shadow_deployment():
    problem = _only(validate(make_sd(), Observed(rival_claims=("recommender-v1", "recommender-v0"))))
    assert problem.reason == reasons.SERVICE_CLAIMED
    assert "already shadowed by ShadowDeployment recommender-v1" in problem.message


def test_candidate_whose_labels_match_the_service_selector_would_serve_users():
    sd = make_sd({"candidate": {"podTemplate": {"metadata": {"labels": {"app": "recommender", "team": "ml"}}}}})
    problem = _only(validate(sd, Observed(service=make_service(selector={"app": "recommender"}))))
    assert problem.reason == reasons.CANDIDATE_WOULD_SERVE_USERS
    assert problem.message.startswith("spec.candidate.podTemplate.metadata.labels: ")


def test_candidate_with_partially_matching_labels_is_fine():
    sd = make_sd({"candidate": {"podTemplate": {"metadata": {"labels": {"app": "recommender"}}}}})
    service = make_service(selector={"app": "recommender", "track": "stable"})
    assert validate(sd, Observed(service=service)) == []


def test_service_selecting_by_shadow_name_would_reach_the_candidate():
    # The candidate's own labels include shadow.mlops.dev/name.
    service = make_service(selector={"shadow.mlops.dev/name": "recommender"})
    problem = _only(validate(make_sd(), Observed(service=service)))
    assert problem.reason == reasons.CANDIDATE_WOULD_SERVE_USERS


def test_referenced_primary_the_service_does_not_select_is_unusable():
    observed = Observed(
        service=make_service(selector={"app": "recommender"}),
        primary_ref=make_deployment("recsys", pod_labels={"app": "recsys-legacy"}),
    )
    problem = _only(validate(make_sd(REFERENCED_PRIMARY), observed))
    assert problem.reason == reasons.PRIMARY_DEPLOYMENT_UNUSABLE
    assert problem.message.startswith("spec.primary.deploymentRef: Service recommender's selector")
    assert "Deployment recsys" in problem.message


def test_builtin_router_cannot_take_over_a_multi_port_service():
    service = make_service(ports=[{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}])
    problem = _only(validate(make_sd(BUILTIN), Observed(service=service)))
    assert problem.reason == reasons.SERVICE_NOT_SWITCHABLE
    assert problem.message.startswith("spec.traffic.router: ")
    assert "has 2 ports" in problem.message


def test_istio_mirrors_a_multi_port_service():
    service = make_service(ports=[{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}])
    assert validate(make_sd(), Observed(service=service)) == []


@pytest.mark.parametrize("overrides", [{}, BUILTIN], ids=["istio", "builtin"])
def test_service_without_selector_is_not_switchable(overrides):
    problem = _only(validate(make_sd(overrides), Observed(service=make_service(selector=None))))
    assert problem.reason == reasons.SERVICE_NOT_SWITCHABLE
    assert problem.message.startswith("spec.service.name: Service recommender has no selector")


def test_every_problem_reason_is_a_spec_error():
    for reason in (
        reasons.INVALID_JSON_PATH,
        reasons.INVALID_INTERVAL,
        reasons.INVALID_SPEC,
        reasons.PRIMARY_DEPLOYMENT_NOT_FOUND,
        reasons.PRIMARY_DEPLOYMENT_UNUSABLE,
        reasons.SERVICE_NOT_FOUND,
        reasons.SERVICE_PORT_MISMATCH,
        reasons.SERVICE_NOT_SWITCHABLE,
        reasons.SERVICE_CLAIMED,
        reasons.CANDIDATE_WOULD_SERVE_USERS,
    ):
        assert reason in reasons.SPEC_ERRORS


def test_static_and_cluster_problems_come_together():
    sd = make_sd({"analysis": {"interval": "7m"}, **REFERENCED_PRIMARY})
    problems = validate(sd, Observed(service=make_service(), primary_ref=None))
    assert [p.reason for p in problems] == [reasons.INVALID_INTERVAL, reasons.PRIMARY_DEPLOYMENT_NOT_FOUND]


# -- rivals ----------------------------------------------------------------------------------------


def test_oldest_claim_wins():
    claims = [
        Claim(created="2025-01-03T00:00:00Z", name="newest"),
        Claim(created="2025-01-01T00:00:00Z", name="oldest"),
        Claim(created="2025-01-02T00:00:00Z", name="middle"),
    ]
    assert rivals("oldest", claims) == ()
    assert rivals("middle", claims) == ("oldest",)
    assert rivals("newest", claims) == ("oldest", "middle")


def test_claims_created_together_are_ordered_by_name():
    claims = [Claim(created="2025-01-01T00:00:00Z", name="b"), Claim(created="2025-01-01T00:00:00Z", name="a")]
    assert rivals("a", claims) == ()
    assert rivals("b", claims) == ("a",)


def test_a_lone_claim_has_no_rivals():
    assert rivals("recommender", [Claim(created="2025-01-01T00:00:00Z", name="recommender")]) == ()
    assert rivals("recommender", []) == ()


def test_without_its_own_claim_every_claim_is_a_rival():
    claims = [Claim(created="2025-01-02T00:00:00Z", name="y"), Claim(created="2025-01-01T00:00:00Z", name="x")]
    assert rivals("late", claims) == ("x", "y")


# -- record retention ---------------------------------------------------------------------------------


def test_retention_smaller_than_two_files_names_the_field_and_the_fix():
    sink = {"rotateBytes": 64 << 20, "retention": {"maxBytes": 100 << 20}}
    problem = _only(validate(make_sd({"recording": {"sink": sink}}), Observed()))
    assert problem.reason == reasons.INVALID_SPEC
    assert problem.message.startswith("spec.recording.sink.retention.maxBytes: 104857600 is less than twice")
    assert "raise maxBytes to at least 134217728" in problem.message


def test_retention_shorter_than_the_business_cycle_names_the_field_and_the_fix():
    sink = {"retention": {"maxAge": "24h"}}
    problem = _only(validate(make_sd({"recording": {"sink": sink}}), Observed()))
    assert problem.message.startswith("spec.recording.sink.retention.maxAge: 24h is shorter than")
    assert "set maxAge to at least 168h" in problem.message
