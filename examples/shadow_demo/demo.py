"""The demo's story: v2 beats v1 offline, shadowing it for a (compressed) week shows why it must
not ship, and the fixed v2.1 passes the same week.

Every step uses the real parts: the models serve HTTP, the builtin router (`shadowctl router`,
configured from the ShadowDeployment as the operator would) mirrors and records, Debian's
Prometheus scrapes it, and `shadowctl analyze` judges the records and the metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from shadow_operator.contract.resource import parse
from shadow_operator.controller.builders.router import router_config

from .models import trained_models
from .replay import ReplayResult, replay, schedule, week_start
from .stack import EXAMPLES, SHADOWCTL, Stack, free_port, prometheus_available, scraped_up_to, start_prometheus

SPEC_FILE = EXAMPLES / "recommender.yaml"
CANDIDATES = {"v2": "the candidate as trained", "v2.1": "v2 with the three faults fixed"}


def bold(text: str) -> str:
    return f"\033[1m{text}\033[0m"


def step(text: str) -> None:
    print(f"\n{bold('== ' + text)}", flush=True)


@dataclass
class Outcome:
    candidate: str
    verdict: str
    replay: ReplayResult
    report_html: Path


def shadow_spec(candidate: str, prometheus: str | None) -> dict:
    """The example ShadowDeployment with `candidate` as its candidate and the local Prometheus, if any."""
    body = yaml.safe_load(SPEC_FILE.read_text())
    body["spec"]["candidate"]["image"] = f"registry.example/recommender:{candidate}"
    body["spec"]["candidate"]["args"][body["spec"]["candidate"]["args"].index("--version") + 1] = candidate
    if prometheus:
        body["spec"]["analysis"]["prometheus"]["url"] = prometheus
    else:  # judged from the records alone, as a spec without Prometheus is
        del body["spec"]["analysis"]["prometheus"]
    return body


def in_plain_words(report: dict) -> list[str]:
    """What the failing checks of a report mean for this model, one line per fault."""
    failing = [c for c in report["verdict"]["checks"] if c.get("passed") is False]
    records = [c for c in failing if c.get("source", "records") == "records"]  # the records name the error text
    whole = [c for c in records if c.get("hour") is None and c["segment"] != "all"]
    slices = {s["segment"]: s for s in report["slices"] if s["hour"] is None}
    lines = []
    for check in (c for c in whole if c["name"] == "errorRate"):
        top = slices[check["segment"]]["candidate"]["top_errors"]
        said = f": {top[0]['text']}" if top else ""
        lines.append(f"{check['segment']}: the candidate fails {check['candidate']:.0%} of these requests{said}")
    slowest: dict[str, dict] = {}  # per segment, the highest failing percentile
    for check in sorted((c for c in whole if c["name"].startswith("latencyP")), key=lambda c: c["name"]):
        slowest[check["segment"]] = check
    for segment, check in slowest.items():
        percentile = check["name"][len("latency") : -len("Ratio")].lower()
        lines.append(
            f"{segment}: the candidate is {check['candidate'] / check['primary']:.1f}x slower at {percentile} "
            f"({check['candidate']:.1f} ms vs {check['primary']:.1f} ms)"
        )
    hours = [c for c in records if c["name"] == "agreement" and c["segment"] == "all" and c.get("hour") is not None]
    if hours:
        named = ", ".join(f"{c['hour']}h" for c in hours)
        low, high = min(c["candidate"] for c in hours), max(c["candidate"] for c in hours)
        lines.append(f"at {named}: the two models agree on only {low:.0%}-{high:.0%} of predictions")
    return lines


def run_shadow(candidate: str, workdir: Path, requests: int, seconds: float) -> Outcome:
    records = workdir / "records"
    report_json, report_html = workdir / "report.json", workdir / "report.html"
    spec_file = workdir / "shadowdeployment.yaml"
    with Stack(workdir) as stack:
        admin = free_port()
        prometheus = start_prometheus(stack, [f"127.0.0.1:{admin}"]) if prometheus_available() else None
        spec = shadow_spec(candidate, prometheus)
        spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        primary_port, candidate_port = stack.model("v1"), stack.model(candidate)
        port, admin = stack.router(router_config(parse(spec)), primary_port, candidate_port, records, admin=admin)
        print(
            f"  v1 on :{primary_port} (primary), {candidate} on :{candidate_port} (candidate), "
            f"router on :{port} (metrics :{admin})" + (f", Prometheus {prometheus}" if prometheus else "")
        )
        events = schedule(requests, week_start(time.time()))
        result = asyncio.run(replay("127.0.0.1", port, events, seconds))
        if prometheus:
            scraped_up_to(prometheus, time.time() + 0.5)
        stack.stop("router")  # drains in-flight copies and flushes the record sink
        analyze = [SHADOWCTL, "analyze", "--file", str(spec_file), "--records", str(records)]
        subprocess.run([*analyze, "--format", "json", "--output", str(report_json)], check=True)
    subprocess.run([SHADOWCTL, "report", "--file", str(report_json), "-o", "summary"], check=True)
    report = json.loads(report_json.read_text())
    for line in in_plain_words(report):
        print(f"  >> {line}")
    if report["verdict"]["result"] == "Passed":
        print(f"  >> every check passed on every segment over a full week: {candidate} can be promoted")
    subprocess.run(
        [SHADOWCTL, "report", "--file", str(report_json), "-o", "html", "--output", str(report_html)], check=True
    )
    verdict = report["verdict"]
    return Outcome(candidate, verdict["result"], result, report_html)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m shadow_demo", description=__doc__)
    parser.add_argument("--requests", type=int, default=30000, help="requests in the replayed week")
    parser.add_argument("--seconds", type=float, default=25, help="wall-clock seconds the week is compressed into")
    parser.add_argument("--workdir", type=Path, help="where logs, records and reports go (default: a new temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="shadow-demo-"))
    began = time.monotonic()

    step("Offline: accuracy on the curated held-out set (logged requests of users with purchase history)")
    _, accuracy = trained_models()
    for name, value in accuracy.items():
        print(f"  {name:5} {value:6.1%}  {CANDIDATES.get(name, 'serving today')}")
    print(f"  v2 beats v1 by {accuracy['v2'] - accuracy['v1']:+.1%}. Ship it? Shadow it first.")

    if not prometheus_available():
        print("\n  Prometheus not found (install Debian's `prometheus`): analysing from records alone.")
    outcomes = []
    for candidate, what in CANDIDATES.items():
        step(f"Shadowing {candidate} ({what}) behind v1 for one week of traffic, compressed into {args.seconds:g}s")
        outcomes.append(run_shadow(candidate, workdir / candidate, args.requests, args.seconds))

    step("What users saw: the primary's answers through the router, whatever the candidate did")
    print(f"  {'candidate':10} {'verdict':13} {'requests':>9} {'non-200':>8} {'p50 ms':>7} {'p99 ms':>7}  report")
    for o in outcomes:
        non_ok = sum(n for status, n in o.replay.statuses.items() if status != 200) + o.replay.failures
        print(
            f"  {o.candidate:10} {o.verdict:13} {o.replay.sent:9,} {non_ok:8,} "
            f"{o.replay.percentile(0.5):7.2f} {o.replay.percentile(0.99):7.2f}  {o.report_html}"
        )
    print(f"\n  done in {time.monotonic() - began:.0f}s; logs, records and reports in {workdir}")
    return 0 if [o.verdict for o in outcomes] == ["Failed", "Passed"] else 1
