"""What the watches have seen: reads of children and of the Services they shadow, without a GET.

kopf keeps one watch per cached kind (controller/handlers.py registers an index for each), and fills these
indexes before any handler runs, so a reconcile reads the same state a GET would, and an idle
operator makes no requests but its watches (issue 13: 9 GETs per object per resync before, ~900
reads/s at 1,000 objects and a 60 s resync). What a watch cannot have seen yet (a write of our own
a moment ago) is at worst read stale once: the apply that follows changes nothing on the server,
and the next event brings the cache up to date.

Bodies of the operator's own children are kept whole (they are compared field by field before an
apply). Services and Deployments of other owners (the Service a ShadowDeployment names, a
referenced primary) are kept compact: only what controller/observed.py reads, and annotation values cut, so
a cluster's many unrelated Deployments cost little memory.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from typing import Any

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# (kind, group, plural): the kinds a reconcile reads, each watched cluster-wide. Where Istio's CRDs
# are absent kopf starts no watch for them (and does not wait for one): their index stays empty,
# which reads as "absent", as a GET's 404 did.
CACHED: tuple[tuple[str, str, str], ...] = (
    ("ShadowDeployment", "shadow.mlops.dev", "shadowdeployments"),
    ("Deployment", "apps", "deployments"),
    ("Service", "", "services"),
    ("ConfigMap", "", "configmaps"),
    # batch/v1 from Kubernetes 1.21, v1beta1 before: both registered, kopf watches the one served
    # (a kind/group alone resolves to the group's preferred version, where 1.20 has no CronJob).
    ("CronJob", "batch/v1", "cronjobs"),
    ("CronJob", "batch/v1beta1", "cronjobs"),
    ("ServiceAccount", "", "serviceaccounts"),
    ("Role", "rbac.authorization.k8s.io", "roles"),
    ("RoleBinding", "rbac.authorization.k8s.io", "rolebindings"),
    ("NetworkPolicy", "networking.k8s.io", "networkpolicies"),
    ("VirtualService", "networking.istio.io", "virtualservices"),
    ("DestinationRule", "networking.istio.io", "destinationrules"),
)
# Kinds whose objects of other owners are read too (spec.service.name, spec.primary.deploymentRef).
FOREIGN_KINDS = frozenset({"Service", "Deployment"})
_ANNOTATION_VALUE_LIMIT = 256  # last-applied-configuration and the like: the key is what matters
OUR_ANNOTATIONS = "shadow.mlops.dev/"  # kept whole: the Service's original routing, the adoption opt-in


def index_id(kind: str, group: str = "") -> str:
    version = group.partition("/")[2]
    return f"cached-{kind.lower()}s" + (f"-{version}" if version else "")


def is_ours(body: Mapping[str, Any]) -> bool:
    return ((body.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == "shadow-operator"


def entry(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """What to keep of a watched object: ours whole, a foreign Service or Deployment compact, else its name and owners."""
    if kind == "ShadowDeployment" or is_ours(body):
        return copy.deepcopy(dict(body))
    if kind in FOREIGN_KINDS:
        return compact(body)
    # Someone else's object: only enough to see that a child's name is taken (ChildNameConflict).
    metadata = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            key: copy.deepcopy(metadata[key])
            for key in ("name", "namespace", "uid", "ownerReferences")
            if key in metadata
        },
    }


def compact(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields observed.ObservedService / ObservedDeployment read; annotation keys kept, long values cut."""
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    kept_metadata = {
        key: copy.deepcopy(metadata[key])
        for key in ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "ownerReferences")
        if key in metadata
    }
    annotations = metadata.get("annotations")
    if annotations:
        kept_metadata["annotations"] = {
            key: value if key.startswith(OUR_ANNOTATIONS) or len(str(value)) <= _ANNOTATION_VALUE_LIMIT else ""
            for key, value in annotations.items()
        }
    kept: dict[str, Any] = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": kept_metadata}
    if body.get("kind") == "Service":
        kept["spec"] = {key: copy.deepcopy(spec[key]) for key in ("selector", "ports", "type") if key in spec}
    else:
        template = spec.get("template") or {}
        containers = (template.get("spec") or {}).get("containers") or []
        kept["spec"] = {
            "replicas": spec.get("replicas"),
            "selector": copy.deepcopy(spec.get("selector")),
            "template": {
                "metadata": {"labels": copy.deepcopy((template.get("metadata") or {}).get("labels") or {})},
                "spec": {"containers": [{"name": c.get("name"), "image": c.get("image")} for c in containers]},
            },
        }
        kept["status"] = copy.deepcopy(body.get("status") or {})
    return kept


class WatchCache:
    """Lookups in kopf's indexes, bound once from the first handler's keyword arguments.

    `lookup` answers (True, body or None) for a cached kind once bound: None then means the
    object does not exist (the index was filled from a full listing before any handler ran), and a
    foreign object of another kind reads as its name and owners only (enough for ChildNameConflict).
    Unbound or another kind: (False, None), a GET's turn.
    """

    def __init__(self) -> None:
        self._indexes: dict[str, list[Any]] = {}
        self._guard = threading.Lock()

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        if self._indexes:
            return
        found: dict[str, list[Any]] = {}
        for kind, group, _ in CACHED:
            if index_id(kind, group) in kwargs:
                found.setdefault(kind, []).append(kwargs[index_id(kind, group)])
        with self._guard:
            self._indexes = self._indexes or found

    def lookup(self, kind: str, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        indexes = self._indexes.get(kind)
        if not indexes:
            return False, None
        for index in indexes:
            for value in index.get((namespace, name)) or ():
                return True, value
        return True, None


class OwnWrites:
    """The operator's own writes a watch has not shown yet: read through the cache a moment after
    an apply, a child would look unchanged and be applied again (and a status patched twice).

    `remember` after a write (not after one that changed nothing); `caught_up` answers what was
    written while the cache still holds the resourceVersion seen before it, and forgets it once the
    watch moved on (our write, or someone's after it); `forget` drops an object's entries at deletion.
    """

    def __init__(self) -> None:
        self._unseen: dict[tuple[str, str, str], tuple[str | None, dict[str, Any]]] = {}

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return key in self._unseen

    def remember(self, key: tuple[str, str, str], live: dict[str, Any] | None, written: dict[str, Any]) -> None:
        before = (live or {}).get("metadata", {}).get("resourceVersion")
        if written.get("metadata", {}).get("resourceVersion") != before:  # a no-op apply changes nothing
            self._unseen[key] = (before, written)

    def caught_up(self, key: tuple[str, str, str], live: dict[str, Any] | None) -> dict[str, Any] | None:
        """`live` as read, or what our own write made of it while the watch has not shown it yet."""
        unseen = self._unseen.get(key)
        if unseen is None:
            return live
        before, written = unseen
        if (live or {}).get("metadata", {}).get("resourceVersion") == before:
            return written
        self._unseen.pop(key, None)  # the watch shows our write, or someone's after it
        return live

    def forget(self, namespace: str, name_prefix: str) -> None:
        """Every entry of objects in `namespace` whose name starts with `name_prefix` (an owner and its children)."""
        for key in [k for k in self._unseen if k[1] == namespace and k[2].startswith(name_prefix)]:
            self._unseen.pop(key, None)


def index_function(kind: str, group: str = "") -> Callable[..., dict]:
    """The kopf index function of one kind: {(namespace, name): entry}."""

    def keep(body: Mapping[str, Any], namespace: str, name: str, **_: Any) -> dict:
        return {(namespace, name): entry(kind, body)}

    keep.__name__ = index_id(kind, group).replace("-", "_")
    return keep
