"""The watch cache: what is kept of each object, and how a lookup answers (kube/cache.py)."""

from __future__ import annotations

import time

from shadow_operator.controller.observed import ORIGINAL_ROUTING_ANNOTATION, ObservedDeployment, ObservedService
from shadow_operator.kube.cache import CACHED, WatchCache, compact, entry

from .factories import deployment_json, service_json


def test_a_foreign_service_and_deployment_keep_what_observation_reads_and_drop_the_rest():
    service = service_json()
    service["metadata"].setdefault("annotations", {}).update(
        {
            "kubectl.kubernetes.io/last-applied-configuration": "x" * 5000,
            ORIGINAL_ROUTING_ANNOTATION: "{" + "y" * 900 + "}",
        }
    )
    kept = compact(service)
    assert ObservedService.from_body(kept) == ObservedService.from_body(service)
    assert kept["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == ""
    assert len(str(kept)) < 2000

    deployment = deployment_json(replicas=2)
    assert ObservedDeployment.from_body(compact(deployment)) == ObservedDeployment.from_body(deployment)


def test_ours_are_kept_whole_and_anyone_elses_other_kinds_by_name_and_owners_only():
    ours = {"kind": "ConfigMap", "metadata": {"name": "a", "labels": {"app.kubernetes.io/managed-by": "shadow-operator"}},
            "data": {"router.json": "{}"}}  # fmt: skip
    assert entry("ConfigMap", ours) == ours and entry("ConfigMap", ours) is not ours
    theirs = {"kind": "ConfigMap", "metadata": {"name": "b", "ownerReferences": [{"uid": "u"}]}, "data": {"x": "1"}}
    assert entry("ConfigMap", theirs) == {"apiVersion": None, "kind": "ConfigMap", "metadata": theirs["metadata"]}


def test_a_listed_kind_answers_absent_for_what_no_watch_has_seen_and_unlisted_kinds_go_to_the_api():
    cache = WatchCache()
    assert cache.lookup("ConfigMap", "ns", "a") == (False, None)  # not listed yet: a GET's turn
    cache.replace("ConfigMap", [{"metadata": {"namespace": "ns", "name": "a"}, "data": {}}])
    assert cache.lookup("ConfigMap", "ns", "a")[1]["metadata"]["name"] == "a"
    assert cache.lookup("ConfigMap", "ns", "missing") == (True, None)
    assert cache.lookup("Event", "ns", "a") == (False, None)
    assert cache.synced() == {"ConfigMap"}


def test_watch_events_add_change_and_remove_objects_and_a_listing_replaces_them():
    cache = WatchCache()
    cache.replace("Service", [])
    service = service_json("recsys")
    cache.apply("Service", "ADDED", service)
    assert cache.lookup("Service", "default", "recsys")[1]["kind"] == "Service"
    changed = service_json("recsys", selector={"app": "v2"})
    cache.apply("Service", "MODIFIED", changed)
    assert cache.lookup("Service", "default", "recsys")[1]["spec"]["selector"] == {"app": "v2"}
    cache.apply("Service", "DELETED", changed)
    assert cache.lookup("Service", "default", "recsys") == (True, None)
    cache.apply("Service", "ADDED", service)
    cache.replace("Service", [])  # a relisting after 410 Gone: what it does not hold is gone
    assert cache.lookup("Service", "default", "recsys") == (True, None)


def test_only_kinds_anyone_may_own_are_watched_whole():
    """A label-selected watch cannot see someone else's object holding a child's name: the
    reconcile asks the API server before creating one of those kinds (ChildNameConflict)."""
    whole = {cached.kind for cached in CACHED if not cached.mine_only}
    assert whole == {"ShadowDeployment", "Deployment", "Service"}
    assert WatchCache.mine_only("ConfigMap") and not WatchCache.mine_only("Service")


class _FakeKube:
    """list_all and watch_all as the API server answers them: one listing, then the events once."""

    def __init__(self, items, events, held=()):
        self.items, self.events, self.lists, self.watches = items, events, 0, []
        self.held, self.name_watches = list(held), []  # the metadata-only list+watch: others' objects

    def list_all(self, kind, selector, metadata_only=False):
        if kind != "ConfigMap":
            raise type("NotServed", (Exception,), {"status": 404})()
        if metadata_only:
            assert selector is None  # every object's metadata, whoever made it
            return self.held, "10"
        self.lists += 1
        if self.lists > 1:  # listed again after the 410: the server now holds what the events added
            return self.items + [event["object"] for event in self.events if event["type"] == "ADDED"], "20"
        return self.items, "10"

    def watch_all(self, kind, version, selector, metadata_only=False):
        assert kind == "ConfigMap"
        if metadata_only:
            self.name_watches.append(version)
            time.sleep(0.2)  # a quiet watch the server ends
            return
        self.watches.append((version, selector))
        if len(self.watches) == 1:
            yield from self.events
            time.sleep(1.1)  # then the server ends the watch (its timeoutSeconds): resumed, not relisted
        else:
            yield {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}


def test_a_kind_is_listed_by_the_operators_label_then_watched_from_the_listing_version():
    events = [
        {"type": "ADDED", "object": {"metadata": {"namespace": "ns", "name": "b", "resourceVersion": "11"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
    ]
    squatter = {"metadata": {"namespace": "ns", "name": "x-report", "ownerReferences": [{"uid": "theirs"}]}}
    kube = _FakeKube([{"kind": "ConfigMap", "metadata": {"namespace": "ns", "name": "a"}}], events, [squatter])
    cache = WatchCache()
    cache.start(kube)
    deadline = time.monotonic() + 10
    while (len(kube.watches) < 2 or cache.lookup("ConfigMap", "ns", "b")[1] is None) and time.monotonic() < deadline:
        time.sleep(0.01)
    cache.stop()
    assert cache.lookup("ConfigMap", "ns", "a")[0] and cache.lookup("ConfigMap", "ns", "b")[1] is not None
    assert kube.watches[:2] == [
        ("10", "app.kubernetes.io/managed-by=shadow-operator"),  # from the listing's version
        ("12", "app.kubernetes.io/managed-by=shadow-operator"),  # resumed after the bookmark
    ]
    assert cache.lookup("VirtualService", "ns", "a") == (True, None)  # Istio not served: absent
    assert kube.name_watches and kube.name_watches[0] == "10"  # the metadata watch, from its listing's version
    assert cache.held("ConfigMap", "ns", "x-report")[1]["metadata"]["ownerReferences"] == [{"uid": "theirs"}]
    assert cache.held("ConfigMap", "ns", "a") == (True, None)


def test_the_names_others_hold_are_kept_by_name_and_owners_and_ours_left_to_the_label_watch():
    cache = WatchCache()
    assert cache.held("ConfigMap", "ns", "r-report") == (False, None)  # not listed yet: a GET's turn
    theirs = {"kind": "PartialObjectMetadata", "metadata": {"namespace": "ns", "name": "r-report", "uid": "u1",
              "annotations": {"big": "x" * 5000}, "managedFields": [{"manager": "kubectl"}]}}  # fmt: skip
    ours = {
        "metadata": {
            "namespace": "ns",
            "name": "r-router",
            "labels": {"app.kubernetes.io/managed-by": "shadow-operator"},
        }
    }
    cache.replace_held("ConfigMap", [theirs, ours])
    assert cache.held("ConfigMap", "ns", "r-report") == (
        True,
        {"kind": "ConfigMap", "metadata": {"namespace": "ns", "name": "r-report", "uid": "u1"}},
    )
    assert cache.held("ConfigMap", "ns", "r-router") == (True, None)  # ours: the label-selected watch has it
    labelled = {"metadata": {**theirs["metadata"], "labels": {"app.kubernetes.io/managed-by": "shadow-operator"}}}
    cache.apply_held("ConfigMap", "MODIFIED", labelled)  # now labelled ours (by whoever): the label watch has it
    assert cache.held("ConfigMap", "ns", "r-report") == (True, None)
    cache.apply_held("ConfigMap", "MODIFIED", ours | {"metadata": {"namespace": "ns", "name": "r-router",
                     "ownerReferences": [{"uid": "sd"}]}})  # fmt: skip
    assert cache.held("ConfigMap", "ns", "r-router")[1]["metadata"]["ownerReferences"] == [{"uid": "sd"}]
    cache.apply_held("ConfigMap", "DELETED", {"metadata": {"namespace": "ns", "name": "r-router"}})
    assert cache.held("ConfigMap", "ns", "r-router") == (True, None)


def test_a_name_someone_else_holds_is_answered_from_the_metadata_watch_without_a_request():
    from shadow_operator.kube.client import Kube

    class NoRequests(Kube):
        def _request(self, *args, **kwargs):
            raise AssertionError(f"a request: {args}")

    kube = NoRequests(api_client=None, cache=WatchCache())
    kube.cache.replace_held("ConfigMap", [{"metadata": {"namespace": "ns", "name": "r-report", "uid": "u1"}}])
    assert kube.holder("ConfigMap", "ns", "r-report")["metadata"]["uid"] == "u1"
    assert kube.holder("ConfigMap", "ns", "r-free") is None
    try:
        kube.holder("Role", "ns", "r-analysis")  # Roles' metadata not listed yet: asked of the API server
    except AssertionError as error:
        assert "GET" in str(error)
    else:
        raise AssertionError("a kind not listed yet must be asked of the API server")


def test_our_own_write_stands_in_for_the_watch_until_the_watch_shows_it():
    from shadow_operator.controller.reconcile import Reconciler

    reconciler = Reconciler(kube=None, image="shadow-operator:test")  # its writes go through one OwnWrites
    key = ("ConfigMap", "ns", "a")
    before = {"metadata": {"resourceVersion": "1"}, "data": {"x": "old"}}
    written = {"metadata": {"resourceVersion": "2"}, "data": {"x": "new"}}
    reconciler.own_writes.remember(key, before, written)
    assert reconciler.own_writes.caught_up(key, before) is written  # the watch still shows the old object
    caught_up = {"metadata": {"resourceVersion": "2"}, "data": {"x": "new"}}
    assert reconciler.own_writes.caught_up(key, caught_up) is caught_up
    assert reconciler.own_writes.caught_up(key, before) is before  # forgotten once the watch caught up
    reconciler.own_writes.remember(key, caught_up, dict(caught_up))  # an apply that changed nothing is not remembered
    assert key not in reconciler.own_writes
    reconciler.own_writes.remember(("ConfigMap", "ns", "a-router"), before, written)
    reconciler.own_writes.remember(("ConfigMap", "other", "a"), before, written)
    reconciler.own_writes.forget("ns", "a")  # the owner `a` deleted: its children's entries go
    assert ("ConfigMap", "ns", "a-router") not in reconciler.own_writes
    assert ("ConfigMap", "other", "a") in reconciler.own_writes
