"""What to mirror (traffic.match, traffic.mirrorMethods): the builtin router's policy, the Istio
route built from the same rules, and the rules refused with the field and the fix.

The two modes must mirror the same requests: `_istio_mirrors` reads the VirtualService the
operator builds as Istio would (first route whose match blocks match; a block's conditions ANDed,
a route's blocks ORed) and is compared with the router's policy over the same requests.
"""

from __future__ import annotations

from typing import Any

import pytest

from shadow_operator.contract.resource import SpecInvalid
from shadow_operator.controller.builders.istio import virtual_service
from shadow_operator.controller.builders.router import router_config
from shadow_operator.router.config import build_config
from shadow_operator.router.mirror_policy import compile_mirror_policy, request_path

from .factories import make_sd

PREDICT_ONLY = {"match": [{"uri": {"prefix": "/predict"}}]}
RULES = {
    "mirrorMethods": ["POST", "GET", "PUT"],
    "match": [
        {"uri": {"prefix": "/predict"}, "methods": ["POST"]},
        {"uri": {"exact": "/v2/models/m/infer"}},
        {"headers": [{"name": "X-Tenant", "exact": "acme"}, {"name": "x-debug"}], "methods": ["PUT", "GET"]},
    ],
}


def _policy(traffic: dict[str, Any]):
    """As the router gets it: router.json written by the operator's builder, read by build_config."""
    sd = make_sd({"traffic": {"router": "builtin", **traffic}})
    return compile_mirror_policy(build_config(router_config(sd)))


def _h(**headers: str) -> list[tuple[bytes, bytes]]:
    return [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]


# -- the builtin router ------------------------------------------------------------------------------------


def test_without_rules_post_and_get_are_mirrored_and_side_effecting_methods_are_not():
    policy = _policy({})
    assert policy(b"POST", b"/feedback", [])
    assert policy(b"GET", b"/anything?x=1", [])
    for method in (b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS", b"PROPFIND", b"post"):
        assert not policy(method, b"/predict", []), method


def test_listed_methods_are_mirrored():
    policy = _policy({"mirrorMethods": ["DELETE"]})
    assert policy(b"DELETE", b"/x", [])
    assert not policy(b"POST", b"/x", [])


@pytest.mark.parametrize(
    ("method", "target", "mirrored"),
    [
        (b"POST", b"/predict", True),
        (b"POST", b"/predict?user=1&debug", True),
        (b"GET", b"/predict/batch", True),
        (b"POST", b"/predictions", True),  # a prefix is a prefix, as in a VirtualService
        (b"POST", b"/feedback", False),
        (b"POST", b"/Predict", False),  # case-sensitive
        (b"POST", b"/?/predict", False),  # the query string is not the path
        (b"POST", b"/feedback?next=/predict", False),
        (b"DELETE", b"/predict", False),  # not a mirrored method
        (b"PUT", b"/predict", False),
        (b"POST", b"/predict/../feedback", False),  # dot segments resolved before matching
        (b"POST", b"/x/../predict", True),
        (b"POST", b"/%70redict", True),  # %70 is `p`, unreserved: decoded
        (b"POST", b"/predict%2F..%2Ffeedback", True),  # %2F is reserved: stays encoded, one segment
        (b"POST", b"http://recommender/predict?x=1", True),  # absolute-form
        (b"POST", b"http://recommender/feedback", False),
    ],
)
def test_a_prefix_rule(method, target, mirrored):
    assert _policy(PREDICT_ONLY)(method, target, []) is mirrored


@pytest.mark.parametrize(
    ("method", "target", "headers", "mirrored"),
    [
        (b"POST", b"/predict", [], True),
        (b"GET", b"/predict", [], False),  # rule 0 narrows to POST, and no other rule matches
        (b"POST", b"/v2/models/m/infer", [], True),
        (b"PUT", b"/v2/models/m/infer?x", [], True),  # rule 1 takes every mirrored method
        (b"POST", b"/v2/models/m/infer/", [], False),  # exact
        (b"PUT", b"/other", _h(x_tenant="acme", x_debug=""), True),  # present, even empty
        (b"PUT", b"/other", [(b"X-TENANT", b"acme"), (b"X-Debug", b"1")], True),  # names case-insensitive
        (b"PUT", b"/other", _h(x_tenant="Acme", x_debug="1"), False),  # values case-sensitive
        (b"PUT", b"/other", _h(x_tenant="acme"), False),  # every header of the rule
        (b"PUT", b"/other", [(b"x-tenant", b"acme"), (b"x-tenant", b"b"), (b"x-debug", b"1")], False),
        (b"PUT", b"/other", [(b"x-tenant", b"ac"), (b"x-tenant", b"me"), (b"x-debug", b"1")], False),
        (b"POST", b"/other", _h(x_tenant="acme", x_debug="1"), False),  # rule 2 narrows to PUT and GET
        (b"DELETE", b"/predict", [], False),
    ],
)
def test_rules_are_any_of_and_each_rule_is_all_of(method, target, headers, mirrored):
    assert _policy(RULES)(method, target, headers) is mirrored


def test_a_header_sent_twice_is_matched_on_its_values_joined_with_commas():
    policy = _policy({"match": [{"headers": [{"name": "x-tenant", "exact": "a,b"}]}]})
    assert policy(b"POST", b"/", [(b"x-tenant", b"a"), (b"x-tenant", b"b")])
    assert not policy(b"POST", b"/", [(b"x-tenant", b"a")])


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/a/b?c", b"/a/b"),
        (b"/a/./b/../c", b"/a/c"),
        (b"/../../a", b"/a"),
        (b"/a/..", b"/"),
        (b"/a/.", b"/a/"),
        (b"/%2e%2E/x", b"/x"),
        (b"/%7euser%2fx", b"/~user%2Fx"),
        (b"*", b"*"),
        (b"http://h:80", b"/"),
        (b"/a#frag", b"/a"),
    ],
)
def test_request_path(target, path):
    assert request_path(target) == path


