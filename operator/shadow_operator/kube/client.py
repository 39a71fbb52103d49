"""The one module that talks to the Kubernetes API.

Plain REST over the official client's connection and auth: get, server-side apply, delete,
JSON patch, status merge patch, events. Every call it can make is listed in permissions.PERMISSIONS,
from which the operator's ClusterRole is generated (see kube/rbac.py), so the role grants what
the code uses and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ..api.v1alpha1 import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

FIELD_MANAGER = "shadow-operator"
_TIMEOUT = (5, 30)  # connect, read: a hung API server must not hang a reconcile forever


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    def all_namespaces_path(self) -> str:
        """Every object of the kind, cluster-wide (a list or a watch)."""
        root = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        return f"{root}/{self.plural}"

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        """The object's path; `namespace` is ignored for a cluster-scoped resource."""
        root = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        path = f"{root}/namespaces/{namespace}/{self.plural}" if self.namespaced else f"{root}/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


RESOURCES: dict[str, Resource] = {
    "Deployment": Resource("apps", "v1", "deployments"),
    "Service": Resource("", "v1", "services"),
    "ConfigMap": Resource("", "v1", "configmaps"),
    "CronJob": Resource("batch", "v1", "cronjobs"),
    "ServiceAccount": Resource("", "v1", "serviceaccounts"),
    "Role": Resource("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": Resource("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "VirtualService": Resource("networking.istio.io", "v1beta1", "virtualservices"),
    "DestinationRule": Resource("networking.istio.io", "v1beta1", "destinationrules"),
    "NetworkPolicy": Resource("networking.k8s.io", "v1", "networkpolicies"),
    "ShadowDeployment": Resource(GROUP, VERSION, PLURAL),
    "Event": Resource("", "v1", "events"),
    # Read only for spec.notifications[].urlFrom, and only where granted (OPT_IN_PERMISSIONS).
    "Secret": Resource("", "v1", "secrets"),
    # The admission webhook's (controller/admission.py, controller/webhook.py); both cluster-scoped.
    "SubjectAccessReview": Resource("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False),
    "ValidatingWebhookConfiguration": Resource(
        "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", namespaced=False
    ),
}


def pointer_segment(key: str) -> str:
    """A key as one segment of a JSON-patch path (RFC 6901: `~` and `/` escaped), e.g. an annotation's."""
    return key.replace("~", "~0").replace("/", "~1")


class TransientError(Exception):
    """The API server could not answer now (5xx, timeout, conflict): retry with backoff."""


class KubeError(Exception):
    """An API error with the server's own message, e.g. a schema violation from Istio's CRD."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# Objects as their metadata alone (meta.k8s.io/v1 PartialObjectMetadata, served since 1.15, CRDs
# included): what controller-runtime's metadata-only informers ask for.
_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def _error(exc: ApiException) -> KubeError:
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except (ValueError, AttributeError):
        message = str(exc.reason)
    return KubeError(int(exc.status or 0), str(message))


class Kube:
    """A thread-safe handle on one cluster (handlers run in kopf's thread pool)."""

    def __init__(self, api_client: kubernetes.client.ApiClient, cache: Any = None):
        self._client = api_client
        self._versions: dict[str, str] = {}
        self._lock = threading.Lock()
        # cache.WatchCache: reads answered from the watches (controller/handlers.py); None: every read is a GET.
        self.cache = cache

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster credentials when running as a Pod, else the current KUBECONFIG."""
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=configuration)
        return cls(kubernetes.client.ApiClient(configuration))

    # -- plumbing -----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: dict | None = None,
        accept: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        _, url, headers, body, _ = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._client.call_api(method, url, header_params=headers, body=body, _request_timeout=_TIMEOUT)
            response.read()
        except ApiException as exc:
            raise _error(exc) from None
        if response.status >= 400:
            raise _error(ApiException(http_resp=response))
        data = response.data
        return json.loads(data) if data else {}

    def _resource(self, kind: str) -> Resource:
        resource = RESOURCES[kind]
        if kind == "CronJob":
            # batch/v1 CronJob is served from Kubernetes 1.21; older servers only have v1beta1.
            return Resource(resource.group, self._served_version(resource), resource.plural)
        return resource

    def _served_version(self, resource: Resource) -> str:
        """The version serving `resource`, from API discovery; only an answer is remembered.

        A group version the server does not know (404) is an answer too: the older version. Any
        other failure (a 503 while the API server starts, a timeout) is raised and not cached, so
        the next call asks again instead of pinning the fallback until the operator restarts.
        """
        with self._lock:
            if resource.plural not in self._versions:
                try:
                    listing = self._request("GET", f"/apis/{resource.group}/{resource.version}")
                    resources = listing.get("resources") if isinstance(listing, dict) else None
                    names = {r.get("name") for r in resources or [] if isinstance(r, dict)}
                except KubeError as error:
                    if error.status != 404:
                        raise KubeError(
                            error.status,
                            f"cannot discover which version of {resource.plural}.{resource.group} the API server "
                            f"serves (will ask again): {error}",
                        ) from None
                    names = set()
                self._versions[resource.plural] = resource.version if resource.plural in names else "v1beta1"
            return self._versions[resource.plural]

    # -- reads --------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str, cached: bool = True) -> dict[str, Any] | None:
        """The live object, or None when it (or its whole API, e.g. Istio's CRDs) is absent.

        From the watches when the kind is cached (kube/cache.py): no request at all. `cached=False`
        asks the API server, for a read that must see the latest write.
        """
        if cached and self.cache is not None:
            hit, body = self.cache.lookup(kind, namespace, name)
            if hit:
                return body
        try:
            return self._request("GET", self._resource(kind).path(namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def holder(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object holding a name the label-selected watch of `kind` has not seen (someone else's,
        by name and owners), or None: from the cache's metadata watch once it has listed, else a GET."""
        if self.cache is not None:
            listed, body = self.cache.held(kind, namespace, name)
            if listed:
                return body
        return self.get(kind, namespace, name, cached=False)

    def list_all(
        self, kind: str, label_selector: str | None = None, metadata_only: bool = False
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of `kind` in every namespace (optionally by label), and the list's resourceVersion.
        `metadata_only`: each object's metadata alone (PartialObjectMetadata), whatever its kind."""
        query = {"labelSelector": label_selector} if label_selector else None
        accept = _METADATA_LIST if metadata_only else "application/json"
        listed = self._request("GET", self._resource(kind).all_namespaces_path(), query=query, accept=accept)
        items = [{"kind": kind, **item} for item in listed.get("items") or []]  # a list's items name no kind
        return items, (listed.get("metadata") or {}).get("resourceVersion", "")

    def watch_all(
        self,
        kind: str,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 240,
        metadata_only: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """The watch events of `kind` in every namespace after `resource_version`, until the server
        ends the watch (`timeout_seconds`) or an ERROR event (e.g. 410 Gone) says to list again."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds)}  # fmt: skip
        if label_selector:
            query["labelSelector"] = label_selector
        _, url, headers, _, _ = self._client.param_serialize(
            method="GET",
            resource_path=self._resource(kind).all_namespaces_path(),
            query_params=list(query.items()),
            header_params={"Accept": _METADATA if metadata_only else "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            # Read timeout past the server's own: a quiet watch sends nothing until it ends.
            response = self._client.call_api(
                "GET", url, header_params=headers, _request_timeout=(5, timeout_seconds + 60)
            )
        except ApiException as exc:
            raise _error(exc) from None
        raw = response.response
        try:
            if response.status >= 400:
                response.read()  # the Status body names the reason (e.g. "cannot watch resource"); unread, only "Forbidden"
                raise _error(ApiException(http_resp=response))
            pending = b""
            for chunk in raw.stream(64 * 1024, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            raw.release_conn()

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (notifications' urlFrom). Needs an opt-in grant: see OPT_IN_PERMISSIONS."""
        secret = self._request("GET", RESOURCES["Secret"].path(namespace, name))
        encoded = (secret.get("data") or {}).get(key)
        if encoded is None:
            raise KubeError(404, f"Secret {namespace}/{name} has no key {key!r}")
        try:
            return base64.b64decode(encoded, validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise KubeError(422, f"key {key!r} of Secret {namespace}/{name} is not UTF-8 text") from None

    # -- writes -------------------------------------------------------------------

    def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator's field manager, taking over conflicting fields."""
        kind = body["kind"]
        resource = self._resource(kind)
        metadata = body["metadata"]
        payload = dict(body)
        if resource.version != RESOURCES[kind].version:
            payload["apiVersion"] = f"{resource.group}/{resource.version}"
        try:
            return self._request(
                "PATCH",
                resource.path(metadata["namespace"], metadata["name"]),
                body=payload,
                content_type="application/apply-patch+yaml",
                query={"fieldManager": FIELD_MANAGER, "force": "true"},
            )
        except KubeError as error:
            if error.status == 404:
                group = resource.group or "core"
                raise KubeError(
                    404,
                    f"the API server does not serve {resource.plural}.{group}/{resource.version}"
                    + (
                        ": install Istio's CRDs or set spec.traffic.router: builtin"
                        if group == "networking.istio.io"
                        else ""
                    ),
                ) from None
            raise

    def json_patch(self, kind: str, namespace: str, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return self._request(
            "PATCH",
            self._resource(kind).path(namespace, name),
            body=operations,
            content_type="application/json-patch+json",
        )

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete exactly the object seen (uid precondition), letting its dependents be collected."""
        body = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        try:
            self._request("DELETE", self._resource(kind).path(namespace, name), body=body)
        except KubeError as error:
            if error.status not in (404, 409):
                raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self._request(
            "PATCH",
            RESOURCES["ShadowDeployment"].path(namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def may(self, user: Mapping[str, Any], resource_attributes: Mapping[str, str]) -> bool:
        """Whether `user` (an admission request's userInfo) may do it: a SubjectAccessReview."""
        spec: dict[str, Any] = {
            "user": user.get("username", ""),
            "groups": list(user.get("groups") or []),
            "resourceAttributes": dict(resource_attributes),
        }
        if user.get("uid"):
            spec["uid"] = user["uid"]
        if user.get("extra"):
            spec["extra"] = dict(user["extra"])
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        answer = self._request("POST", RESOURCES["SubjectAccessReview"].path(""), body=review)
        status = answer.get("status") or {}
        return bool(status.get("allowed")) and not status.get("denied")

    def set_webhook_ca_bundle(self, name: str, ca_bundle: str) -> bool:
        """Put `ca_bundle` (base64 PEM) into every webhook of configuration `name`; False when it is absent."""
        try:
            current = self._request("GET", RESOURCES["ValidatingWebhookConfiguration"].path("", name))
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        operations = [
            {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": ca_bundle}
            for i, _ in enumerate(current.get("webhooks") or [])
        ]
        # resourceVersion as a precondition: an administrator's concurrent edit is not overwritten.
        test = {"op": "test", "path": "/metadata/resourceVersion", "value": current["metadata"]["resourceVersion"]}
        if operations:
            self._request(
                "PATCH",
                RESOURCES["ValidatingWebhookConfiguration"].path("", name),
                body=[test, *operations],
                content_type="application/json-patch+json",
            )
        return True

    def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Best effort: an event that cannot be posted is logged, never fatal to a reconcile."""
        metadata = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:12]}", "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": FIELD_MANAGER,
        }
        try:
            self._request("POST", RESOURCES["Event"].path(metadata["namespace"]), body=event)
        except KubeError as error:
            log.warning("could not post event %s on %s: %s", reason, metadata["name"], error)
