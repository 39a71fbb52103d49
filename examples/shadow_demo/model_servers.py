"""Real model servers as plain processes on loopback: MLServer (mlserver-sklearn, V2 protocol), KServe's
Python model server (v1 and V2) and MLflow's scoring server, each serving a small sklearn model trained
at run time. One copy shared by tests/integration/test_model_servers.py and `make demo-servers`
(shadow_demo.servers_demo).

Three models are trained on a synthetic two-feature task (class = x0 + x1 > 0):

  primary  SimpleImputer + LogisticRegression: answers every request, a missing x1 included
  wrong    k-nearest neighbours trained with the labels flipped where x0 >= 1, and no imputer: it
           disagrees on that region and fails (ValueError: Input X contains NaN) on a missing x1
  fixed    SimpleImputer + LogisticRegression trained on another sample: the same decisions, nearly

The servers live in their own venv (hack/model-servers.sh: ~1 min the first time, cached after):
their pins (pydantic, fastapi, protobuf...) would fight the project's. Nothing here imports them;
every server and the training run in that venv's Python.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROLES = ("primary", "wrong", "fixed")
REQUESTS = 600
BATCH_EVERY = 10  # every 10th request carries 3 instances
MISSING_EVERY = 10  # every 10th request (not a batch) has x1 null
SEGMENT = {"name": "x0", "bounds": [1]}
START_TIMEOUT = 300.0

TRAIN = textwrap.dedent(
    """
    import sys, joblib, numpy as np
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    out = sys.argv[1]
    def task(seed, n=4000):
        X = np.random.default_rng(seed).normal(size=(n, 2))
        return X, (X[:, 0] + X[:, 1] > 0).astype(int)
    X, y = task(0)
    models = {
        "primary": make_pipeline(SimpleImputer(), LogisticRegression()).fit(X, y),
        "wrong": KNeighborsClassifier().fit(X, np.where(X[:, 0] >= 1.0, 1 - y, y)),
        "fixed": make_pipeline(SimpleImputer(), LogisticRegression(C=0.5)).fit(*task(1)),
    }
    import mlflow.sklearn
    for name, model in models.items():
        joblib.dump(model, f"{out}/{name}.joblib")
        mlflow.sklearn.save_model(model, f"{out}/mlflow-{name}")
    """
)

# What each model is, in a line (the demo's narration).
MODELS = {
    "primary": "SimpleImputer + LogisticRegression",
    "wrong": "k-nearest neighbours, labels flipped where x0 >= 1, no imputer",
    "fixed": "SimpleImputer + LogisticRegression trained on another sample",
}

# KServe: a custom kserve.Model served by kserve.ModelServer, speaking v1 and V2 (Open Inference).
# kserve 0.16's REST server hard-codes host 0.0.0.0: its uvicorn.Config is made to bind loopback only.
KSERVE_SERVER = textwrap.dedent(
    """
    import json, sys, joblib, numpy as np, kserve, uvicorn
    import kserve.protocol.rest.server as rest
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class LoopbackConfig(uvicorn.Config):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "host": "127.0.0.1"})

    rest.uvicorn = type("uvicorn", (), {"Config": LoopbackConfig, "Server": uvicorn.Server})

    class Sklearn(kserve.Model):
        def __init__(self, name, path):
            super().__init__(name)
            self.model = joblib.load(path)
            self.ready = True

        def predict(self, payload, headers=None):
            if isinstance(payload, InferRequest):  # V2: /v2/models/<name>/infer
                rows = payload.inputs[0].as_numpy().astype(float).reshape(-1, 2)
                y = self.model.predict(rows)
                out = InferOutput(name="predict", shape=list(y.shape), datatype="INT64", data=y.tolist())
                return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id or "")
            if isinstance(payload, (bytes, str)):
                payload = json.loads(payload)
            rows = np.asarray(payload["instances"], dtype=float)  # v1: /v1/models/<name>:predict
            return {"predictions": self.model.predict(rows).tolist()}

    kserve.ModelServer(http_port=int(sys.argv[2]), grpc_port=int(sys.argv[3]), enable_grpc=False, workers=1).start(
        [Sklearn("model", sys.argv[1])]
    )
    """
)


class StartError(RuntimeError):
    """A model server (or the venv, or the training) did not come up; the message holds its log's tail."""


