"""Notifications: a JSON POST per verdict or phase transition, sent off the reconcile's path.

The pure parts (which transitions are sent, what a payload says) are functions; `Notifier` is a
background thread with a due-time queue that sends them, retrying with backoff, bounded. A
reconcile only enqueues (never waits on a network), and each (object uid, transition) is
enqueued once per operator process, so a resync or a repeated pass never sends twice. A
transition is detected by comparing the status stored before the pass with the one written, so
after a restart a transition that was already written is not sent again (at most once: a send
still queued when the operator stops is lost; docs/promotion.md).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .. import __version__
from ..api.v1alpha1 import Phase, ShadowDeploymentStatus
from ..api.v1alpha1.promotion import NotificationTarget
from ..contract import reasons
from ..contract.report import slice_label
from .conditions import find_condition

log = logging.getLogger(__name__)

NOTIFIED_PHASES = frozenset({Phase.FAILED, Phase.PASSED, Phase.INCONCLUSIVE, Phase.ERROR, Phase.PROMOTED})
MAX_CHECKS = 10
# Seconds to wait before each retry: 5 attempts over about two minutes.
RETRY_DELAYS: tuple[float, ...] = (2, 8, 30, 80)
POST_TIMEOUT_SECONDS = 10
MAX_PENDING = 1000
_REMEMBERED = 10000
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
_TARGETS = TypeAdapter(list[NotificationTarget])


# -- pure -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    before: str
    after: str
    # What makes this transition itself, for deduplication: a resync produces the same key.
    key: tuple[str, ...]


def transition(uid: str, previous: ShadowDeploymentStatus, status: ShadowDeploymentStatus) -> Transition | None:
    """The phase transition worth a notification from `previous` (stored) to `status` (written), if any."""
    if status.phase == previous.phase or status.phase not in NOTIFIED_PHASES:
        return None
    after = status.phase.value
    if status.phase == Phase.PROMOTED:
        detail = status.promotion.promoted_at if status.promotion else ""
    elif status.phase == Phase.ERROR:
        ready = find_condition(status.conditions, reasons.READY)
        detail = f"{ready.reason if ready else ''}@{status.observed_generation}"
    else:
        detail = status.verdict.evaluated_at if status.verdict else ""
    return Transition(previous.phase.value, after, (uid, after, status.candidate or "", detail))


def targets_of(spec: Mapping[str, Any] | None) -> list[NotificationTarget]:
    """spec.notifications, leniently: an invalid spec (phase Error) still notifies if this part is valid."""
    try:
        return _TARGETS.validate_python((spec or {}).get("notifications") or [], by_alias=True, by_name=False)
    except ValidationError:
        return []


def link_free(text: str) -> str:
    """Texts go to chat rooms: no URL (an internal host, a Prometheus address) leaves the cluster."""
    return _URL.sub("[link removed]", text)


def payload(namespace: str, name: str, change: Transition, status: ShadowDeploymentStatus) -> dict[str, Any]:
    """The JSON body: headline, failing checks (top 10), coverage, a summary, Slack's `text`."""
    verdict = status.verdict
    where = f"ShadowDeployment {namespace}/{name}"
    candidate = status.candidate or "?"
    if change.after == Phase.PROMOTED.value:
        headline = f"{where}: {candidate} promoted to primary"
    elif change.after == Phase.ERROR.value:
        ready = find_condition(status.conditions, reasons.READY)
        why = f"{ready.reason}: {ready.message}" if ready else "see its status"
        headline = f"{where}: Error ({why})"
    elif verdict is not None:
        headline = f"{where}: candidate {candidate} {verdict.result} ({verdict.reason})"
    else:
        headline = f"{where}: {change.after}"
    failing = [c for c in (verdict.checks if verdict else []) if c.passed is False][:MAX_CHECKS]
    checks = [
        {
            key: value
            for key, value in {
                "name": c.name,
                "segment": c.segment,
                "hour": c.hour,
                "source": c.source.value,
                "primary": c.primary,
                "candidate": c.candidate,
                "threshold": c.threshold,
                "message": link_free(c.message) if c.message else None,
            }.items()
            if value is not None
        }
        for c in failing
    ]
    lines = [headline]
    if verdict is not None and verdict.message and change.after != Phase.ERROR.value:
        lines.append(verdict.message)
    for c, check in zip(checks, failing, strict=True):
        label = slice_label(check.segment, check.hour, check.source)
        lines.append(f"• {c['name']} [{label}]: {c.get('message') or 'failed'}")
    if status.coverage is not None:
        lines.append(f"Coverage: {status.coverage.summary} of the business cycle, {status.coverage.samples} pairs.")
    if change.after == Phase.PROMOTED.value:
        promoted = find_condition(status.conditions, reasons.PROMOTED)
        if promoted is not None and promoted.message:
            lines.append(promoted.message)
    summary = link_free("\n".join(lines))
    body: dict[str, Any] = {
        "text": summary,  # Slack (and Mattermost, Teams' incoming webhooks) show this field
        "headline": link_free(headline),
        "summary": summary,
        "shadowDeployment": {"namespace": namespace, "name": name},
        "transition": {"from": change.before, "to": change.after},
        "phase": change.after,
        "candidate": status.candidate,
        "primary": status.primary,
        "failingChecks": checks,
        "coverage": status.coverage.to_wire() if status.coverage else None,
        "verdict": (
            {"result": verdict.result, "reason": verdict.reason, "evaluatedAt": verdict.evaluated_at}
            if verdict
            else None
        ),
    }
    return body


