"""The comparison job as the CronJob runs it, incrementally (issue 13, item 3): a real collector process,
a real API server, `shadowctl analyze --records-from URL --cluster-state` as the job's ServiceAccount,
over runs with records arriving in between.

* The second run reads from the collector only the bytes that arrived since the first (the
  collector's own counter, shadow_collector_served_bytes_total, says so).
* Its verdict and counts equal a full recomputation (`--records-from` without a state).
* The state is in the ConfigMap <name>-analysis-state the operator made: the job's identity may
  write it, another object's job may not (the API server refuses), and the state survives the
  records (they could be deleted by retention).
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from ..unit.records_factory import pair, side
from .conftest import after_rollout_settled, get_json, mark_available, shadow_deployment, wait_phase
from .harness import apply_yaml, wait_for
from .test_analysis_job import shadowctl
from .test_collector import Collector

pytestmark = pytest.mark.cluster

RECORDING = {"predictionPath": "$.prediction", "segments": [], "features": []}
ANALYSIS = {"interval": "10m", "minDuration": "1h", "minSamples": 100, "minSamplesPerSegment": 50,
            "thresholds": {"maxErrorRate": 0.01}}  # fmt: skip
FILE = "records-router-0-ab12cd-0.jsonl"


def served_bytes(collector: Collector) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{collector.admin_port}/metrics", timeout=5).read().decode()
    found = re.search(r"^shadow_collector_served_bytes_total (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0  # a counter never incremented is not rendered


def ship(collector: Collector, shadow: str, prefix: str, n: int, received: float, offset: int) -> tuple[int, int]:
    """POST n pair records (every 5th a candidate error) as a router would; (the new offset, bytes sent)."""
    failing = side("http_5xx", error="KeyError: 'purchase_history'")
    lines = [
        pair(f"{prefix}-{i}", ts=received - 600 + i, candidate=failing if i % 5 == 0 else None, shadow=shadow)
        | {"received": received + i / 1000}
        for i in range(n)
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    request = urllib.request.Request(
        f"{collector.url}/v1/records/router-0/{FILE}?offset={offset}", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["size"], len(body)


def test_the_cronjob_reads_only_new_bytes_and_keeps_its_state_where_only_it_may_write(
    cluster, operator, apps, namespace, tmp_path
):
    apply_yaml(
        cluster,
        [
            shadow_deployment("recommender", recording=RECORDING, analysis=ANALYSIS),
            shadow_deployment("other", service={"name": "other", "port": 80}, recording=RECORDING, analysis=ANALYSIS),
        ],
        namespace,
    )
    for deployment in ("recommender-primary", "recommender-candidate"):
        mark_available(apps, namespace, deployment)
    wait_phase(cluster, namespace, "recommender", "Shadowing")
    received = after_rollout_settled()
    uid = get_json(cluster, namespace, "shadowdeployment", "recommender")["metadata"]["uid"]
    state_map = wait_for(
        lambda: get_json(cluster, namespace, "configmap", "recommender-analysis-state"), what="the state ConfigMap"
    )
    [owner] = state_map["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["controller"]) == (uid, True)
    assert not state_map.get("binaryData") and not state_map.get("data"), "the operator creates it empty"
    cronjob = get_json(cluster, namespace, "cronjob", "recommender-analysis")
    args = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--cluster-state" in args, "the CronJob is incremental by default"

    job = cluster.service_account_kubeconfig(namespace, "recommender-analysis")
    collector = Collector(tmp_path / "collector")
    shadow = f"{namespace}/recommender"
    try:

        def analyze(*extra: str) -> dict:
            result = shadowctl(
                job, "analyze", "-n", namespace, "--name", "recommender", "--records-from", collector.url,
                "-o", "json", *extra,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)

        offset, first = ship(collector, shadow, "a", 300, received, 0)
        before = served_bytes(collector)
        report = analyze("--cluster-state")
        assert served_bytes(collector) - before == first
        assert report["coverage"]["samples"] == 300

        offset, second = ship(collector, shadow, "b", 200, received + 1, offset)
        before = served_bytes(collector)
        incremental = analyze("--cluster-state")
        assert served_bytes(collector) - before == second, "the second run reads only the new bytes"
        assert second < first

        before = served_bytes(collector)
        full = analyze()  # no state: every record, as before this change
        assert served_bytes(collector) - before == first + second
        assert incremental["coverage"]["samples"] == full["coverage"]["samples"] == 500
        assert (
            (incremental["verdict"]["result"], incremental["verdict"]["reason"])
            == (
                full["verdict"]["result"],
                full["verdict"]["reason"],
            )
            == ("Failed", "CandidateErrors")
        )
        assert not [p for p in incremental["problems"] if p["code"].startswith("AnalysisState")]
    finally:
        collector.stop()

    # The state is in the ConfigMap, written by the job's identity ...
    state_map = get_json(cluster, namespace, "configmap", "recommender-analysis-state")
    assert set(state_map["binaryData"]) == {"state.json.gz"}
    # ... and survives the records: the collector is gone, the state still holds 500 pairs.
    offline = Collector(tmp_path / "empty")
    try:
        result = shadowctl(
            job, "analyze", "-n", namespace, "--name", "recommender", "--records-from", offline.url,
            "--cluster-state", "-o", "json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["coverage"]["samples"] == 500
    finally:
        offline.stop()

    # Another object's job identity (and so any Pod without this job's token) may not write it.
    wait_for(lambda: get_json(cluster, namespace, "rolebinding", "other-analysis"), what="other's RoleBinding")
    other_job = cluster.service_account_kubeconfig(namespace, "other-analysis")
    patch = json.dumps({"binaryData": {"state.json.gz": ""}})
    denied = cluster.kubectl(
        "-n", namespace, "patch", "configmap", "recommender-analysis-state", "--type", "merge", "-p", patch,
        kubeconfig=other_job, check=False,
    )  # fmt: skip
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stdout + denied.stderr
    for verb in ("get", "patch", "update"):
        answer = cluster.kubectl(
            "-n", namespace, "auth", "can-i", verb, "configmaps/recommender-analysis-state", kubeconfig=job, check=False
        )
        assert answer.stdout.strip() == "yes", f"the job may not {verb} its state"
    for kubeconfig, what in (
        (job, "configmaps/other-analysis-state"),
        (other_job, "configmaps/recommender-analysis-state"),
    ):
        answer = cluster.kubectl("-n", namespace, "auth", "can-i", "patch", what, kubeconfig=kubeconfig, check=False)
        assert answer.stdout.strip() == "no", f"a job may write {what}"
    # A write that races another run's (an old resourceVersion) is refused by the API server: 409.
    stale = dict(state_map["metadata"])
    racing = cluster.kubectl(
        "-n", namespace, "patch", "configmap", "recommender-analysis-state", "--type", "json", "-p",
        json.dumps([{"op": "replace", "path": "/metadata/resourceVersion", "value": str(int(stale["resourceVersion"]) - 1)},
                    {"op": "add", "path": "/binaryData", "value": {}}]),
        kubeconfig=job, check=False,
    )  # fmt: skip
    assert racing.returncode != 0 and "modified" in (racing.stderr + racing.stdout).lower(), racing.stderr
