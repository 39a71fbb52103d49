"""The watch cache: what is kept of each object, and how a lookup answers (kube/cache.py)."""

from __future__ import annotations

from shadow_operator.controller.observed import ORIGINAL_ROUTING_ANNOTATION, ObservedDeployment, ObservedService
from shadow_operator.kube.cache import WatchCache, compact, entry, index_id

from .factories import deployment_json, service_json


class _Index(dict):
    """kopf.Index's shape: key -> a store of values."""


def _bound(**stores) -> WatchCache:
    cache = WatchCache()
    cache.bind({index_id(kind): _Index(store) for kind, store in stores.items()})
    return cache


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


def test_a_bound_cache_answers_absent_for_what_no_watch_has_seen_and_unbound_kinds_go_to_the_api():
    cache = _bound(ConfigMap={("ns", "a"): ["body"]})
    assert cache.lookup("ConfigMap", "ns", "a") == (True, "body")
    assert cache.lookup("ConfigMap", "ns", "missing") == (True, None)
    assert cache.lookup("Event", "ns", "a") == (False, None)
    assert WatchCache().lookup("ConfigMap", "ns", "a") == (False, None)


def test_both_cronjob_versions_are_looked_up():
    cache = WatchCache()
    cache.bind(
        {
            index_id("CronJob", "batch/v1"): _Index(),
            index_id("CronJob", "batch/v1beta1"): _Index({("ns", "j"): ["old"]}),
        }
    )
    assert cache.lookup("CronJob", "ns", "j") == (True, "old")


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