class Unavailable(StartError):
    """The servers' venv does not exist and PyPI cannot be reached to create it."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the venv and the models ----------------------------------------------------------------------


def servers_venv(timeout: float = 1500) -> Path:
    """hack/model-servers.sh: the venv with the servers, created or reused; its path."""
    done = subprocess.run(
        ["bash", str(REPO / "hack" / "model-servers.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode == 75:
        raise Unavailable(f"PyPI is unreachable, so the model servers' venv cannot be created: {done.stderr.strip()}")
    if done.returncode != 0:
        raise StartError(f"hack/model-servers.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def train(venv: Path, out: Path) -> Path:
    """The three models, as joblib files (MLServer, KServe) and MLflow models, in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", TRAIN, str(out)], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise StartError(f"training failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return out


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path


def spawn(command: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    # A session of its own: the servers fork workers (MLflow's uvicorn), all stopped with the group.
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group this module started (start_new_session), SIGKILL after 20 s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_ready(servers: Iterable[Server], path: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for server in servers:
        while True:
            if server.process.poll() is not None:
                raise StartError(f"model server exited {server.process.returncode}:\n{server.log.read_text()[-4000:]}")
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            try:
                connection.request("GET", path)
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline:
                raise StartError(f"model server not ready in {timeout:.0f} s:\n{server.log.read_text()[-4000:]}")
            time.sleep(0.5)


def mlserver(venv: Path, models: Path, role: str, workdir: Path) -> Server:
    root = workdir / f"mlserver-{role}"
    (root / "model").mkdir(parents=True)
    port = free_port()
    settings = {
        "host": "127.0.0.1",  # HTTP, gRPC and metrics all bind it
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    (root / "model" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "model",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": str(models / f"{role}.joblib")},
            }
        )
    )
    log = workdir / f"mlserver-{role}.log"
    return Server(spawn([str(venv / "bin" / "mlserver"), "start", str(root)], log, root), port, log)


def kserve(venv: Path, models: Path, role: str, workdir: Path) -> Server:
    port = free_port()
    log = workdir / f"kserve-{role}.log"
    command = [str(venv / "bin" / "python"), "-c", KSERVE_SERVER, str(models / f"{role}.joblib"), str(port)]
    return Server(spawn([*command, str(free_port())], log, workdir), port, log)


def mlflow(venv: Path, models: Path, role: str, workdir: Path) -> Server:
    port = free_port()
    log = workdir / f"mlflow-{role}.log"
    command = [
        str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(models / f"mlflow-{role}"),
        "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "-w", "1",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return Server(spawn(command, log, workdir, env), port, log)


@dataclass(frozen=True)
class Framework:
    title: str
    factory: Callable[[Path, Path, str, Path], Server]
    ready_path: str


FRAMEWORKS = {
    "mlserver": Framework("MLServer 1.7 with mlserver-sklearn", mlserver, "/v2/health/ready"),
    "kserve": Framework("KServe 0.16's Python model server (kserve.ModelServer)", kserve, "/v2/health/ready"),
    "mlflow": Framework("MLflow 2.22's scoring server (mlflow models serve)", mlflow, "/ping"),
}


def start(framework: str, venv: Path, models: Path, workdir: Path, roles: Iterable[str] = ROLES) -> dict[str, Server]:
    """One server per role, started together and ready; every one stopped if any fails to start."""
    workdir.mkdir(parents=True, exist_ok=True)
    kind = FRAMEWORKS[framework]
    servers: dict[str, Server] = {}
    try:
        for role in roles:
            servers[role] = kind.factory(venv, models, role, workdir)
        wait_ready(servers.values(), kind.ready_path)
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: dict[str, Server]) -> None:
    """SIGTERM to every server at once (each takes seconds to shut down), then wait for each."""
    for server in servers.values():
        if server.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGTERM)
    for server in servers.values():
        stop(server.process)


# --- traffic ------------------------------------------------------------------------------------


def instances(i: int) -> list[list[float | None]]:
    """Request i's rows: 3 for every BATCH_EVERY-th, else 1; x1 null in every MISSING_EVERY-th (i % 10 == 1)."""
    rng = random.Random(i)
    rows: list[list[float | None]] = [
        [round(rng.gauss(0, 1), 4), round(rng.gauss(0, 1), 4)] for _ in range(3 if i % BATCH_EVERY == 0 else 1)
    ]
    if i % MISSING_EVERY == 1:
        rows[0][1] = None
    return rows


@dataclass(frozen=True)
class Protocol:
    path: str  # the request path
    body: Callable[[list], dict]  # the body of a list of rows
    segment_path: str  # the segment's path to x0 of the first instance


