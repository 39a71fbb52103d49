"""The incremental analysis state in a cluster: the ConfigMap `<name>-analysis-state`, which only the job writes.

The state decides the verdict, so whoever can write it could forge one. Model Pods reach the
collector (its NetworkPolicy admits the object's label), so the state cannot live there. The
operator creates this ConfigMap empty, controlled by the ShadowDeployment, like the report's;
the job's Role may get, update and patch it by name and create none (kube/rbac.py). The job
trusts a state only in that ConfigMap, controlled by this object's uid; anything else is
refused and the state rebuilt from every record, said in the report.

Kept gzip-compressed in `binaryData` (`state.json.gz`; `kubectl get configmap <name>-analysis-state
-o jsonpath='{.binaryData.state\\.json\\.gz}' | base64 -d | gunzip` reads it). A ConfigMap holds
1 MiB of data; a state compressing past `MAX_STATE_BYTES` is not kept: the ConfigMap is emptied,
so every run recomputes from every record the collector retains, and the report says so.
Measured (docs/verdict.md): a week of 3M pairs on 525 slices is 2.3 MB of JSON, 452 KB compressed.

Every write carries the resourceVersion the state was read at: a second run that read the same
state loses with 409 Conflict and keeps nothing (its report stands; the winner's state is kept).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from typing import Any

from ..api.v1alpha1 import KIND
from ..contract.analysis_state import STATE_KEY, state_name
from ..contract.report import DataProblem
from ..contract.resource import ShadowDeployment
from ..kube.client import Kube, KubeError
from .incremental_state import (
    FINGERPRINT_CHANGED,
    STATE_NOT_SAVED,
    STATE_TOO_LARGE,
    State,
    decode,
    encode,
    rebuilt_notice,
    state_notice,
)

# Under the 1 MiB a ConfigMap's data may hold (counted decoded), with room for the API server's
# own limits on the request (base64 makes the JSON body 4/3 of it; etcd takes 1.5 MiB).
MAX_STATE_BYTES = 900 * 1024


def state_owner_problem(body: dict[str, Any] | None, namespace: str, name: str, uid: str) -> str:
    """Why the ConfigMap `body` must not hold this object's state ("" when it may)."""
    where = f"ConfigMap {namespace}/{state_name(name)}"
    if body is None:
        return (
            f"{where} does not exist: the operator creates it with the ShadowDeployment (the job may not "
            "create ConfigMaps); is the operator running and the object reconciled?"
        )
    controllers = [ref for ref in (body.get("metadata") or {}).get("ownerReferences") or [] if ref.get("controller")]
    if not any(ref.get("uid") == uid and ref.get("kind") == KIND for ref in controllers):
        return (
            f"{where} is not controlled by ShadowDeployment {name} (uid {uid}), so its state is not trusted: "
            "delete the ConfigMap and the operator recreates it"
        )
    return ""


class ConfigMapStore:
    """A StateStore (incremental_state.py) in the ConfigMap the operator made for this object's state."""

    def __init__(self, kube: Kube, sd: ShadowDeployment, max_bytes: int = MAX_STATE_BYTES) -> None:
        self.kube, self.sd, self.max_bytes = kube, sd, max_bytes
        self.name = state_name(sd.name)
        self.where = f"ConfigMap {sd.namespace}/{self.name}"
        self.body: dict[str, Any] | None = None  # as read: its uid and resourceVersion guard the write

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        # No lock to take: the write's resourceVersion precondition makes a concurrent run lose cleanly.
        yield

    def read(self, expected: str) -> tuple[State | None, str, list[DataProblem]]:
        try:
            self.body = self.kube.get("ConfigMap", self.sd.namespace, self.name, cached=False)
        except KubeError as error:
            why = f"{self.where} cannot be read ({error})"
            return None, why, [rebuilt_notice(why)]
        if problem := state_owner_problem(self.body, self.sd.namespace, self.sd.name, self.sd.identity.uid):
            self.body = None  # never written either
            return None, problem, [rebuilt_notice(problem)]
        encoded = ((self.body or {}).get("binaryData") or {}).get(STATE_KEY)
        if not encoded:
            return None, "no state yet", []
        if not isinstance(encoded, str) or len(encoded) > 4 * (self.max_bytes // 3 + 1):
            why = f"the state in {self.where} is larger than the {self.max_bytes // 1024} KiB a state may be"
            return None, why, [rebuilt_notice(why)]
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as error:
            why = f"the state in {self.where} is not base64 ({error})"
            return None, why, [rebuilt_notice(why)]
        state, why = decode(raw, expected, self.where)
        notices = [] if state is not None or why == FINGERPRINT_CHANGED else [rebuilt_notice(why)]
        return state, why, notices

    def write(self, state: State) -> list[DataProblem]:
        if self.body is None:
            return [_not_saved(f"{self.where} is not this object's (see the rebuilt-state notice)")]
        compressed = encode(state, compress=True)
        notices = []
        if len(compressed) > self.max_bytes:
            notices.append(
                state_notice(
                    STATE_TOO_LARGE,
                    f"The incremental analysis state is {len(compressed) // 1024} KiB compressed, over the "
                    f"{self.max_bytes // 1024} KiB {self.where} may hold, so it is not kept: every run folds every "
                    "record the collector retains (a full recomputation; records retention deleted no longer count). "
                    "Fewer segments or segment buckets (spec.recording.segments) make it smaller.",
                )
            )
            value = None
        else:
            value = base64.b64encode(compressed).decode()
        operations = [
            {"op": "test", "path": "/metadata/uid", "value": self.body["metadata"]["uid"]},
            # Set to what was read: the API server refuses the write (409) when another run wrote since.
            {"op": "replace", "path": "/metadata/resourceVersion", "value": self.body["metadata"]["resourceVersion"]},
            {"op": "add", "path": "/binaryData", "value": {STATE_KEY: value} if value else {}},
        ]
        try:
            self.body = self.kube.json_patch("ConfigMap", self.sd.namespace, self.name, operations)
        except KubeError as error:
            if error.status == 409:
                return [*notices, _not_saved(f"another analysis run wrote {self.where} since this one read it")]
            return [*notices, _not_saved(f"{self.where} cannot be written ({error})")]
        return notices


def _not_saved(why: str) -> DataProblem:
    return state_notice(
        STATE_NOT_SAVED,
        f"This run's incremental analysis state was not kept: {why}. The verdict stands; the next run "
        "folds the same records again from the state kept before.",
    )
