"""The ClusterRole grants every call the code can make, found by reading kube/client.py and controller/reconcile.py."""

from __future__ import annotations

import ast
import inspect
from functools import cache

import pytest

from shadow_operator.controller import reconcile, service_switch
from shadow_operator.controller.builders import all_child_keys, desired_state
from shadow_operator.controller.observed import Observed
from shadow_operator.job import cli as analysis_cli
from shadow_operator.kube import client as kube
from shadow_operator.kube.cache import CACHED
from shadow_operator.kube.client import RESOURCES
from shadow_operator.kube.permissions import ANALYZER_PERMISSIONS, OPERATOR_ROLE, OPT_IN_PERMISSIONS, PERMISSIONS
from shadow_operator.kube.rbac import (
    CLUSTER_SCOPED,
    analyzer_rules,
    cluster_role,
    namespaced_permissions,
    namespaced_role,
)

from .factories import make_sd

VERBS = {"GET": "get", "PATCH": "patch", "DELETE": "delete", "POST": "create"}
# Server-side apply (a PATCH) of an object that does not exist yet is checked as `create`.
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
CHILD_KINDS = frozenset(kind for kind, _ in all_child_keys(make_sd()))
GENERIC = "<any child kind>"
WATCHED = "<every cached kind>"  # kube/cache.py lists and watches each


def _kube_class() -> ast.ClassDef:
    tree = ast.parse(inspect.getsource(kube))
    (found,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Kube"]
    return found


def _is_self_call(node: ast.AST, owner: str | None, method: str | None = None) -> bool:
    """`self._request(...)` (owner None) or `self.kube.get(...)` (owner "kube")."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    target = node.func.value
    if owner is None:
        on_self = isinstance(target, ast.Name) and target.id == "self"
    else:
        on_self = (
            isinstance(target, ast.Attribute)
            and target.attr == owner
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        )
    return on_self and (method is None or node.func.attr == method)


def _target(path: ast.expr) -> tuple[str, str | None] | None:
    """What a request path names: (kind, subresource), (GENERIC, None), or None for a discovery path."""
    if isinstance(path, ast.JoinedStr):
        return None
    if isinstance(path, ast.Call) and isinstance(path.func, ast.Attribute) and path.func.attr == "all_namespaces_path":
        return WATCHED, None  # list_all: the watch cache's listing of every cached kind
    assert isinstance(path, ast.Call) and isinstance(path.func, ast.Attribute) and path.func.attr == "path", (
        f"unrecognised request path: {ast.unparse(path)}"
    )
    resource = path.func.value
    subresource = None
    if len(path.args) >= 3:
        assert isinstance(path.args[2], ast.Constant), ast.unparse(path)
        subresource = path.args[2].value
    if isinstance(resource, ast.Subscript) and isinstance(resource.slice, ast.Constant):
        return resource.slice.value, subresource  # RESOURCES["Event"]
    return GENERIC, subresource  # self._resource(kind) or a local `resource`


@cache
def kube_requests() -> dict[str, list[tuple[str, str, str | None]]]:
    """Kube method -> [(verb, kind or GENERIC, subresource)] for every `self._request` it makes."""
    requests: dict[str, list[tuple[str, str, str | None]]] = {}
    for function in _kube_class().body:
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if not _is_self_call(node, None, "_request"):
                continue
            method = node.args[0]
            assert isinstance(method, ast.Constant), f"{function.name}: HTTP method must be a literal"
            target = _target(node.args[1] if len(node.args) > 1 else node.keywords[0].value)
            if target is None:
                assert function.name == "_served_version", f"{function.name} requests a non-resource path"
                continue
            verbs = [VERBS[method.value]] if target[0] != WATCHED else ["list"]
            content_type = next((k.value for k in node.keywords if k.arg == "content_type"), None)
            if isinstance(content_type, ast.Constant) and content_type.value == APPLY_CONTENT_TYPE:
                verbs.append("create")
            requests.setdefault(function.name, []).extend((verb, *target) for verb in verbs)
    return requests


@cache
def reconcile_calls() -> dict[str, set[str]]:
    """Kube method -> kinds controller/reconcile.py (and controller/service_switch.py) call it with (GENERIC when from a child)."""
    calls: dict[str, set[str]] = {}
    nodes = [
        *ast.walk(ast.parse(inspect.getsource(reconcile))),
        *ast.walk(ast.parse(inspect.getsource(service_switch))),
    ]
    for node in nodes:
        if _is_self_call(node, "kube") or _is_kube_call(node):
            first = node.args[0] if node.args else None
            kind = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else GENERIC
            calls.setdefault(node.func.attr, set()).add(kind)
    return calls


def _is_kube_call(node: ast.AST) -> bool:
    """`kube.json_patch(...)`: a module function handed the client (controller/service_switch.py)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "kube"
    )


