"""`make demo-servers`: the shadow story with real model servers instead of the demo's own.

For each server (MLServer's V2 protocol, KServe's v1 and V2, MLflow's scoring server): the three
models of shadow_demo.model_servers are served as plain processes on loopback, `shadowctl router`
sits in front of the primary and mirrors every request to a candidate, clients get the primary's
answers only, and `shadowctl analyze` judges the recorded pairs. The wrong candidate (it disagrees
where x0 >= 1 and fails on a missing x1) is Failed, naming both causes; no check fails for the fixed
one (Inconclusive until the shadow has lasted analysis.minDuration, a week: `make demo` replays one).

    PYTHONPATH=examples .venv/bin/python -m shadow_demo.servers_demo [--server kserve-v1 ...]

Every process it starts is stopped on exit, Ctrl-C included. Exit status 0 when every verdict is the
expected one, 1 otherwise, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import textwrap
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import model_servers as ms
from .stack import SHADOWCTL, Stack, StartError

# --server name -> (the framework that serves it, the protocol it is spoken in, what to call it)
SERVERS = {
    "mlserver": ("mlserver", "v2", "MLServer, V2 inference protocol"),
    "kserve-v1": ("kserve", "kserve-v1", "KServe model server, v1 protocol"),
    "kserve-v2": ("kserve", "v2", "KServe model server, V2 (Open Inference) protocol"),
    "mlflow": ("mlflow", "mlflow", "MLflow scoring server"),
}
# candidate -> the verdict the story expects (the integration test's assertions)
CANDIDATES = {"wrong": "Failed", "fixed": "not Failed, no check failing"}
SHOWN = (3, 1, 10)  # the requests whose answers are shown: one row, one without x1, a batch of 3


def bold(text: str) -> str:
    return f"\033[1m{text}\033[0m"


def step(text: str) -> None:
    print(f"\n{bold('== ' + text)}", flush=True)


def short(data: bytes | object, width: int = 110) -> str:
    if isinstance(data, bytes):
        text = data.decode(errors="replace")
    else:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def essential(body: bytes) -> bytes | object:
    """A JSON answer without the per-request ids and names (V2's id, model_name, ...); else as it is."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if isinstance(answer, dict):
        return {k: v for k, v in answer.items() if k not in ("id", "model_name", "model_version", "parameters")}
    return answer


def metrics(admin: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as answer:
        return answer.read().decode()


@dataclass
class Outcome:
    server: str
    candidate: str
    verdict: str
    expected: bool
    clients: Counter


def shadow(server: str, protocol: str, primary: ms.Server, candidate: str, port: int, workdir: Path, requests: int):
    """One shadow run: the router in front of `primary`, mirroring to `candidate`; the report."""
    records = workdir / "records"
    with Stack(workdir) as stack:
        router, admin = stack.router(ms.router_config(protocol, requests), primary.port, port, records)
        print(
            f"  router on 127.0.0.1:{router}: primary :{primary.port}, candidate '{candidate}' :{port} "
            "(every request mirrored)"
        )
        print(
            f"  sending {requests} requests to the router ({ms.PROTOCOLS[protocol].path}): one row each, "
            f"a batch of 3 in every {ms.BATCH_EVERY}th, x1 null in 1 of {ms.MISSING_EVERY}"
        )
        statuses, answers = ms.send(router, protocol, requests, keep=SHOWN, id_prefix="req-")
        ms.wait_for_pairs(lambda: metrics(admin))
        stack.stop("router")  # drains in-flight copies and flushes the records
    written = {r["id"]: r for r in ms.records(records)}
    got = ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
    print(f"  the clients got: {got} (the primary's answers; the candidate's never reach them)")
    for i in SHOWN:
        rows = ms.instances(i)
        answer = answers[i]
        print(f"    #{i:<3} {short(ms.PROTOCOLS[protocol].body(rows), 130)}")
        print(f"         -> {answer.status} {short(essential(answer.body), 120)}")
        side = written.get(f"req-{i}", {}).get("candidate")
        if side:  # the mirrored copy's answer, as the router recorded it
            said = side["prediction"] if side["outcome"] == "ok" else f"{side['status']} {side['error']}"
            print(f"         candidate (recorded, not returned): {short(said, 80)}")

    spec = workdir / "shadowdeployment.yaml"
    spec.write_text(yaml.safe_dump(ms.shadow_body(protocol), sort_keys=False))
    command = [SHADOWCTL, "analyze", "--file", str(spec), "--records", str(records)]
    print(f"  $ shadowctl analyze --file {spec.name} --records records --format summary")
    summary = subprocess.run([*command, "--format", "summary"], check=True, capture_output=True, text=True).stdout
    print(textwrap.indent(summary.rstrip(), "    "))
    report = json.loads(subprocess.run([*command, "--format", "json"], check=True, capture_output=True).stdout)
    verdict, ok = report["verdict"], True
    failing = {(c["name"], c["segment"]): c for c in verdict["checks"] if c.get("passed") is False}
    if candidate == "wrong":  # what the integration test proves: Failed, for both of its faults
        agreement, errors = failing.get(("agreement", "x0=>=1")), failing.get(("errorRate", "all"))
        ok = verdict["result"] == "Failed" and bool(agreement) and bool(errors)
        if agreement:
            print(
                f"  >> where x0 >= 1 the candidate agrees with the primary on {agreement['candidate']:.0%} of requests"
            )
        if errors:
            top = next(s for s in report["slices"] if s["segment"] == "all" and s["hour"] is None)
            said = top["candidate"]["top_errors"][0]["text"] if top["candidate"]["top_errors"] else "?"
            print(f"  >> it fails {errors['candidate']:.0%} of all requests (x1 missing): {short(said, 60)}")
    else:  # the fixed one: nothing fails; Passed once the shadow has lasted analysis.minDuration
        ok = verdict["result"] != "Failed" and not failing
        if ok and verdict["result"] == "Inconclusive":
            print(
                "  >> no check failed; Inconclusive because a Passed verdict needs analysis.minDuration (168h) of "
                "shadowing and this one lasted seconds (`make demo` replays a compressed week to reach Passed)"
            )
    mark = "as expected" if ok else "NOT what the story expects"
    print(bold(f"  verdict for '{candidate}' on {server}: {verdict['result']} ({verdict.get('reason')}), {mark}"))
    return Outcome(server, candidate, verdict["result"], ok, statuses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shadow_demo.servers_demo", description=__doc__)
    parser.add_argument(
        "--server", choices=[*SERVERS, "all"], default="all", help="one server and protocol (default: all)"
    )
    parser.add_argument("--requests", type=int, default=ms.REQUESTS, help="requests per shadow run")
    parser.add_argument("--workdir", type=Path, help="where logs, records and reports go (default: a new temp dir)")
    args = parser.parse_args(argv)
    chosen = list(SERVERS) if args.server == "all" else [args.server]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="shadow-demo-servers-"))
    began = time.monotonic()
    # Ctrl-C (even when started where SIGINT is ignored, as in the background) and `kill` stop the
    # demo the same way: through the finally blocks that stop every process it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    outcomes: list[Outcome] = []
    try:
        step("The model servers' venv (hack/model-servers.sh; ~1 min the first time, cached after)")
        venv = ms.servers_venv()
        print(f"  {venv}")
        step("Training three sklearn models on class = x0 + x1 > 0 (in that venv)")
        models = ms.train(venv, workdir / "models")
        for role, what in ms.MODELS.items():
            print(f"  {role:8} {what}")
        frameworks = list(dict.fromkeys(SERVERS[name][0] for name in chosen))
        for framework in frameworks:
            kind = ms.FRAMEWORKS[framework]
            with ExitStack() as servers_running:
                step(f"{kind.title}: primary, wrong and fixed, one process each on loopback")
                started = time.monotonic()
                servers = ms.start(framework, venv, models, workdir / framework)
                servers_running.callback(ms.stop_all, servers)
                ports = ", ".join(f"{role} :{server.port}" for role, server in servers.items())
                print(f"  ready in {time.monotonic() - started:.0f}s: {ports}")
                for name in (n for n in chosen if SERVERS[n][0] == framework):
                    _, protocol, title = SERVERS[name]
                    for candidate in CANDIDATES:
                        step(f"{title}: shadowing '{candidate}' behind the primary")
                        run = workdir / name / candidate
                        port = servers[candidate].port
                        outcomes.append(shadow(name, protocol, servers["primary"], candidate, port, run, args.requests))
    except KeyboardInterrupt:
        print(f"\ninterrupted: every process the demo started is stopped; logs in {workdir}")
        return 130
    except (ms.StartError, StartError, TimeoutError, subprocess.CalledProcessError) as error:
        print(f"\ndemo-servers failed: {error}\nlogs in {workdir}")
        return 1

    step("Verdicts")
    print(f"  {'server':10} {'candidate':10} {'verdict':13} {'as expected':12} clients got")
    for o in outcomes:
        got = ", ".join(f"{n} x {status}" for status, n in sorted(o.clients.items()))
        expected = "yes" if o.expected else f"NO ({CANDIDATES[o.candidate]})"
        print(f"  {o.server:10} {o.candidate:10} {o.verdict:13} {expected:12} {got}")
    print(f"\n  done in {time.monotonic() - began:.0f}s; logs, records and reports in {workdir}")
    return 0 if outcomes and all(o.expected for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