def test_router_config_leaves_out_the_defaults_and_carries_the_rules():
    """Routers configured before these fields keep their config-hash; the rules reach the router."""
    plain = router_config(make_sd({"traffic": {"router": "builtin"}}))["traffic"]
    assert "match" not in plain and "mirrorMethods" not in plain
    ruled = router_config(make_sd({"traffic": {"router": "builtin", **RULES}}))["traffic"]
    assert ruled["mirrorMethods"] == ["POST", "GET", "PUT"]
    assert ruled["match"][2] == {
        "headers": [{"name": "X-Tenant", "exact": "acme"}, {"name": "x-debug"}],
        "methods": ["PUT", "GET"],
    }


# -- Istio mode: the same rules as VirtualService routes ---------------------------------------------------


def _routes(traffic: dict[str, Any], **spec: Any) -> list[dict[str, Any]]:
    return virtual_service(make_sd({"traffic": traffic, **spec}), "primary.host")["spec"]["http"]


def test_rules_become_one_mirrored_route_each_and_a_last_route_without_mirror():
    routes = _routes(RULES)
    assert [r["name"] for r in routes] == ["mirror-0", "mirror-1", "mirror-2", "primary"]
    assert routes[0]["match"] == [{"uri": {"prefix": "/predict"}, "method": {"exact": "POST"}}]
    assert routes[1]["match"] == [
        {"uri": {"exact": "/v2/models/m/infer"}, "method": {"exact": method}} for method in ("POST", "GET", "PUT")
    ]
    # Istio wants header keys lower case; an empty match checks presence.
    headers = {"x-tenant": {"exact": "acme"}, "x-debug": {}}
    assert routes[2]["match"] == [{"headers": headers, "method": {"exact": m}} for m in ("PUT", "GET")]
    for route in routes[:3]:
        assert route["mirror"]["host"] == "recommender-candidate.default.svc.cluster.local"
        assert route["mirrorPercentage"] == {"value": 100.0}
    assert "match" not in routes[3] and "mirror" not in routes[3]
    # The primary gets 100% of every route: which route a request takes only decides the copy.
    for route in routes:
        assert route["route"] == [{"destination": {"host": "primary.host", "port": {"number": 80}}, "weight": 100}]


def test_mirror_percent_zero_is_one_route_without_match_or_mirror():
    assert _routes({**RULES, "mirrorPercent": 0}) == [
        {"name": "primary", "route": [{"destination": {"host": "primary.host", "port": {"number": 80}}, "weight": 100}]}
    ]


def test_the_baseline_rides_on_every_mirrored_route():
    routes = _routes(PREDICT_ONLY, analysis={"baseline": {}})
    assert "mirrors" in routes[0] and "mirror" not in routes[0]
    assert "mirrors" not in routes[-1]


