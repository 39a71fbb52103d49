"""Any object the CRD schema admits reaches a phase (issue 11, item 7 / item 1).

Specs are generated from the generated CRD's own openAPI schema (random but schema-valid values:
hostile strings, extreme numbers, every optional field on or off, every oneOf branch) and run
through what a reconcile runs: resource.parse -> validation.validate -> builders.desired_state.
Each either builds children or yields problems that each carry a reason and a message (the
operator's InvalidSpec and friends); nothing raises anything else.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadow_operator.api.crd import crd_manifest
from shadow_operator.contract.resource import SpecInvalid, parse
from shadow_operator.controller.builders import desired_state
from shadow_operator.controller.observed import Observed
from shadow_operator.controller.validation import validate

from .factories import make_deployment, make_service

SCHEMA = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible, never flaky
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "$", "$..", "$[", "a" * 300, "\x00", "../../etc/passwd", "${HOME}", "'; DROP", "\u202e"]),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    if "enum" in node:
        return st.sampled_from(node["enum"])
    min_size, max_size = node.get("minLength", 0), node.get("maxLength")
    if "pattern" in node:
        strategy = st.from_regex(re.compile(node["pattern"]), fullmatch=True)
        if node["pattern"] == "^/":
            strategy = st.just("/").map(lambda prefix: prefix) | st.text(max_size=20).map(lambda s: "/" + s)
    else:
        strategy = HOSTILE_TEXT
    return strategy.filter(lambda s: len(s) >= min_size and (max_size is None or len(s) <= max_size))


def _number(node: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    low, high = node.get("minimum"), node.get("maximum")
    if integer:
        low = None if low is None else int(low) + (1 if node.get("exclusiveMinimum") else 0)
        high = None if high is None else int(high) - (1 if node.get("exclusiveMaximum") else 0)
        extremes = [v for v in (low, high, 0, 1, -1, 2**31, 2**63 - 1) if v is not None and _within(v, low, high)]
        return st.one_of(st.sampled_from(extremes) if extremes else st.nothing(), st.integers(low, high))
    extremes = [v for v in (low, high, 0.0, 1e-300, 1e308, -1e308) if v is not None and _within(v, low, high)]
    floats = st.floats(
        low,
        high,
        allow_nan=False,
        allow_infinity=False,
        exclude_min=bool(node.get("exclusiveMinimum")),
        exclude_max=bool(node.get("exclusiveMaximum")),
    )
    extremes = [v for v in extremes if not (node.get("exclusiveMinimum") and v == low)]
    extremes = [v for v in extremes if not (node.get("exclusiveMaximum") and v == high)]
    return st.one_of(st.sampled_from(extremes) if extremes else st.nothing(), floats)


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    if node.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(-(2**63), 2**63 - 1), HOSTILE_TEXT)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return st.dictionaries(st.text(max_size=8), ANY_JSON, max_size=3)
    kind = node.get("type", "object")
    if kind == "string":
        return _string(node)
    if kind == "boolean":
        return st.sampled_from(node["enum"]) if "enum" in node else st.booleans()
    if kind in ("integer", "number"):
        return _number(node, kind == "integer")
    if kind == "array":
        return st.lists(from_schema(node.get("items", {})), max_size=3)
    if "properties" not in node:
        values = node.get("additionalProperties") or {"type": "string"}
        return st.dictionaries(HOSTILE_TEXT, from_schema(values), max_size=3)
    return _object(node)


@st.composite
def _object(draw, node: dict[str, Any]) -> dict[str, Any]:
    properties, required = node["properties"], set(node.get("required") or [])
    exclusive: set[str] = set()
    if "oneOf" in node:  # exactly one of the branches' fields
        branches = [branch["required"][0] for branch in node["oneOf"]]
        chosen = draw(st.sampled_from(branches))
        required.add(chosen)
        exclusive = set(branches) - {chosen}
    out = {}
    for name, child in properties.items():
        if name in exclusive or (name not in required and not draw(st.booleans())):
            continue
        out[name] = draw(from_schema(child))
    return out


OBSERVED = st.sampled_from(
    [
        Observed(),
        Observed(service=make_service()),
        Observed(service=make_service(adoptable=False)),
        Observed(service=make_service(selector={}), primary_ref=make_deployment()),
        Observed(service=make_service(adoptable=False), primary_ref=make_deployment()),
        Observed(service=make_service(owner_uids=["uid-1"])),
    ]
)


def _reaches_a_phase(spec: dict[str, Any], observed: Observed) -> None:
    body = {"metadata": {"name": "recommender", "namespace": "default", "uid": "uid-1", "generation": 1}, "spec": spec}
    try:
        sd = parse(body)
    except SpecInvalid as invalid:
        assert invalid.problems and all(problem.startswith("spec") for problem in invalid.problems)
        return
    problems = validate(sd, observed)
    if problems:
        assert all(problem.reason and problem.message for problem in problems)
        return
    children = desired_state(sd, observed, "shadow-operator:test").children
    assert children and all(child["kind"] and child["metadata"]["name"] for child in children)


@PROPERTY
@given(spec=from_schema(SCHEMA), observed=OBSERVED)
def test_every_spec_the_schema_admits_reaches_a_phase(spec, observed):
    _reaches_a_phase(spec, observed)


@PROPERTY
@given(pod_template=ANY_JSON, sink_volume=ANY_JSON, observed=OBSERVED)
def test_wrong_types_anywhere_in_the_open_fields_are_refused_cleanly(pod_template, sink_volume, observed):
    """What the schema would refuse (an older API server, a hand-made body) still never crashes the operator."""
    spec = {
        "service": {"name": "recommender", "port": 80},
        "primary": {"image": "p:1", "podTemplate": pod_template},
        "candidate": {"image": "c:1", "podTemplate": {"spec": pod_template}},
        "recording": {"sink": {"volume": sink_volume}},
    }
    _reaches_a_phase(spec, observed)
