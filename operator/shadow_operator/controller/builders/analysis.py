"""The comparison job: a CronJob running `shadowctl analyze` from the operator's image."""

from __future__ import annotations

from typing import Any

from ...api.durations import parse_duration
from ...contract.analysis_state import STATE_SUFFIX, state_name
from ...contract.naming import ANALYSIS, child_name, collector_url, metadata
from ...contract.report import REPORT_SUFFIX, report_name
from ...contract.resource import ShadowDeployment
from ...kube.rbac import RBAC_API_VERSION, analyzer_rules
from .collector import HEADROOM_BYTES, mebibytes
from .security import container_security, pod_security

TMP = "/tmp"


def cron_schedule(interval: str) -> str:
    """`10m` -> `*/10 * * * *`; ValueError says which intervals a cron schedule can express."""
    seconds = int(parse_duration(interval).total_seconds())
    minutes, rest = divmod(seconds, 60)
    if rest == 0 and 1 <= minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours, rest = divmod(seconds, 3600)
    if rest == 0 and 1 <= hours <= 24 and 24 % hours == 0:
        return "0 * * * *" if hours == 1 else ("0 0 * * *" if hours == 24 else f"0 */{hours} * * *")
    raise ValueError(
        f"analysis.interval {interval!r} cannot be run on a schedule: use whole minutes that divide "
        "an hour (1m, 2m, 5m, 10m, 15m, 30m) or whole hours that divide a day (1h, 2h, 3h, 6h, 12h, 24h)"
    )


def analyzer_service_account(sd: ShadowDeployment) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(sd, ANALYSIS)}


def analyzer_role(sd: ShadowDeployment) -> dict[str, Any]:
    """What this object's job may do, and nothing more: get its own ShadowDeployment, write its own
    report and its own analysis state.

    resourceNames on every rule: the job of another ShadowDeployment in the namespace (or anyone
    holding its token) can neither read this object nor publish a verdict for it.
    """
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "Role",
        "metadata": metadata(sd, ANALYSIS),
        "rules": analyzer_rules(sd.name),
    }


def analyzer_role_binding(sd: ShadowDeployment) -> dict[str, Any]:
    """Grants the job's ServiceAccount its own Role (analyzer_role); roleRef is immutable once created."""
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "RoleBinding",
        "metadata": metadata(sd, ANALYSIS),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": child_name(sd, ANALYSIS)},
        "subjects": [{"kind": "ServiceAccount", "name": child_name(sd, ANALYSIS), "namespace": sd.namespace}],
    }


def report_configmap(sd: ShadowDeployment) -> dict[str, Any]:
    """`<name>-report`, created empty by the operator and owned by the ShadowDeployment (controller).

    The job only writes its data (it may not create ConfigMaps); the operator trusts a report
    only in this object, owned by this ShadowDeployment's uid (contract.report.trusted_report). No
    `data` here: the job's report is the job's field, never overwritten by the operator's apply.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(sd, REPORT_SUFFIX, name=report_name(sd.name)),
    }


def state_configmap(sd: ShadowDeployment) -> dict[str, Any]:
    """`<name>-analysis-state`, created empty by the operator and owned by the ShadowDeployment (controller).

    The comparison job's incremental state (job/state_configmap.py): like the report's ConfigMap,
    only this object's job may write it (analyzer_role) and none may create it, and the job trusts
    a state only here. No `data` or `binaryData`: the state is the job's field.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(sd, STATE_SUFFIX, name=state_name(sd.name)),
    }


def comparison_cronjob(sd: ShadowDeployment, image: str) -> dict[str, Any]:
    # The collector keeps at most retention.maxBytes (plus one append); one run reads at most a
    # little above (a rebuild reads everything), into an emptyDir at /tmp, the root filesystem
    # staying read-only. Incremental: each run reads only the bytes new since the last
    # (--cluster-state); `shadowctl analyze ... --rebuild-state` forces a full recomputation.
    download_cap = sd.spec.recording.sink.retention.max_bytes + HEADROOM_BYTES
    args = ["analyze", "--namespace", sd.namespace, "--name", sd.name, "--publish",
            "--records-from", collector_url(sd), "--records-max-bytes", str(download_cap),
            "--cluster-state"]  # fmt: skip
    container: dict[str, Any] = {
        "name": "analyze",
        "image": image,
        "args": args,
        "env": [{"name": "TMPDIR", "value": TMP}],
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": TMP}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": child_name(sd, ANALYSIS),
        # The one generated Pod that talks to the API server: it reads its ShadowDeployment and
        # writes its report, as its own ServiceAccount (analyzer_role).
        "automountServiceAccountToken": True,
        "securityContext": pod_security(),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": mebibytes(download_cap + HEADROOM_BYTES)}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(sd, ANALYSIS),
        "spec": {
            "schedule": cron_schedule(sd.spec.analysis.interval),
            # A slow run must not pile up behind itself: the next tick is skipped instead.
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 1,
                    "template": {
                        "metadata": {"labels": metadata(sd, ANALYSIS)["labels"]},
                        "spec": pod_spec,
                    },
                }
            },
        },
    }