PROTOCOLS = {
    "v2": Protocol(
        "/v2/models/model/infer",
        lambda rows: {
            "inputs": [
                {"name": "input-0", "shape": [len(rows), 2], "datatype": "FP64", "data": [x for r in rows for x in r]}
            ]
        },
        "$.inputs[0].data[0]",
    ),
    "kserve-v1": Protocol("/v1/models/model:predict", lambda rows: {"instances": rows}, "$.instances[0][0]"),
    "mlflow": Protocol(
        "/invocations",
        lambda rows: {"dataframe_split": {"columns": ["x0", "x1"], "data": rows}},
        "$.dataframe_split.data[0][0]",
    ),
}


@dataclass
class Answer:
    status: int
    body: bytes


def send(
    port: int, protocol: str, requests: int, concurrency: int = 4, keep: Iterable[int] = (), id_prefix: str = ""
) -> tuple[Counter, dict[int, Answer]]:
    """Requests 0..requests-1 in the protocol, `concurrency` clients on keep-alive connections:
    the count of each status, and the answers to the requests numbered in `keep`. With `id_prefix`,
    request i carries `x-request-id: <id_prefix><i>` (its record's id); else the router makes ids."""
    spec, kept = PROTOCOLS[protocol], set(keep)
    answers: dict[int, Answer] = {}

    def client(share: range) -> list[int]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        statuses = []
        try:
            for i in share:
                body = json.dumps(spec.body(instances(i))).encode()
                headers = {"content-type": "application/json"}
                if id_prefix:
                    headers["x-request-id"] = f"{id_prefix}{i}"
                connection.request("POST", spec.path, body, headers)
                response = connection.getresponse()
                answer = response.read()
                statuses.append(response.status)
                if i in kept:
                    answers[i] = Answer(response.status, answer)
        finally:
            connection.close()
        return statuses

    with ThreadPoolExecutor(concurrency) as pool:
        shares = [range(k, requests, concurrency) for k in range(concurrency)]
        statuses = Counter(s for done in pool.map(client, shares) for s in done)
    return statuses, answers


# --- the router's and the analysis' configuration -----------------------------------------------


def recording(protocol: str) -> dict:
    """recording.protocol presets where the predictions are (no predictionPath); x0 segments the traffic."""
    return {"protocol": protocol, "segments": [{**SEGMENT, "path": PROTOCOLS[protocol].segment_path}]}


def router_config(protocol: str, requests: int = REQUESTS) -> dict:
    """The router.json of a ShadowDeployment `models` in `shop`: mirror everything, record both answers."""
    return {
        "name": "models",
        "namespace": "shop",
        "traffic": {
            "router": "builtin",
            "mirrorPercent": 100,
            "candidateTimeout": "30s",
            "maxInFlight": 2 * requests,
        },
        "recording": recording(protocol),
    }


def shadow_body(protocol: str) -> dict:
    """The ShadowDeployment the analysis judges (the images are placeholders: the servers run here)."""
    spec = {
        "service": {"name": "models", "port": 80},
        "primary": {"image": "registry.example/model:1", "port": 8080},
        "candidate": {"image": "registry.example/model:2", "port": 8080},
        "traffic": {"router": "builtin"},
        "recording": recording(protocol),
        "analysis": {
            "minSamples": 300,
            "minSamplesPerSegment": 40,
            "thresholds": {"minAgreement": 0.95, "maxErrorRate": 0.01},
        },
    }
    metadata = {"name": "models", "namespace": "shop", "uid": "u-1", "generation": 1}
    return {"apiVersion": "shadow.mlops.dev/v1alpha1", "kind": "ShadowDeployment", "metadata": metadata, "spec": spec}


def records(directory: Path) -> list[dict]:
    return [json.loads(line) for path in directory.glob("*.jsonl") for line in path.read_text().splitlines() if line]


def _metric(text: str, name: str, label: str = "") -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") and label in line
    )


def wait_for_pairs(metrics: Callable[[], str], timeout: float = 180.0) -> None:
    """Until the router (its /metrics text from `metrics()`) has paired every copy it mirrored: the
    candidate answers after the client got the primary's answer. (A copy may be dropped when the
    router's mirroring is saturated.) TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        text = metrics()
        mirrored = _metric(text, "shadow_mirror_total", 'result="sampled"')
        pairs = _metric(text, "shadow_pairs_total", 'segment="all"')
        if pairs >= mirrored and _metric(text, "shadow_mirror_in_flight") == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the router paired {pairs:.0f} of {mirrored:.0f} mirrored copies in {timeout:.0f} s")
        time.sleep(0.5)