@cache
def required_grants() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every request the operator can make."""
    needed = set()
    used = reconcile_calls()
    for method, requests in kube_requests().items():
        for verb, kind, subresource in requests:
            if kind == WATCHED:
                kinds = {cached.kind for cached in CACHED}
            elif kind == GENERIC:
                kinds = set()
                for called in used.get(method, set()):
                    kinds |= CHILD_KINDS if called == GENERIC else {called}
            else:
                kinds = {kind}
            for each in kinds:
                resource = RESOURCES[each]
                plural = resource.plural + (f"/{subresource}" if subresource else "")
                needed.add((resource.group, plural, verb))
    return needed


def granted() -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in cluster_role()["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# -- what the reading found --------------------------------------------------------------------------


def test_kube_uses_exactly_the_known_http_methods():
    verbs = {verb for requests in kube_requests().values() for verb, _, _ in requests}
    assert verbs == {"get", "list", "patch", "create", "delete"}


def test_reading_finds_every_public_kube_call():
    requests = kube_requests()
    assert {verb for verb, _, _ in requests["get"]} == {"get"}
    assert {verb for verb, _, _ in requests["apply"]} == {"patch", "create"}
    assert {verb for verb, _, _ in requests["json_patch"]} == {"patch"}
    assert {verb for verb, _, _ in requests["delete"]} == {"delete"}
    assert requests["patch_status"] == [("patch", "ShadowDeployment", "status")]
    assert requests["post_event"] == [("create", "Event", None)]


def test_reading_finds_how_reconcile_uses_the_client():
    calls = reconcile_calls()
    assert {"ShadowDeployment", "Service", "Deployment", GENERIC} <= calls["get"]
    assert calls["apply"] == {GENERIC}
    # RoleBinding: a binding whose (immutable) roleRef changed is deleted and created again.
    assert calls["delete"] == {GENERIC, "RoleBinding"}
    assert "Service" in calls["json_patch"]


def test_every_child_kind_is_a_known_resource():
    assert set(RESOURCES) >= CHILD_KINDS
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "CronJob",
        "VirtualService",
        "DestinationRule",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
    } == CHILD_KINDS


# -- the grants -------------------------------------------------------------------------------------------


# Granted per Secret by its owner, never by the operator's role (kube.OPT_IN_PERMISSIONS).
OPT_IN = {(p.group, r, v) for p in OPT_IN_PERMISSIONS for r in p.resources for v in p.verbs}


def test_cluster_role_grants_every_request_the_code_can_make():
    missing = sorted(required_grants() - granted() - OPT_IN)
    assert missing == [], f"the ClusterRole lacks {missing}: add them to kube.PERMISSIONS and run `make manifests`"


@pytest.mark.parametrize("kind", sorted(CHILD_KINDS))
def test_children_can_be_read_applied_created_and_deleted(kind):
    resource = RESOURCES[kind]
    for verb in ("get", "patch", "create", "delete"):
        assert (resource.group, resource.plural, verb) in required_grants()
        assert (resource.group, resource.plural, verb) in granted(), f"{verb} {resource.plural}"


def test_shadow_deployments_can_be_read_and_their_status_patched():
    assert ("shadow.mlops.dev", "shadowdeployments", "get") in granted()
    assert ("shadow.mlops.dev", "shadowdeployments/status", "patch") in granted()
    assert ("shadow.mlops.dev", "shadowdeployments/status", "patch") in required_grants()


def test_events_can_be_created():
    assert ("", "events", "create") in required_grants()
    assert ("", "events", "create") in granted()


def test_kopf_can_watch_and_finalize():
    for grant in (
        ("shadow.mlops.dev", "shadowdeployments", "list"),
        ("shadow.mlops.dev", "shadowdeployments", "watch"),
        ("shadow.mlops.dev", "shadowdeployments", "patch"),
        ("shadow.mlops.dev", "shadowdeployments/finalizers", "update"),
    ):
        assert grant in granted()


def test_cluster_role_is_exactly_the_permissions():
    role = cluster_role()
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert role["kind"] == "ClusterRole"
    assert role["metadata"]["name"] == OPERATOR_ROLE
    assert role["rules"] == [
        {"apiGroups": [p.group], "resources": list(p.resources), "verbs": list(p.verbs)}
        | ({"resourceNames": list(p.resource_names)} if p.resource_names else {})
        for p in PERMISSIONS
    ]
    assert granted() == {(p.group, r, v) for p in PERMISSIONS for r in p.resources for v in p.verbs}


def test_no_wildcards():
    for rule in cluster_role()["rules"]:
        assert "*" not in rule["apiGroups"], rule
        assert "*" not in rule["resources"], rule
        assert "*" not in rule["verbs"], rule
        assert not any(r.endswith("/*") for r in rule["resources"]), rule
        assert "nonResourceURLs" not in rule


def test_no_secrets_and_no_escalation():
    resources = {resource for _, resource, _ in granted()}
    assert not resources & {"secrets", "pods/exec", "clusterroles", "clusterrolebindings"}, (
        "the operator must not touch Secrets, exec into Pods or hold cluster-wide RBAC objects"
    )
    verbs = {verb for _, _, verb in granted()}
    assert not verbs & {"escalate", "bind", "impersonate", "deletecollection"}, (
        "the operator creates the job's Role by holding its permissions itself, never by escalate or bind"
    )


# -- the comparison job's per-object Role -----------------------------------------------------------


def _grants(rules) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_the_analyzer_role_names_only_its_own_object_and_report():
    rules = analyzer_rules("recommender")
    assert rules == [
        {
            "apiGroups": ["shadow.mlops.dev"],
            "resources": ["shadowdeployments"],
            "verbs": ["get"],
            "resourceNames": ["recommender"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": ["get", "update", "patch"],
            "resourceNames": ["recommender-report", "recommender-analysis-state"],
        },
    ]
    for rule in rules:
        assert rule.get("resourceNames"), f"analyzer rule {rule} lacks resourceNames: it would reach every object"
        assert "create" not in rule["verbs"] and "list" not in rule["verbs"], (
            f"{rule}: create and list cannot be narrowed by resourceNames; the operator pre-creates the report"
        )


def test_the_operator_holds_every_permission_the_analyzer_role_grants():
    # RBAC's escalation check: creating a Role (or binding it) needs every permission in it.
    missing = sorted(_grants(analyzer_rules("recommender")) - granted())
    assert missing == [], f"the operator cannot create the job's Role without {missing}: add them to kube.PERMISSIONS"


def test_every_object_gets_its_own_role_and_binding():
    children = {(c["kind"], c["metadata"]["name"]): c for c in desired_state(make_sd(), Observed(), "img").children}
    role = children[("Role", "recommender-analysis")]
    assert role["rules"] == analyzer_rules("recommender")
    binding = children[("RoleBinding", "recommender-analysis")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "recommender-analysis",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "recommender-analysis", "namespace": "default"}]
    assert not [c for c in children.values() if c.get("roleRef", {}).get("kind") == "ClusterRole"], (
        "no generated binding may reference a ClusterRole: it would grant the namespace's objects, not this one's"
    )


def _job_calls() -> set[tuple[str, str]]:
    """(Kube method, kind) of every call the job (`shadowctl analyze --publish`) makes, read from job/cli.py."""
    tree = ast.parse(inspect.getsource(analysis_cli))
    job_functions = {"_analyze", "_publish", "_load_shadow"}
    calls = set()
    for function in tree.body:
        if not isinstance(function, ast.FunctionDef) or function.name not in job_functions:
            continue
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "kube"
            ):
                first = node.args[0]
                assert isinstance(first, ast.Constant), f"{function.name}: kube.{node.func.attr} kind must be literal"
                calls.add((node.func.attr, first.value))
    return calls


def test_the_analyzer_role_grants_every_call_the_job_makes():
    calls = _job_calls()
    assert calls == {("get", "ShadowDeployment"), ("get", "ConfigMap"), ("json_patch", "ConfigMap")}
    needed = {
        (RESOURCES[kind].group, RESOURCES[kind].plural, verb)
        for method, kind in calls
        for verb, _, _ in kube_requests()[method]
    }
    missing = sorted(needed - _grants(analyzer_rules("recommender")))
    assert missing == [], f"the job's Role lacks {missing}: add them to kube.ANALYZER_PERMISSIONS"
    assert {p.resources for p in ANALYZER_PERMISSIONS} == {("shadowdeployments",), ("configmaps",)}


# -- the namespaced install ----------------------------------------------------------------------------


def test_the_namespaced_role_is_the_cluster_role_without_cluster_scoped_resources():
    role = namespaced_role("ml")
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "ml")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert not resources & {"namespaces", "customresourcedefinitions"}, "a Role cannot grant cluster-scoped resources"
    assert _grants(role["rules"]) == granted() - {
        (p.group, r, v) for p in PERMISSIONS if p not in namespaced_permissions() for r in p.resources for v in p.verbs
    }
    # Everything the reconcile does stays possible in the watched namespace; the admission webhook's
    # calls (cluster-scoped) are not made there: that install runs no webhook.
    webhook_only = {(p.group, r, v) for p in PERMISSIONS for r in p.resources for v in p.verbs if r in CLUSTER_SCOPED}
    missing = sorted(required_grants() - _grants(role["rules"]) - webhook_only - OPT_IN)
    assert missing == [], f"the namespaced Role lacks {missing}"


def test_every_permission_says_why():
    for permission in PERMISSIONS:
        assert permission.why.strip(), permission


def test_every_cached_kind_may_be_listed_and_watched_cluster_wide():
    """The watch cache (kube/cache.py) lists then watches each kind in every namespace: a missing
    grant would leave that kind's reads to GETs forever (its listing keeps failing)."""
    rules = granted()
    for cached in CACHED:
        resource = RESOURCES[cached.kind]
        for verb in ("list", "watch"):
            assert (resource.group, resource.plural, verb) in rules, (cached.kind, verb)
