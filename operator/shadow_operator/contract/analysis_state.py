"""The ConfigMap holding the comparison job's incremental analysis state: its name and key.

The operator creates it empty, controlled by the ShadowDeployment (controller/builders/analysis.py);
only the object's own job may write it (kube/rbac.py); the job trusts a state only there
(job/state_configmap.py). docs/verdict.md, "Incremental analysis", says why.
"""

from __future__ import annotations

STATE_SUFFIX = "analysis-state"
STATE_KEY = "state.json.gz"  # in binaryData: the state's JSON, gzip-compressed


def state_name(shadow_name: str) -> str:
    return f"{shadow_name}-{STATE_SUFFIX}"
