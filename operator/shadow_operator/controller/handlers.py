"""kopf wiring: every event funnels into the one reconcile. Handlers are thin and return nothing."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import kopf

from ..api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from ..contract.naming import MANAGED_BY
from ..contract.resource import SpecInvalid, parse
from ..kube.cache import WatchCache
from ..kube.client import Kube, KubeError
from ..kube.permissions import WEBHOOK_CONFIGURATION
from . import webhook
from .admission import refusal, required_access, spec_changed
from .config import Settings
from .reconcile import Claim, Reconciler, TransientError, rivals

RESOURCE = (GROUP, VERSION, PLURAL)
log = logging.getLogger(__name__)
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
    kube = Kube.from_environment()
    kube.cache = memo.cache = WatchCache()
    memo.cache.start(kube)  # its own list+watch threads (kube/cache.py: why not kopf indexes)
    memo.reconciler = Reconciler(kube, SETTINGS.image)
    memo.rechecks = Rechecks()
    if SETTINGS.webhook:
        _serve_admission(settings, memo.reconciler.kube)


def _serve_admission(settings: kopf.OperatorSettings, kube: Kube) -> None:
    if SETTINGS.webhook not in webhook.MODES:
        raise kopf.PermanentError(f"SHADOW_WEBHOOK={SETTINGS.webhook!r}: use one of url, service, or leave it empty")
    names = webhook.hostnames(SETTINGS.webhook, SETTINGS.webhook_host, SETTINGS.webhook_service)
    certificate = webhook.serving_certificate(SETTINGS.webhook_cert_dir, names)
    settings.admission.server = webhook.server(
        SETTINGS.webhook, SETTINGS.webhook_host, SETTINGS.webhook_port, certificate
    )
    if certificate.self_signed and not kube.set_webhook_ca_bundle(WEBHOOK_CONFIGURATION, certificate.ca_bundle):
        # Not fatal: the operator still reconciles; creates are refused (fail closed) or, without
        # the configuration, not judged at all, which is what the administrator installed.
        log.warning(
            "ValidatingWebhookConfiguration %s is not installed: ShadowDeployments are not checked for "
            "their authors' access (apply manifests/webhook/)",
            WEBHOOK_CONFIGURATION,
        )


def admit(body: kopf.Body, old: Any, operation: str, userinfo: dict, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    """Refuse a ShadowDeployment that asks the operator for more than its author may do (controller/admission.py)."""
    if not spec_changed(operation, body, old):
        return
    try:
        sd = parse(body)
    except SpecInvalid:
        return  # nothing will be built from it; the reconcile reports each bad field in status
    kube: Kube = memo.reconciler.kube
    try:
        # From the API server, not the watch cache: an admission decision must not rest on a lagging view.
        service_exists = kube.get("Service", namespace, sd.spec.service.name, cached=False) is not None
        required = required_access(sd, service_exists)
        denied = [a for a in required if not kube.may(userinfo, a.resource_attributes(namespace))]
    except KubeError as error:  # fail closed, and say why
        raise kopf.AdmissionError(f"cannot check the author's access now (try again): {error}", code=503) from None
    if denied:
        raise kopf.AdmissionError(refusal(userinfo.get("username", "?"), namespace, denied), code=403)


if SETTINGS.webhook:
    kopf.on.validate(*RESOURCE, id=webhook.HANDLER_ID, operations=["CREATE", "UPDATE"], persistent=True)(admit)


@kopf.index(*RESOURCE)
def service_claims(namespace: str, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> dict | None:
    service = (spec.get("service") or {}).get("name")
    if not service:
        return None
    return {(namespace, service): Claim(created=meta.get("creationTimestamp", ""), name=name)}


class Rechecks:
    """One pending "look again in N seconds" per ShadowDeployment (a routing grace period running out).

    The periodic resync would notice too, but up to SHADOW_RESYNC_SECONDS late: a client Service
    left on a dead router that much longer than its grace period.
    """

    def __init__(self) -> None:
        self._timers: dict[str, threading.Timer] = {}
        self._guard = threading.Lock()

    def schedule(self, uid: str, delay: float, callback) -> None:
        with self._guard:
            previous = self._timers.pop(uid, None)
            if previous is not None:
                previous.cancel()
            timer = threading.Timer(delay + 0.5, callback)  # +0.5 s: past the deadline, not on it
            timer.daemon = True
            self._timers[uid] = timer
            timer.start()


def _reconcile(body: kopf.Body, memo: kopf.Memo, service_claims: kopf.Index, namespace: str, name: str) -> None:
    service = (body.get("spec", {}).get("service") or {}).get("name")
    claims = list(service_claims.get((namespace, service), []))
    try:
        recheck_after = memo.reconciler.reconcile(body, rivals(name, claims))
    except TransientError as error:
        raise kopf.TemporaryError(str(error), delay=_RETRY_DELAY_SECONDS) from error
    if recheck_after is not None:
        uid = body.get("metadata", {}).get("uid", f"{namespace}/{name}")
        memo.rechecks.schedule(uid, recheck_after, lambda: _reconcile_by_name(memo, service_claims, namespace, name))


def _reconcile_by_name(memo: kopf.Memo, service_claims: kopf.Index, namespace: str, name: str) -> None:
    body = memo.reconciler.kube.get("ShadowDeployment", namespace, name)
    if body is None:
        return
    with contextlib.suppress(kopf.TemporaryError):  # the periodic resync retries
        _reconcile(body, memo, service_claims, namespace, name)


@kopf.on.resume(*RESOURCE, id="reconcile-on-resume")
@kopf.on.create(*RESOURCE, id="reconcile-on-create")
@kopf.on.update(*RESOURCE, id="reconcile-on-update")
def reconcile_on_change(
    body: kopf.Body, memo: kopf.Memo, service_claims: kopf.Index, namespace: str, name: str, **kwargs: Any
) -> None:
    _reconcile(body, memo, service_claims, namespace, name)


@kopf.timer(*RESOURCE, id="reconcile-on-timer", interval=SETTINGS.resync_seconds, initial_delay=SETTINGS.resync_seconds)
def reconcile_on_timer(
    body: kopf.Body, memo: kopf.Memo, service_claims: kopf.Index, namespace: str, name: str, **kwargs: Any
) -> None:
    _reconcile(body, memo, service_claims, namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def child_deployment_changed(body: kopf.Body, memo: kopf.Memo, service_claims: kopf.Index, **kwargs: Any) -> None:
    """A Deployment the operator runs changed (a Pod became available, or none is): reconcile its owner now.

    Without this, phase and routing followed Pods only at the next periodic resync (60 s by default).
    Events only: nothing is stored on the Deployment, and a pass that finds nothing new writes nothing.
    """
    owner = next(
        (ref for ref in body.get("metadata", {}).get("ownerReferences") or [] if ref.get("kind") == KIND), None
    )
    if owner is None:
        return
    _reconcile_by_name(memo, service_claims, body["metadata"]["namespace"], owner["name"])


@kopf.on.cleanup()
def stop_watching(memo: kopf.Memo, **_: Any) -> None:
    memo.cache.stop()


@kopf.on.delete(*RESOURCE, id="restore-routing")
def restore_routing(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.finalize(body)
