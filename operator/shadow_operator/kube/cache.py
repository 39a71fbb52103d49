"""What the watches have seen: reads of children and of the Services they shadow, without a GET.

One thread per cached kind lists it cluster-wide and then watches it (kube/client.py list_all,
watch_all), so a reconcile reads the state a GET would and an idle operator makes no requests but
its watches (issue 13: 9 GETs per object per resync before, ~900 reads/s at 1,000 objects and a
60 s resync). Until a kind's first listing is in, its reads are GETs. What a watch cannot have
seen yet (a write of our own a moment ago) is OwnWrites' to answer.

Kinds only the operator creates are watched by its label (MANAGED_BY_LABEL): the API server sends
nothing else of them whole, so a cluster's many unrelated ConfigMaps, Roles or CronJobs cost
neither memory nor start-up time. A name such a watch has not seen is then ours to create, unless
someone else's object holds it (ChildNameConflict): a second watch of each such kind asks for
metadata only (PartialObjectMetadata) and keeps, of objects without the label, their names and
owners (`held`). Before it, the reconcile asked the API server with a GET before each create:
10 reads per ShadowDeployment converging, and the API server's CPU 2.2x kubectl's for the same
children (make bench-operator, 200 objects, 3 Dec 2026). Services
and Deployments are watched whole (the Service a ShadowDeployment names and a referenced primary
are anyone's), other owners' kept compact: only what controller/observed.py reads, annotation
values cut. Not kopf indexes: kopf (1.45) holds its handlers until every listed object of an
indexed kind has been indexed, with bookkeeping that grows with the square of the objects listed:
an operator started beside 1,000 ShadowDeployments (16,000 children) had not run one reconcile
after 900 s (make bench-operator OBJECTS=1000, issue 13).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..contract.naming import MANAGED_BY

log = logging.getLogger(__name__)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"


@dataclass(frozen=True)
class Cached:
    kind: str
    mine_only: bool  # watched by the operator's label: a name missing from it may be someone else's


# The kinds a reconcile reads. CronJob: the version the server serves (batch/v1 from 1.21, v1beta1
# before; kube/client.py chooses). Where Istio's CRDs are absent the listing answers 404: the kind
# reads as absent, as a GET's 404 did, and is listed again a minute later.
CACHED: tuple[Cached, ...] = (
    Cached("ShadowDeployment", mine_only=False),
    Cached("Deployment", mine_only=False),
    Cached("Service", mine_only=False),
    Cached("ConfigMap", mine_only=True),
    Cached("CronJob", mine_only=True),
    Cached("ServiceAccount", mine_only=True),
    Cached("Role", mine_only=True),
    Cached("RoleBinding", mine_only=True),
    Cached("NetworkPolicy", mine_only=True),
    Cached("VirtualService", mine_only=True),
    Cached("DestinationRule", mine_only=True),
)
# Kinds whose objects of other owners are read too (spec.service.name, spec.primary.deploymentRef).
FOREIGN_KINDS = frozenset({"Service", "Deployment"})
_ANNOTATION_VALUE_LIMIT = 256  # last-applied-configuration and the like: the key is what matters
OUR_ANNOTATIONS = "shadow.mlops.dev/"  # kept whole: the Service's original routing, the adoption opt-in
_RELIST_DELAY = (1.0, 60.0)  # seconds after a failed listing, doubling up to the second
_ABSENT_KIND_DELAY = 60.0  # an API the server does not serve (Istio's) is asked about again after this


def is_ours(body: Mapping[str, Any]) -> bool:
    return ((body.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


def entry(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """What to keep of a watched object: ours whole, a foreign Service or Deployment compact, else its name and owners."""
    if kind == "ShadowDeployment" or is_ours(body):
        return copy.deepcopy(dict(body))
    if kind in FOREIGN_KINDS:
        return compact(body)
    # Someone else's object: only enough to see that a child's name is taken (ChildNameConflict).
    return {"apiVersion": body.get("apiVersion"), **_holder(body.get("kind"), body)}


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
    """The watched kinds' objects, each by (namespace, name).

    `lookup` answers (True, body or None) for a kind whose first listing is in: None means no such
    object (of ours, for a `mine_only` kind). Before that, or for a kind not cached: (False, None),
    a GET's turn.
    """

    def __init__(self) -> None:
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}  # kind -> objects, once listed
        # kind -> the names others' objects hold (a mine_only kind's objects without our label), once listed
        self._held: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()

    def lookup(self, kind: str, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        objects = self._objects.get(kind)
        if objects is None:
            return False, None
        return True, objects.get((namespace, name))

    def held(self, kind: str, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        """For a mine_only kind: (True, someone else's object holding the name, by name and owners, or
        None) once its metadata watch has listed; (False, None) before, a GET's turn."""
        objects = self._held.get(kind)
        if objects is None:
            return False, None
        return True, objects.get((namespace, name))

    @staticmethod
    def mine_only(kind: str) -> bool:
        """Whether an absent name may still be someone else's object (the watch sees ours only)."""
        return any(cached.kind == kind and cached.mine_only for cached in CACHED)

    def synced(self) -> set[str]:
        """The kinds whose first listing is in."""
        return set(self._objects)

    def start(self, kube: Any) -> None:
        """Daemon threads, listing then watching until stop(): one per cached kind, and for a
        mine_only kind a second one that follows every object's metadata (the names others hold)."""
        for cached in CACHED:
            selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}" if cached.mine_only else None
            follow = _Follow(cached.kind, selector, False, self.replace, self.apply)
            threading.Thread(target=self._follow, args=(kube, follow), name=f"watch-{cached.kind}", daemon=True).start()
            if cached.mine_only:
                names = _Follow(cached.kind, None, True, self.replace_held, self.apply_held)
                threading.Thread(
                    target=self._follow, args=(kube, names), name=f"names-{cached.kind}", daemon=True
                ).start()

    def stop(self) -> None:
        self._stop.set()

    # -- one kind ---------------------------------------------------------------

    def _follow(self, kube: Any, follow: _Follow) -> None:
        delay = _RELIST_DELAY[0]
        while not self._stop.is_set():
            try:
                items, version = kube.list_all(follow.kind, follow.selector, metadata_only=follow.metadata_only)
            except Exception as error:
                if getattr(error, "status", None) == 404:  # the API is not served (Istio's CRDs absent)
                    follow.replace(follow.kind, [])
                    self._stop.wait(_ABSENT_KIND_DELAY)
                    continue
                log.warning("listing %s failed, again in %.0fs: %s", follow.kind, delay, error)
                self._stop.wait(delay)
                delay = min(delay * 2, _RELIST_DELAY[1])
                continue
            delay = _RELIST_DELAY[0]
            follow.replace(follow.kind, items)
            self._watch(kube, follow, version)

    def _watch(self, kube: Any, follow: _Follow, version: str) -> None:
        """Apply the watch's events until it needs a new listing (410 Gone, an error) or stop()."""
        kind = follow.kind
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                for event in kube.watch_all(kind, version, follow.selector, metadata_only=follow.metadata_only):
                    if self._stop.is_set():
                        return
                    kind_of_event, body = event.get("type"), event.get("object") or {}
                    if kind_of_event == "ERROR":  # 410 Gone: the version is too old to resume from
                        log.info("watch of %s ended (%s): listing again", kind, body.get("message"))
                        return
                    version = (body.get("metadata") or {}).get("resourceVersion") or version
                    if kind_of_event != "BOOKMARK":
                        follow.apply(kind, kind_of_event, body)
            except Exception as error:
                log.warning("watch of %s failed: %s; listing again", kind, error)
                self._stop.wait(1.0)
                return
            if time.monotonic() - started < 1.0:  # a watch that ends at once: list again rather than spin
                return

    def replace(self, kind: str, items: list[dict[str, Any]]) -> None:
        """A listing: the kind's objects are these, and its reads are answered from now on."""
        fresh = {}
        for body in items:
            metadata = body.get("metadata") or {}
            fresh[(metadata.get("namespace", ""), metadata.get("name", ""))] = entry(kind, body)
        with self._guard:
            self._objects[kind] = fresh

    def apply(self, kind: str, event: str, body: dict[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""
        metadata = body.get("metadata") or {}
        key = (metadata.get("namespace", ""), metadata.get("name", ""))
        body.setdefault("kind", kind)
        with self._guard:
            objects = self._objects.setdefault(kind, {})
            if event == "DELETED":
                objects.pop(key, None)
            else:
                objects[key] = entry(kind, body)

    def replace_held(self, kind: str, items: list[dict[str, Any]]) -> None:
        """A metadata listing: the names others' objects of the kind hold are these."""
        fresh = {}
        for body in items:
            if not is_ours(body):
                metadata = body.get("metadata") or {}
                fresh[(metadata.get("namespace", ""), metadata.get("name", ""))] = _holder(kind, body)
        with self._guard:
            self._held[kind] = fresh

    def apply_held(self, kind: str, event: str, body: dict[str, Any]) -> None:
        """One metadata watch event. An object that gains our label leaves `held` (the label-selected
        watch has it); one that loses it joins (its owners still say whether it is a child of ours)."""
        metadata = body.get("metadata") or {}
        key = (metadata.get("namespace", ""), metadata.get("name", ""))
        with self._guard:
            objects = self._held.setdefault(kind, {})
            if event == "DELETED" or is_ours(body):
                objects.pop(key, None)
            else:
                objects[key] = _holder(kind, body)


@dataclass(frozen=True)
class _Follow:
    """One list+watch: of a kind, optionally by label, whole or as metadata, into one table."""

    kind: str
    selector: str | None
    metadata_only: bool
    replace: Any  # (kind, items) -> None
    apply: Any  # (kind, event type, object) -> None


def _holder(kind: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
    """Someone else's object as the reconcile reads it before creating a child: its name and owners
    (`kind` given: a metadata-only watch's objects say PartialObjectMetadata)."""
    metadata = body.get("metadata") or {}
    kept = {
        key: copy.deepcopy(metadata[key]) for key in ("name", "namespace", "uid", "ownerReferences") if key in metadata
    }
    return {"kind": kind, "metadata": kept}


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
