"""The one idempotent reconcile: observe, validate, apply what differs, write status if it changed.

Run on create, update, resume and a timer. A pass that finds everything as wanted makes
reads only: children are compared with `diff.contains` before any apply, and status is
patched only when the computed status differs from the stored one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..api.durations import parse_duration
from ..api.v1alpha1 import Phase, ShadowDeploymentStatus
from ..contract import reasons
from ..contract.naming import CANDIDATE, PRIMARY, ROUTER, child_name, role_labels
from ..contract.report import UNTRUSTED_REPORT, report_name, trusted_report
from ..contract.resource import ShadowDeployment, SpecInvalid, identity_of, parse, parse_status
from ..contract.timestamps import parse_timestamp, timestamp
from ..kube.cache import OwnWrites, WatchCache
from ..kube.client import Kube, KubeError, TransientError
from . import promotion
from .builders import DesiredState, ServiceSwitch, all_child_keys, desired_state
from .builders.recorder import primary_capture_gap
from .conditions import find_condition, set_condition
from .diff import contains
from .notifications import Notifier, payload, targets_of, transition
from .observed import Observed, ObservedDeployment, ObservedService
from .progress import Outcome, compute_status, error_status
from .routing import RoutingDecision, decide_routing
from .service_switch import restore_service, switch_service
from .validation import Problem, validate

log = logging.getLogger(__name__)


def _is_transient(error: KubeError) -> bool:
    # A namespace being deleted refuses new objects (403) until it takes this object along.
    terminating = error.status == 403 and "being terminated" in str(error)
    return terminating or error.status in (0, 409, 429) or error.status >= 500


@dataclass(frozen=True)
class Claim:
    """A ShadowDeployment's claim on a Service, as kept in the operator's in-memory index."""

    created: str
    name: str


def rivals(name: str, claims: list[Claim]) -> tuple[str, ...]:
    """ShadowDeployments that claimed the same Service first (oldest wins, then by name)."""
    ordered = sorted(claims, key=lambda claim: (claim.created, claim.name))
    names = [claim.name for claim in ordered]
    return tuple(names[: names.index(name)]) if name in names else tuple(names)


# How soon to look again when a promotion waits only for the next pass (the status just written).
PROMOTION_RECHECK_SECONDS = 1.0


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        image: str,
        clock: Callable[[], datetime] | None = None,
        notifier: Notifier | None = None,
    ):
        self.kube = kube
        self.image = image
        self.clock = clock or (lambda: datetime.now(UTC))
        # spec.notifications are sent from this background sender, never from the reconcile itself.
        self.notifier = notifier or Notifier(self._secret_value, self._notification_failed)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # uid -> resourceVersion of the last untrusted report announced: one Event per version, not per pass.
        self._untrusted_announced: dict[str, str] = {}
        # Our own writes the watches have not shown yet (reads come from them, kube/cache.py): key ->
        # (resourceVersion the watch showed before the write, what the server answered). Without
        # it a pass that runs before the watch event re-applies (or re-patches status) for nothing:
        # 2,392 writes in a 60 s idle window at 200 objects on a loaded machine.
        self.own_writes = OwnWrites()

    def _lock(self, uid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(uid, threading.Lock())

    # -- the reconcile --------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any], rival_claims: tuple[str, ...] = ()) -> float | None:
        """One pass; returns in how many seconds to look again (a grace period running out), if ever."""
        identity = identity_of(body)
        with self._lock(identity.uid):
            fresh = self.kube.get("ShadowDeployment", identity.namespace, identity.name)
            if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                return None  # gone or going: the delete handler restores routing
            return self._reconcile(fresh, rival_claims)

    def _reconcile(self, body: Mapping[str, Any], rival_claims: tuple[str, ...]) -> float | None:
        try:
            sd = parse(body)
        except SpecInvalid as invalid:
            self._write_invalid(body, invalid)
            return None
        observed = self._observe(sd, rival_claims)
        problems = validate(sd, observed)
        outcome = Outcome(problems=tuple(problems))
        stored, decision = sd.status, promotion.NOTHING
        if not problems:
            sd, decision = self._promotion(body, sd, observed)
            outcome = self._converge(sd, observed)
        status = compute_status(sd, outcome, self.clock())
        if observed.report_problem:
            status = self._note_untrusted_report(body, sd, observed, status)
        status = promotion.with_promotion(sd, status, decision, timestamp(self.clock()))
        self._patch_status_if_changed(body, stored, status)
        recheck = outcome.routing.recheck_after if outcome.routing else None
        if decision.action == "pending" or promotion.due(sd, status, promotion.requested_image(body)):
            recheck = min(recheck or PROMOTION_RECHECK_SECONDS, PROMOTION_RECHECK_SECONDS)
        return recheck

    # -- promotion (controller/promotion.py) ---------------------------------------------------

    def _promotion(
        self, body: Mapping[str, Any], sd: ShadowDeployment, observed: Observed
    ) -> tuple[ShadowDeployment, promotion.Decision]:
        """Decide on promotion from the stored status; the object as the builders should see it, and the decision."""
        decision = promotion.decide(sd, promotion.requested_image(body), timestamp(self.clock()))
        record = decision.record
        if record is not None and sd.spec.primary.deployment_ref and sd.spec.promotion.patch_referenced_deployment:
            failure = self._patch_referenced(sd, observed, record.image)
            if failure is not None:
                return promotion.effective(sd), promotion.Decision("refuse", failure, reason=reasons.PROMOTION_FAILED)
            record = record.model_copy(update={"referenced_deployment_patched": True})
            decision = promotion.Decision("promote", record=record)
        if record is not None:
            log.info("%s/%s: promoting %s (%s)", sd.namespace, sd.name, record.image, record.trigger)
        return promotion.effective(sd, record), decision

    def _patch_referenced(self, sd: ShadowDeployment, observed: Observed, image: str) -> str | None:
        """Set the referenced primary Deployment's model image; why not, when it cannot be done."""
        name = sd.spec.primary.deployment_ref.name  # type: ignore[union-attr]
        live = observed.primary_ref
        if live is None:
            return f"Deployment {name} not found"
        index = promotion.referenced_container(live.container_names)
        if index is None:
            names = ", ".join(live.container_names)
            return f"cannot tell which container of Deployment {name} is the model ({names}): name it `model`"
        operations = promotion.image_patch(index, live.container_names[index], image)
        try:
            self.kube.json_patch("Deployment", sd.namespace, name, operations)
        except KubeError as error:
            if _is_transient(error) or error.status == 422:  # 422: the `test` failed, it changed meanwhile
                raise TransientError(f"could not set Deployment {name}'s image now: {error}") from error
            return f"cannot set Deployment {name}'s image: {error}"
        log.info("%s/%s: set Deployment %s's image to %s", sd.namespace, sd.name, name, image)
        return None

    def _note_untrusted_report(
        self, body: Mapping[str, Any], sd: ShadowDeployment, observed: Observed, status: ShadowDeploymentStatus
    ) -> ShadowDeploymentStatus:
        """An ignored report is said so: a Warning Event once per version of it, and on the Analyzed condition."""
        problem = observed.report_problem or ""
        if self._untrusted_announced.get(sd.identity.uid) != observed.report_version:
            log.warning("%s/%s: %s", sd.namespace, sd.name, problem)
            self.kube.post_event(body, "Warning", UNTRUSTED_REPORT, problem)
            self._untrusted_announced[sd.identity.uid] = observed.report_version
        analyzed = find_condition(status.conditions, reasons.ANALYZED)
        if analyzed is None:
            return status
        status_value = {"True": True, "False": False}.get(analyzed.status)
        message = f"{analyzed.message or analyzed.reason} {UNTRUSTED_REPORT}: {problem}"
        conditions = set_condition(
            status.conditions,
            reasons.ANALYZED,
            status_value,
            analyzed.reason,
            message,
            sd.identity.generation,
            analyzed.last_transition_time,
        )
        return status.model_copy(update={"conditions": conditions})

    def _observe(self, sd: ShadowDeployment, rival_claims: tuple[str, ...]) -> Observed:
        service_body = self.kube.get("Service", sd.namespace, sd.spec.service.name)
        ref = sd.spec.primary.deployment_ref
        ref_body = self.kube.get("Deployment", sd.namespace, ref.name) if ref else None
        report_body = self.kube.get("ConfigMap", sd.namespace, report_name(sd.name))
        report, report_problem = trusted_report(report_body, sd.namespace, sd.name, sd.identity.uid)
        builtin = sd.spec.traffic.router == "builtin"
        router_body = self.kube.get("Deployment", sd.namespace, child_name(sd, ROUTER)) if builtin else None
        return Observed(
            service=ObservedService.from_body(service_body) if service_body else None,
            primary_ref=ObservedDeployment.from_body(ref_body) if ref_body else None,
            rival_claims=rival_claims,
            report=report,
            report_problem=report_problem,
            report_version=(report_body or {}).get("metadata", {}).get("resourceVersion", ""),
            router=ObservedDeployment.from_body(router_body) if router_body else None,
        )

    def _routing(self, sd: ShadowDeployment, observed: Observed) -> RoutingDecision | None:
        """builtin mode: whether the client Service routes through the router now (controller/routing.py)."""
        if sd.spec.traffic.router != "builtin" or promotion.promoted(sd):
            return None  # promoted: no router, the Service goes (back) to the primary
        service = observed.service
        if service is None or sd.identity.uid in service.owner_uids:  # the operator's own entry Service
            routed = service is not None and service.selector == role_labels(sd, ROUTER)
        else:
            routed = service.original_routing is not None and service.original_routing.get("owner") == sd.name
        stored = find_condition(sd.status.conditions, reasons.ROUTER_AVAILABLE)
        previous = None
        if stored is not None and stored.status == "False" and stored.last_transition_time:
            previous = (stored.reason, parse_timestamp(stored.last_transition_time))
        return decide_routing(
            sd.spec.service.name,
            child_name(sd, ROUTER),
            observed.router,
            routed,
            previous,
            parse_duration(sd.spec.traffic.router_grace_period),
            self.clock(),
        )

    def _converge(self, sd: ShadowDeployment, observed: Observed) -> Outcome:
        routing = self._routing(sd, observed)
        desired = desired_state(sd, observed, self.image, through_router=routing is None or routing.through_router)
        live_deployments: dict[str, ObservedDeployment] = {}
        try:
            for child in desired.children:
                live = self._ensure(sd, child)
                if live is None:
                    return Outcome(problems=(self._conflict(sd, child),))
                if child["kind"] == "Deployment":
                    live_deployments[child["metadata"]["name"]] = ObservedDeployment.from_body(live)
            self._ensure_routing(sd, observed.service, desired.switch)
            just_promoted = promotion.promoted(sd) and sd.status.phase != Phase.PROMOTED
            if sd.status.observed_generation != sd.identity.generation or just_promoted:
                self._remove_stale(sd, desired)
        except KubeError as error:
            if _is_transient(error):
                raise TransientError(str(error)) from error
            return Outcome(apply_error=str(error))
        return Outcome(
            deployments=self._dependencies(sd, observed, live_deployments),
            report=observed.report,
            capture_gap=primary_capture_gap(sd, observed),
            routing=routing,
        )

    def _dependencies(
        self, sd: ShadowDeployment, observed: Observed, live: dict[str, ObservedDeployment]
    ) -> tuple[tuple[str, str, ObservedDeployment | None], ...]:
        """Deployments the mirror needs available, in the order a person would fix them."""
        ref = sd.spec.primary.deployment_ref
        primary_name = ref.name if ref else child_name(sd, PRIMARY)
        primary = observed.primary_ref if ref else live.get(primary_name)
        entries = [("primary", primary_name, primary)]
        if promotion.promoted(sd):
            return tuple(entries)  # the candidate and the router are gone
        entries.append(("candidate", child_name(sd, CANDIDATE), live.get(child_name(sd, CANDIDATE))))
        if sd.spec.traffic.router == "builtin":
            entries.append(("router", child_name(sd, ROUTER), live.get(child_name(sd, ROUTER))))
        return tuple(entries)

    def _ensure(self, sd: ShadowDeployment, child: dict[str, Any]) -> dict[str, Any] | None:
        """The live child after making it match; None when the name belongs to someone else."""
        metadata = child["metadata"]
        key = (child["kind"], metadata["namespace"], metadata["name"])
        live = self.own_writes.caught_up(key, self.kube.get(*key))
        if live is None and WatchCache.mine_only(key[0]):
            # The watch of this kind sees the operator's objects only: is the name someone else's?
            live = self.kube.holder(*key)
        if live is not None:
            owners = {ref.get("uid") for ref in live["metadata"].get("ownerReferences") or []}
            if sd.identity.uid not in owners:
                return None
            # apiVersion may differ where the server only serves an older version (CronJob on 1.20).
            if contains(live, {key: value for key, value in child.items() if key != "apiVersion"}):
                return live
            if child["kind"] == "RoleBinding" and live.get("roleRef") != child["roleRef"]:
                # roleRef is immutable: a binding from before the per-object Role (to the old
                # shadow-analyzer ClusterRole) is replaced, not patched.
                log.info("replacing RoleBinding %s/%s: its roleRef changed", metadata["namespace"], metadata["name"])
                self.kube.delete("RoleBinding", metadata["namespace"], metadata["name"], live["metadata"]["uid"])
        log.info("applying %s %s/%s", child["kind"], metadata["namespace"], metadata["name"])
        applied = self.kube.apply(child)
        self.own_writes.remember(key, live, applied)
        replicas = child.get("spec", {}).get("replicas")
        if child["kind"] == "Deployment" and replicas is not None and applied["spec"].get("replicas") != replicas:
            # Before Kubernetes 1.21 a change through the scale subresource (`kubectl scale`) is not
            # recorded in managedFields (kubernetes#82046), so applying the unchanged config leaves
            # the scaled value: seen on the real node, a router scaled to 0 stayed at 0.
            log.info("restoring %s/%s replicas to %d", metadata["namespace"], metadata["name"], replicas)
            applied = self.kube.json_patch(
                "Deployment",
                metadata["namespace"],
                metadata["name"],
                [{"op": "replace", "path": "/spec/replicas", "value": replicas}],
            )
        return applied

    @staticmethod
    def _conflict(sd: ShadowDeployment, child: dict[str, Any]) -> Problem:
        name = child["metadata"]["name"]
        return Problem(
            reasons.CHILD_NAME_CONFLICT,
            f"{child['kind']} {name} already exists and is not owned by ShadowDeployment {sd.name}; "
            f"rename or delete it, or rename the ShadowDeployment.",
        )

    def _ensure_routing(self, sd: ShadowDeployment, service: ObservedService | None, switch: ServiceSwitch | None):
        if service is None or sd.identity.uid in service.owner_uids:
            return
        ours = service.original_routing is not None and service.original_routing.get("owner") == sd.name
        if switch is not None and not ours:
            switch_service(self.kube, sd.namespace, service, switch, sd.name)
        elif switch is None and ours:
            restore_service(self.kube, sd.namespace, service)

    def _remove_stale(self, sd: ShadowDeployment, desired: DesiredState) -> None:
        """After a spec change (e.g. istio -> builtin), delete children the new spec no longer has."""
        wanted = {(c["kind"], c["metadata"]["name"]) for c in desired.children}
        for kind, name in sorted(all_child_keys(sd) - wanted):
            live = self.kube.get(kind, sd.namespace, name)
            if live is None:
                continue
            if any(ref.get("uid") == sd.identity.uid for ref in live["metadata"].get("ownerReferences") or []):
                log.info("deleting %s %s/%s, no longer in the spec", kind, sd.namespace, name)
                self.kube.delete(kind, sd.namespace, name, live["metadata"]["uid"])

    # -- deletion -------------------------------------------------------------------

    def finalize(self, body: Mapping[str, Any]) -> None:
        """Leave the primary serving as before: restore a Service the builtin router took over.

        Owned children are removed by the garbage collector through their owner references;
        a referenced primary Deployment was never touched.
        """
        identity = identity_of(body)
        service_name = ((body.get("spec") or {}).get("service") or {}).get("name")
        if not service_name:
            return
        try:
            with self._lock(identity.uid):
                live = self.kube.get("Service", identity.namespace, service_name)
                service = ObservedService.from_body(live) if live else None
                if service and service.original_routing and service.original_routing.get("owner") == identity.name:
                    restore_service(self.kube, identity.namespace, service)
        finally:
            with self._locks_guard:
                self._locks.pop(identity.uid, None)
                self._untrusted_announced.pop(identity.uid, None)
                self.own_writes.forget(identity.namespace, identity.name)

    # -- status ---------------------------------------------------------------------

    def _write_invalid(self, body: Mapping[str, Any], invalid: SpecInvalid) -> None:
        identity = identity_of(body)
        previous = parse_status(body)
        problems = [Problem(reasons.INVALID_SPEC, problem) for problem in invalid.problems]
        self._patch_status_if_changed(
            body, previous, error_status(previous, identity.generation, problems, self.clock())
        )

    def _patch_status_if_changed(
        self, body: Mapping[str, Any], previous: ShadowDeploymentStatus, status: ShadowDeploymentStatus
    ) -> None:
        old, new = previous.to_wire(), status.to_wire()
        if old == new and body.get("status"):
            return
        identity = identity_of(body)
        key = ("ShadowDeployment/status", identity.namespace, identity.name)
        if self.own_writes.caught_up(key, dict(body)).get("status") == new:
            return  # written already; the watch has not shown it yet
        patch: dict[str, Any] = {field: None for field in old if field not in new}
        patch.update(new)
        written = self.kube.patch_status(identity.namespace, identity.name, patch)
        self.own_writes.remember(key, dict(body), {"metadata": (written or {}).get("metadata", {}), "status": new})
        self._announce(body, previous, status)
        self._announce_promotion(body, previous, status)
        self._notify(body, previous, status)

    def _announce_promotion(
        self, body: Mapping[str, Any], previous: ShadowDeploymentStatus, status: ShadowDeploymentStatus
    ) -> None:
        """An Event when a promotion is accepted, or a request refused for a new reason."""
        before = find_condition(previous.conditions, reasons.PROMOTED)
        after = find_condition(status.conditions, reasons.PROMOTED)
        if after is None or (before is not None and (before.status, before.message) == (after.status, after.message)):
            return
        if after.status == "True":
            ready_before = find_condition(previous.conditions, reasons.READY)
            ready_after = find_condition(status.conditions, reasons.READY)
            announced = (
                ready_after is not None
                and ready_after.reason == reasons.PROMOTED
                and (ready_before is None or ready_before.reason != reasons.PROMOTED)
            )
            if announced or (before is not None and before.status == "True"):
                return  # _announce posted it (same reason and message), or it was announced before
        self.kube.post_event(body, "Normal" if after.status == "True" else "Warning", after.reason, after.message or "")

    def _notify(self, body: Mapping[str, Any], previous: ShadowDeploymentStatus, status: ShadowDeploymentStatus):
        """Queue spec.notifications for a phase transition (controller/notifications.py); never waits on the network."""
        identity = identity_of(body)
        change = transition(identity.uid, previous, status)
        if change is None:
            return
        targets = targets_of(body.get("spec"))
        if targets:
            self.notifier.submit(
                change.key, body, targets, change.after, payload(identity.namespace, identity.name, change, status)
            )

    def _secret_value(self, namespace: str, name: str, key: str) -> str:
        """A notification URL from a Secret, read at send time (an opt-in grant: kube.OPT_IN_PERMISSIONS)."""
        return self.kube.secret_value(namespace, name, key)

    def _notification_failed(self, involved: Mapping[str, Any], message: str) -> None:
        self.kube.post_event(involved, "Warning", reasons.NOTIFICATION_FAILED, message)

    def _announce(self, body: Mapping[str, Any], previous: ShadowDeploymentStatus, status: ShadowDeploymentStatus):
        """One Event per change of the Ready condition's reason, and one per move of the client
        Service between router and primary: a history, never a storm."""
        routing_before = find_condition(previous.conditions, reasons.ROUTER_AVAILABLE)
        routing_after = find_condition(status.conditions, reasons.ROUTER_AVAILABLE)
        if (
            routing_after is not None
            and routing_after.reason in _ROUTING_EVENTS
            and (routing_before is None or routing_before.reason != routing_after.reason)
        ):
            self.kube.post_event(
                body, _ROUTING_EVENTS[routing_after.reason], routing_after.reason, routing_after.message or ""
            )
        before = find_condition(previous.conditions, reasons.READY)
        after = find_condition(status.conditions, reasons.READY)
        if after is None or (before is not None and (before.status, before.reason) == (after.status, after.reason)):
            return
        warning = status.phase in (Phase.ERROR, Phase.FAILED)
        self.kube.post_event(
            body, "Warning" if warning else "Normal", after.reason, after.message or status.phase.value
        )


# Routing moves worth an Event (RouterStarting is the normal wait before the first switch).
_ROUTING_EVENTS = {
    reasons.ROUTED_THROUGH_ROUTER: "Normal",
    reasons.ROUTER_UNAVAILABLE: "Warning",
    reasons.ROUTED_TO_PRIMARY: "Warning",
}
