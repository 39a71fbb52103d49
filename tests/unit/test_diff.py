"""diff.contains: does the live object already hold every field the operator wants?"""

from __future__ import annotations

import pytest

from shadow_operator.controller.builders import desired_state
from shadow_operator.controller.diff import contains
from shadow_operator.controller.observed import Observed

from .factories import make_sd

DESIRED_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "recommender-candidate", "namespace": "default", "labels": {"a": "b"}},
    "spec": {"selector": {"role": "candidate"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
}

LIVE_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "recommender-candidate",
        "namespace": "default",
        "labels": {"a": "b"},
        "uid": "0b7a",
        "resourceVersion": "123",
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "managedFields": [{"manager": "shadow-operator", "operation": "Apply"}],
    },
    "spec": {
        "selector": {"role": "candidate"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        "clusterIP": "10.96.0.10",
        "type": "ClusterIP",
        "sessionAffinity": "None",
    },
    "status": {"loadBalancer": {}},
}


def test_server_added_fields_are_ignored():
    assert contains(LIVE_SERVICE, DESIRED_SERVICE)


def test_changed_value_is_detected():
    live = {**LIVE_SERVICE, "spec": {**LIVE_SERVICE["spec"], "selector": {"role": "primary"}}}
    assert not contains(live, DESIRED_SERVICE)


def test_missing_field_is_detected():
    assert not contains({"metadata": {}}, {"metadata": {"labels": {"a": "b"}}})
    assert not contains({"spec": {}}, {"spec": {"replicas": 1}})


def test_extra_label_on_the_live_object_is_not_a_difference():
    assert contains({"labels": {"a": "b", "added-by-someone": "x"}}, {"labels": {"a": "b"}})


def test_a_label_the_operator_wants_but_the_live_object_lacks_is_a_difference():
    assert not contains({"labels": {"a": "b"}}, {"labels": {"a": "b", "c": "d"}})


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        ("1000m", "1"),
        ("0.5", "500m"),
        ("1Gi", "1024Mi"),
        ("1", 1),
        (2, "2"),
        (0.5, "500m"),
        ("100", 100.0),
    ],
)
def test_quantities_compare_by_meaning(desired, live):
    assert contains({"cpu": live}, {"cpu": desired})


@pytest.mark.parametrize(
    ("desired", "live"),
    [("512Mi", "1Gi"), ("1", "2"), ("500m", "0.6"), ("registry/a:1", "registry/a:2"), ("abc", "abd")],
)
def test_different_quantities_and_strings_differ(desired, live):
    assert not contains({"v": live}, {"v": desired})


@pytest.mark.parametrize("empty", [[], {}, "", None])
def test_empty_desired_value_matches_an_absent_key(empty):
    assert contains({"spec": {"replicas": 1}}, {"spec": {"replicas": 1, "volumes": empty}})


def test_empty_desired_map_matches_a_null_live_value():
    assert contains({"annotations": None}, {"annotations": {}})
    assert contains({"volumes": None}, {"volumes": []})


def test_non_empty_desired_value_does_not_match_an_absent_key():
    assert not contains({"spec": {}}, {"spec": {"volumes": [{"name": "x"}]}})
    assert not contains({"spec": {}}, {"spec": {"nodeSelector": {"pool": "gpu"}}})


def test_list_length_change_is_detected():
    desired = {"containers": [{"name": "model"}, {"name": "sidecar"}]}
    assert not contains({"containers": [{"name": "model"}]}, desired)
    assert not contains({"containers": [{"name": "model"}, {"name": "sidecar"}, {"name": "x"}]}, desired)
    assert contains({"containers": [{"name": "model", "imagePullPolicy": "Always"}, {"name": "sidecar"}]}, desired)


def test_list_order_matters():
    assert not contains({"args": ["--b", "--a"]}, {"args": ["--a", "--b"]})


def test_list_against_a_map_differs():
    assert not contains({"ports": {"name": "http"}}, {"ports": [{"name": "http"}]})
    assert not contains({"ports": [{"name": "http"}]}, {"ports": {"name": "http"}})


def test_map_against_a_scalar_differs():
    assert not contains({"x": "text"}, {"x": {"a": 1}})


@pytest.mark.parametrize(("live", "desired"), [(True, False), (False, True), ("true", True), (True, "true")])
def test_booleans_compare_exactly(live, desired):
    assert not contains({"readOnly": live}, {"readOnly": desired})


@pytest.mark.parametrize(("live", "desired"), [(1, True), (True, 1), (0, False), (False, 0)])
def test_bool_and_int_are_not_equal(live, desired):
    assert not contains({"v": live}, {"v": desired})


def test_bool_against_a_quantity_string_differs():
    assert not contains({"v": True}, {"v": "1"})
    assert not contains({"v": "1"}, {"v": True})


def test_desired_null_matches_only_an_absent_or_null_value():
    assert not contains({"v": "x"}, {"v": None})
    assert contains({"v": None}, {"v": None})
    assert contains({}, {"v": None})


def test_every_child_contains_itself():
    """A child applied as built must count as converged on the next pass."""
    for overrides in ({}, {"traffic": {"router": "builtin"}}):
        for child in desired_state(make_sd(overrides), Observed(), "op:1").children:
            assert contains(child, child), child["kind"]
