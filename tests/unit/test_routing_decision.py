"""Builtin mode: the client Service moves to the router only once a router Pod serves, and back
to the primary once none has for traffic.routerGracePeriod."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from shadow_operator.contract import reasons
from shadow_operator.controller.builders import desired_state
from shadow_operator.controller.conditions import find_condition
from shadow_operator.controller.observed import Observed
from shadow_operator.controller.progress import Outcome, compute_status
from shadow_operator.controller.routing import decide_routing

from .factories import NOW, make_deployment, make_sd, make_service

GRACE = timedelta(seconds=30)
BUILTIN = {"traffic": {"router": "builtin"}}


def _decide(available: int | None, routed: bool, previous=None, now=NOW):
    router = None if available is None else make_deployment("recommender-router", replicas=2, available=available)
    return decide_routing("recommender", "recommender-router", router, routed, previous, GRACE, now)


@pytest.mark.parametrize("routed", [False, True])
def test_a_serving_router_takes_the_traffic(routed):
    decision = _decide(available=1, routed=routed)
    assert (decision.through_router, decision.available, decision.reason) == (True, True, "RoutedThroughRouter")
    assert decision.recheck_after is None
    assert "1 router Pod(s) available" in decision.message


@pytest.mark.parametrize("available", [None, 0])
def test_the_service_waits_for_the_first_router_pod(available):
    decision = _decide(available=available, routed=False)
    assert (decision.through_router, decision.available, decision.reason) == (False, False, "RouterStarting")
    assert decision.recheck_after is None  # the router Deployment's own change triggers the next look


def test_a_router_losing_its_pods_keeps_the_service_for_the_grace_period():
    first = _decide(available=0, routed=True)
    assert (first.through_router, first.reason, first.recheck_after) == (True, "RouterUnavailable", 30.0)
    later = _decide(available=0, routed=True, previous=("RouterUnavailable", NOW - timedelta(seconds=20)))
    assert later.through_router and later.recheck_after == pytest.approx(10.0)
    assert "traffic.routerGracePeriod" in later.message


def test_past_the_grace_period_the_service_goes_back_to_the_primary():
    expired = _decide(available=0, routed=True, previous=("RouterUnavailable", NOW - timedelta(seconds=30)))
    assert (expired.through_router, expired.reason, expired.recheck_after) == (False, "RoutedToPrimary", None)
    assert "30s" in expired.message and "primary" in expired.message
    # Once back on the primary it stays there, saying why, until a router Pod is available again.
    after = _decide(available=0, routed=False, previous=("RoutedToPrimary", NOW - timedelta(seconds=40)))
    assert (after.through_router, after.reason) == (False, "RoutedToPrimary")
    assert _decide(available=2, routed=False, previous=("RoutedToPrimary", NOW)).through_router


def test_a_user_service_is_switched_only_when_told():
    observed = Observed(service=make_service())
    assert desired_state(make_sd(BUILTIN), observed, "img", through_router=False).switch is None
    assert desired_state(make_sd(BUILTIN), observed, "img", through_router=True).switch is not None


def test_an_owned_entry_service_selects_the_primary_until_the_router_serves():
    def entry(through_router: bool):
        children = desired_state(make_sd(BUILTIN), Observed(), "img", through_router=through_router).children
        return next(c for c in children if c["kind"] == "Service" and c["metadata"]["name"] == "recommender")

    waiting, routed = entry(False), entry(True)
    assert waiting["spec"]["selector"]["shadow.mlops.dev/role"] == "primary"
    assert waiting["spec"]["ports"][0]["targetPort"] == 8080
    assert routed["spec"]["selector"]["shadow.mlops.dev/role"] == "router"


def test_grace_period_edits_do_not_roll_the_router():
    def config(grace: str) -> str:
        state = desired_state(make_sd({"traffic": {"router": "builtin", "routerGracePeriod": grace}}), Observed(), "i")
        return next(c for c in state.children if c["kind"] == "ConfigMap" and c["metadata"]["name"].endswith("-router"))

    assert config("30s") == config("5m")


def test_status_carries_the_routing_condition_and_drops_it_outside_builtin_mode():
    sd = make_sd(BUILTIN)
    decision = _decide(available=0, routed=True)
    status = compute_status(sd, Outcome(routing=decision), NOW)
    condition = find_condition(status.conditions, reasons.ROUTER_AVAILABLE)
    assert (condition.status, condition.reason) == ("False", "RouterUnavailable")
    istio = dataclasses.replace(make_sd(), status=status)
    assert find_condition(compute_status(istio, Outcome(), NOW).conditions, reasons.ROUTER_AVAILABLE) is None


def test_a_new_candidate_never_rolls_the_router_pods():
    """The router carries the primary's live traffic: a candidate change leaves its Pods alone.

    Its config once named the candidate's image, so every new candidate rolled the router twice
    (on the change, and again once the candidate had rolled out).
    """
    sd = make_sd(BUILTIN)
    changed = make_sd({**BUILTIN, "candidate": {"image": "registry.example/recsys:9.9.9"}})

    def router_children(shadow) -> list[dict]:
        state = desired_state(shadow, Observed(), "img")
        return [c for c in state.children if c["metadata"]["name"] == "recommender-router"]

    assert len(router_children(sd)) == 3  # ConfigMap, Deployment, Service
    assert router_children(sd) == router_children(changed)
