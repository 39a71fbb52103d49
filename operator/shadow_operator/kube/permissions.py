"""Every API call the operator and the comparison job may make, and why: the source of the
generated ClusterRole (rbac.py) and of each job's Role. Pure data, no client."""

from __future__ import annotations

from dataclasses import dataclass

from ..api.v1alpha1 import GROUP, PLURAL


@dataclass(frozen=True)
class Permission:
    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    resource_names: tuple[str, ...] = ()


# Server-side apply of an object that does not exist yet creates it, which RBAC checks as
# `create`; reading before writing is what keeps an idle reconcile free of writes.
_CHILD_VERBS = ("get", "create", "patch", "delete")
# list and watch: kopf's watches behind the read cache (cache.py), one per kind a reconcile reads.
_WATCHED = ("list", "watch")
OPERATOR_ROLE = "shadow-operator"
# The ValidatingWebhookConfiguration the manifests install (webhook.py fills in its caBundle).
WEBHOOK_CONFIGURATION = "shadow-operator"

# What the comparison job (`shadowctl analyze --publish`) does. Each object's job gets these in
# a Role of its own, narrowed by resourceNames to its ShadowDeployment and its report and state
# ConfigMaps (rbac.analyzer_rules): one object's job can neither read another object nor write its
# verdict, nor the state the verdict is computed from.
ANALYZER_PERMISSIONS: tuple[Permission, ...] = (
    Permission(GROUP, (PLURAL,), ("get",), "read the ShadowDeployment it judges"),
    Permission(
        "",
        ("configmaps",),
        ("get", "update", "patch"),
        "write the report and the analysis state into the ConfigMaps <name>-report and <name>-analysis-state "
        "the operator created",
    ),
)

PERMISSIONS: tuple[Permission, ...] = (
    Permission(GROUP, (PLURAL,), ("get", "list", "watch", "patch"), "watch, finalizer and kopf's bookkeeping"),
    Permission(GROUP, (f"{PLURAL}/status",), ("patch",), "status is the operator's only output"),
    Permission(GROUP, (f"{PLURAL}/finalizers",), ("update",), "owner references that block deletion"),
    Permission(
        "apps",
        ("deployments",),
        (*_CHILD_VERBS, "list", "watch"),
        "primary, candidate and router; watched so availability changes reach status and routing at once",
    ),
    Permission("", ("services",), (*_CHILD_VERBS, *_WATCHED), "per-role Services and the builtin router's switch"),
    # RBAC refuses to grant what the granter does not hold (the escalation check): `update` is
    # here only because each object's analyzer Role grants it on the report ConfigMap.
    Permission(
        "",
        ("configmaps",),
        (*_CHILD_VERBS, "update", *_WATCHED),
        "router configuration and the pre-created report and analysis-state ConfigMaps",
    ),
    Permission("batch", ("cronjobs",), (*_CHILD_VERBS, *_WATCHED), "the comparison job"),
    Permission(
        "networking.istio.io", ("virtualservices", "destinationrules"), (*_CHILD_VERBS, *_WATCHED), "the mirror route"
    ),
    Permission(
        "networking.k8s.io",
        ("networkpolicies",),
        (*_CHILD_VERBS, *_WATCHED),
        "only the object's Pods reach its collector",
    ),
    Permission("", ("serviceaccounts",), (*_CHILD_VERBS, *_WATCHED), "the comparison job's identity"),
    # Creating the Role needs every permission it grants (held above); binding it needs the same.
    Permission(
        "rbac.authorization.k8s.io", ("roles",), (*_CHILD_VERBS, *_WATCHED), "the comparison job's per-object Role"
    ),
    Permission(
        "rbac.authorization.k8s.io", ("rolebindings",), (*_CHILD_VERBS, *_WATCHED), "binds the job to its own Role"
    ),
    Permission("", ("events",), ("create",), "events on ShadowDeployments"),
    # kopf watches CRDs and namespaces to notice resources and namespaces appearing at run time.
    Permission("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch"), "kopf's discovery"),
    Permission("", ("namespaces",), ("list", "watch"), "kopf's namespace observation"),
    # The admission webhook (admission.py): may the requesting user do what their spec asks?
    Permission("authorization.k8s.io", ("subjectaccessreviews",), ("create",), "admission: the author's own access"),
    # Only the one configuration an administrator installed, and only to fill in the CA of the
    # operator's self-signed serving certificate (webhook.py).
    Permission(
        "admissionregistration.k8s.io",
        ("validatingwebhookconfigurations",),
        ("get", "patch"),
        "the webhook's caBundle",
        resource_names=(WEBHOOK_CONFIGURATION,),
    ),
)


# Deliberately NOT in the ClusterRole: reading Secrets cluster-wide would let the operator (and
# anyone who can make it act) read every credential in the cluster, ServiceAccount tokens
# included, and resourceNames cannot name Secrets that do not exist yet. Whoever owns a Secret
# holding a notification URL grants the operator `get` on that one Secret, in its namespace, with
# a Role and RoleBinding of their own (docs/promotion.md); without it the notification fails
# with an Event saying so. Nothing else the operator does needs it.
OPT_IN_PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        "",
        ("secrets",),
        ("get",),
        "spec.notifications[].urlFrom: granted per namespace and per Secret by its owner, never cluster-wide",
    ),
)