def _istio_matches(block: dict[str, Any], method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    """One HTTPMatchRequest, read as Envoy applies it (exact path without the query, plain prefix)."""
    path = request_path(target)
    if "method" in block and method.decode() != block["method"]["exact"]:
        return False
    uri = block.get("uri", {})
    if "exact" in uri and path.decode() != uri["exact"]:
        return False
    if "prefix" in uri and not path.decode().startswith(uri["prefix"]):
        return False
    for name, match in block.get("headers", {}).items():
        values = [v.decode() for n, v in headers if n.decode().lower() == name]
        if not values or ("exact" in match and ",".join(values) != match["exact"]):
            return False
    return True


def _istio_mirrors(routes: list[dict[str, Any]], method: bytes, target: bytes, headers) -> bool:
    for route in routes:
        if "match" not in route or any(_istio_matches(b, method, target, headers) for b in route["match"]):
            return "mirror" in route
    raise AssertionError("no route took the request: the last route must match everything")


REQUESTS = [
    (method, target, headers)
    for method in (b"GET", b"POST", b"PUT", b"DELETE", b"PATCH")
    for target in (b"/predict", b"/predict?x", b"/predictions", b"/feedback", b"/v2/models/m/infer", b"/")
    for headers in ([], _h(x_tenant="acme"), _h(x_tenant="acme", x_debug="1"), _h(x_tenant="other", x_debug="1"))
]


@pytest.mark.parametrize("traffic", [{}, {"mirrorMethods": ["PUT"]}, PREDICT_ONLY, RULES], ids=str)
def test_both_modes_mirror_the_same_requests(traffic):
    policy, routes = _policy(traffic), _routes(traffic)
    differ = [r for r in REQUESTS if policy(*r) != _istio_mirrors(routes, *r)]
    assert not differ
    assert any(policy(*r) for r in REQUESTS) and not all(policy(*r) for r in REQUESTS)


# -- refused, naming the field and the fix -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("traffic", "field", "fix"),
    [
        ({"match": [{}]}, "spec.traffic.match[0]", "give uri, methods or headers, or remove traffic.match"),
        (
            {"match": [{"uri": {"exact": "/a", "prefix": "/a"}}]},
            "spec.traffic.match[0].uri",
            "set exactly one of uri.exact",
        ),
        ({"match": [{"uri": {}}]}, "spec.traffic.match[0].uri", "set exactly one of uri.exact"),
        (
            {"match": [{"uri": {"prefix": "/a"}}, {"methods": ["FETCH"]}]},
            "spec.traffic.match[1].methods[0]",
            "'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE' or 'OPTIONS'",
        ),
        ({"mirrorMethods": ["post"]}, "spec.traffic.mirrorMethods[0]", "'POST'"),
        ({"mirrorMethods": []}, "spec.traffic.mirrorMethods", "at least 1 item"),
        ({"match": [{"headers": [{"exact": "acme"}]}]}, "spec.traffic.match[0].headers[0].name", "Field required"),
        ({"match": [{"headers": [{"name": ""}]}]}, "spec.traffic.match[0].headers[0].name", "pattern"),
        ({"match": [{"headers": [{"name": "Host"}]}]}, "spec.traffic.match[0].headers[0]", "match on another header"),
        ({"match": [{"headers": [{"name": "x-shadow-request"}]}]}, "spec.traffic.match[0].headers[0]", "another"),
        (
            {"match": [{"headers": [{"name": "x-a"}, {"name": "X-A", "exact": "1"}]}]},
            "spec.traffic.match[0]",
            "each header once per rule",
        ),
        ({"match": [{"uri": {"prefix": "predict"}}]}, "spec.traffic.match[0].uri.prefix", "starting with /"),
        ({"match": [{"uri": {"exact": "/a?b=1"}}]}, "spec.traffic.match[0].uri.exact", "query string is never"),
        (
            {"match": [{"methods": ["DELETE"]}]},
            "spec.traffic",
            "match[0].methods: DELETE not in mirrorMethods ['POST', 'GET'], so this rule would never mirror it; "
            "add it to traffic.mirrorMethods",
        ),
    ],
)
def test_bad_rules_are_refused_naming_the_field_and_the_fix(traffic, field, fix):
    with pytest.raises(SpecInvalid) as caught:
        make_sd({"traffic": traffic})
    assert any(p.startswith(f"{field}: ") and fix in p for p in caught.value.problems), caught.value.problems
