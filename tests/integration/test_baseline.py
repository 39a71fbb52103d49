"""The noise baseline through the real router: a non-deterministic model is judged against its own noise.

Three model servers on loopback answer like a sampling classifier (the right class, or with
probability `flip` another one): the primary, the baseline (the primary again) and the candidate.
`shadowctl router` sends each copy to the candidate and to the baseline; the comparison job's
`analyze` then judges the records with and without `analysis.baseline`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from benchmarks import aa

from shadow_operator.contract.records import BASELINE, COMPARED
from shadow_operator.contract.resource import parse
from shadow_operator.job.job import analyze

from ..support.data_path import Router

pytestmark = pytest.mark.timeout(240)

REQUESTS = 3000
MODEL = """
import asyncio, json, random, sys
flip = float(sys.argv[1])
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            length = 0
            for line in head.split(b"\\r\\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length)) if length else {}
            right = int(body.get("features", {}).get("purchase_count", 0)) % 3
            answer = right if random.random() >= flip else random.choice([c for c in range(3) if c != right])
            payload = json.dumps({"prediction": answer}).encode()
            writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: %d\\r\\n\\r\\n%s"
                         % (len(payload), payload))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print("listening", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def _start_model(flip: float) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-c", MODEL, str(flip)], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("listening"), line
    return process, int(line.split()[1])


def _run(workdir: Path, candidate_flip: float) -> Path:
    """Primary and baseline flip 10% of answers; the candidate `candidate_flip`. Returns the records directory."""
    processes, routers = [], []
    try:
        (primary, p_port), (baseline, b_port), (candidate, c_port) = (
            _start_model(0.1),
            _start_model(0.1),
            _start_model(candidate_flip),
        )
        processes += [primary, baseline, candidate]
        config = workdir / "router.json"
        config.write_text(json.dumps({**aa.CONFIG, "baseline": f"http://127.0.0.1:{b_port}"}))
        router = Router(
            ["--config", str(config), "--primary", f"http://127.0.0.1:{p_port}",
             "--candidate", f"http://127.0.0.1:{c_port}", "--workers", "1"],
            workdir / "records",
        )  # fmt: skip
        port = router.port
        routers.append(router)
        statuses = aa.send(port, REQUESTS, 4, timeout=120)
        assert Counter(statuses) == {200: REQUESTS}
    finally:
        for router in routers:
            router.stop()  # the router flushes its records on SIGTERM
        for process in reversed(processes):
            aa.stop(process)
    return workdir / "records"


def _shadow(baseline: bool):
    spec = {
        "service": {"name": "recommender", "port": 80},
        "primary": {"image": "registry.example/recsys:1", "port": 8080},
        "candidate": {"image": "registry.example/recsys:2", "port": 8080},
        "traffic": {"router": "builtin"},
        "recording": {"predictionPath": "$.prediction", "predictionType": "classification"},
        "analysis": {"minSamples": 500, "minSamplesPerSegment": 100, "thresholds": {"minAgreement": 0.95}},
    }
    if baseline:
        spec["analysis"]["baseline"] = {}
    metadata = {"name": "aa", "namespace": "shop", "uid": "u-1", "generation": 1}  # aa.CONFIG names the router
    return parse(
        {"apiVersion": "shadow.mlops.dev/v1alpha1", "kind": "ShadowDeployment", "metadata": metadata, "spec": spec}
    )


def _records(directory: Path) -> list[dict]:
    return [json.loads(line) for path in directory.glob("*.jsonl") for line in path.read_text().splitlines() if line]


def _agreement_failures(report) -> list:
    return [k for k in report.verdict.checks if k.name == "agreement" and k.passed is False]


def test_a_candidate_as_noisy_as_the_primary_fails_without_a_baseline_and_not_with_one(tmp_path):
    records = _run(tmp_path, candidate_flip=0.1)
    written = _records(records)
    by_comparison = Counter(r.get(COMPARED, "candidate") for r in written)
    # A copy and its baseline twin both count against maxInFlight: a few may be dropped under load, together.
    assert by_comparison["candidate"] >= REQUESTS * 0.95 and by_comparison[BASELINE] >= REQUESTS * 0.95, by_comparison
    # Every baseline pair answers a request the candidate pair also answers: the same copies.
    ids = {r["id"] for r in written if r.get(COMPARED) == BASELINE}
    assert ids <= {r["id"] for r in written if COMPARED not in r}

    without = analyze(_shadow(baseline=False), [records])
    assert without.verdict.result == "Failed" and _agreement_failures(without), without.verdict.message

    judged = analyze(_shadow(baseline=True), [records])
    assert judged.verdict.result != "Failed", judged.verdict.message
    [overall] = [k for k in judged.verdict.checks if (k.name, k.segment, k.hour) == ("agreement", "all", None)]
    assert overall.passed is True, overall.message
    assert "two primaries agree on" in overall.message


def test_a_candidate_noisier_than_the_primary_still_fails_against_the_baseline(tmp_path):
    records = _run(tmp_path, candidate_flip=0.5)
    judged = analyze(_shadow(baseline=True), [records])
    assert judged.verdict.result == "Failed", judged.verdict.message
    failing = _agreement_failures(judged)
    assert failing and "beyond that" in failing[0].message, judged.verdict.message
