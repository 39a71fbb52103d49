"""kopf wiring: every event funnels into the one reconcile. Handlers are thin and return nothing."""

from __future__ import annotations

from typing import Any

import kopf

from .api.v1alpha1 import GROUP, PLURAL, VERSION
from .config import Settings
from .kube import Kube
from .reconcile import Claim, Reconciler, TransientError, rivals

RESOURCE = (GROUP, VERSION, PLURAL)
SETTINGS = Settings.from_environment()
_RETRY_DELAY_SECONDS = 10


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's bookkeeping goes to annotations under our group; status belongs to the reconcile.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # The reconcile posts its own Events, once per transition; kopf's per-handler ones would
    # be a write on every pass.
    settings.posting.enabled = False
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.execution.max_workers = SETTINGS.max_workers
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    memo.reconciler = Reconciler(Kube.from_environment(), SETTINGS.image)


@kopf.index(*RESOURCE)
def service_claims(namespace: str, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> dict | None:
    service = (spec.get("service") or {}).get("name")
    if not service:
        return None
    return {(namespace, service): Claim(created=meta.get("creationTimestamp", ""), name=name)}


def _reconcile(body: kopf.Body, memo: kopf.Memo, service_claims: kopf.Index, namespace: str, name: str) -> None:
    service = (body.get("spec", {}).get("service") or {}).get("name")
    claims = list(service_claims.get((namespace, service), []))
    try:
        memo.reconciler.reconcile(body, rivals(name, claims))
    except TransientError as error:
        raise kopf.TemporaryError(str(error), delay=_RETRY_DELAY_SECONDS) from error


@kopf.on.resume(*RESOURCE, id="reconcile-on-resume")
@kopf.on.create(*RESOURCE, id="reconcile-on-create")
@kopf.on.update(*RESOURCE, id="reconcile-on-update")
def reconcile_on_change(
    body: kopf.Body, memo: kopf.Memo, service_claims: kopf.Index, namespace: str, name: str, **_: Any
) -> None:
    _reconcile(body, memo, service_claims, namespace, name)


@kopf.timer(*RESOURCE, id="reconcile-on-timer", interval=SETTINGS.resync_seconds, initial_delay=SETTINGS.resync_seconds)
def reconcile_on_timer(
    body: kopf.Body, memo: kopf.Memo, service_claims: kopf.Index, namespace: str, name: str, **_: Any
) -> None:
    _reconcile(body, memo, service_claims, namespace, name)


@kopf.on.delete(*RESOURCE, id="restore-routing")
def restore_routing(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.finalize(body)
