"""The comparison job: a CronJob running `shadowctl analyze` from the operator's image."""

from __future__ import annotations

from typing import Any

from ..api.durations import parse_duration
from ..resource import ShadowDeployment
from .naming import ANALYSIS, metadata


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


def comparison_cronjob(sd: ShadowDeployment, image: str) -> dict[str, Any]:
    container = {
        "name": "analyze",
        "image": image,
        "args": ["analyze", "--namespace", sd.namespace, "--name", sd.name, "--in-cluster"],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
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
                        "spec": {"restartPolicy": "Never", "containers": [container]},
                    },
                }
            },
        },
    }