def wanted(targets: Sequence[NotificationTarget], phase: str) -> list[tuple[int, NotificationTarget]]:
    return [(index, target) for index, target in enumerate(targets) if phase in target.on]


# -- sending ----------------------------------------------------------------------------------


class SendError(Exception):
    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirected POST would silently turn into a GET: count it as an answer (failure)


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(url: str, body: Mapping[str, Any], timeout: float = POST_TIMEOUT_SECONDS) -> None:
    """POST `body`; raise SendError (retryable for 5xx, 408, 429 and network errors)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"shadow-operator/{__version__}"},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as error:
        retryable = error.code >= 500 or error.code in (408, 429)
        raise SendError(f"answered {error.code}", retryable) from None
    except (urllib.error.URLError, OSError) as error:
        raise SendError(f"unreachable: {getattr(error, 'reason', error)}", True) from None


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    namespace: str = field(compare=False)
    involved: dict[str, Any] = field(compare=False)
    target_index: int = field(compare=False)
    target: NotificationTarget = field(compare=False)
    body: dict[str, Any] = field(compare=False)
    attempt: int = field(default=0, compare=False)


ResolveSecret = Callable[[str, str, str], str]
OnGiveUp = Callable[[dict[str, Any], str], None]


class Notifier:
    """One background thread sending queued notifications; `submit` never blocks."""

    def __init__(
        self,
        resolve_secret: ResolveSecret,
        on_give_up: OnGiveUp | None = None,
        post: Callable[[str, Mapping[str, Any]], None] = post_json,
        delays: Sequence[float] = RETRY_DELAYS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._resolve_secret = resolve_secret
        self._on_give_up = on_give_up
        self._post = post
        self._delays = tuple(delays)
        self._clock = clock
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._sent: OrderedDict[tuple[str, ...], None] = OrderedDict()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = 0
        self._closed = False

    def submit(
        self, key: tuple[str, ...], involved: Mapping[str, Any], targets: Sequence[NotificationTarget], phase: str,
        body: Mapping[str, Any],
    ) -> int:  # fmt: skip
        """Queue one POST per target that wants `phase`, once per `key`; returns how many were queued."""
        chosen = wanted(targets, phase)
        if not chosen:
            return 0
        metadata = involved.get("metadata") or {}
        reference = {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "metadata": {k: metadata.get(k) for k in ("name", "namespace", "uid")},
        }
        with self._cv:
            if key in self._sent:
                return 0
            self._sent[key] = None
            while len(self._sent) > _REMEMBERED:
                self._sent.popitem(last=False)
            if len(self._heap) + len(chosen) > MAX_PENDING:
                log.warning("notification queue full: dropping %s for %s", phase, key)
                return 0
            now = self._clock()
            for index, target in chosen:
                job = _Job(now, next(self._seq), metadata.get("namespace", ""), reference, index, target, dict(body))
                heapq.heappush(self._heap, job)
            self._ensure_thread()
            self._cv.notify_all()
        return len(chosen)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (not self._heap or self._heap[0].due > self._clock()):
                    self._cv.wait(None if not self._heap else max(0.0, self._heap[0].due - self._clock()))
                if self._closed:
                    return
                job = heapq.heappop(self._heap)
                self._busy += 1
            try:
                self._attempt(job)
            finally:
                with self._cv:
                    self._busy -= 1
                    self._cv.notify_all()

    def _attempt(self, job: _Job) -> None:
        where = f"spec.notifications[{job.target_index}]"
        name = job.involved["metadata"].get("name")
        try:
            url = self._url(job)
            self._post(url, job.body)
        except SendError as error:
            job.attempt += 1
            if error.retryable and job.attempt <= len(self._delays):
                delay = self._delays[job.attempt - 1]
                log.info("%s/%s %s: %s; retrying in %gs", job.namespace, name, where, error, delay)
                with self._cv:
                    job.due = self._clock() + delay
                    heapq.heappush(self._heap, job)
                return
            message = f"{where} ({job.body.get('phase')}): {error}; gave up after {job.attempt} attempt(s)"
            log.warning("%s/%s: notification failed: %s", job.namespace, name, message)
            if self._on_give_up is not None:
                self._on_give_up(job.involved, message)
            return
        log.info("%s/%s: sent %s to %s", job.namespace, name, job.body.get("phase"), where)

    def _url(self, job: _Job) -> str:
        if job.target.url is not None:
            return job.target.url
        ref = job.target.url_from.secret_key_ref  # type: ignore[union-attr]
        from ..kube.client import KubeError

        try:
            url = self._resolve_secret(job.namespace, ref.name, ref.key)
        except KubeError as error:
            if error.status == 403:
                raise SendError(
                    f"the operator may not read Secret {ref.name}: grant it get on that Secret in namespace "
                    f"{job.namespace} (docs/promotion.md)",
                    False,
                ) from None
            retryable = error.status in (0, 409, 429) or error.status >= 500
            raise SendError(f"cannot read the URL from Secret {ref.name}: {error}", retryable) from None
        if not re.match(r"^https?://", url):
            raise SendError(f"key {ref.key} of Secret {ref.name} is not an http(s) URL", False)
        return url

    def wait_idle(self, timeout: float) -> bool:
        """For tests: wait until nothing is queued or being sent."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._heap or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(min(remaining, 0.05))
        return True

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
