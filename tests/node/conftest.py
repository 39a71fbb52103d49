"""A real single-node cluster (containerd, kubelet, kube-proxy, DNS) running the project's images.

The node is started by hack/local-cluster.sh in node mode in a private state directory, with the
images `make images` built loaded into its containerd; the operator is installed exactly as a
user installs it (`kubectl apply -k manifests/`), so every program runs from the image, as the
image's user, with the manifests' securityContext, mounts and probes.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..integration.harness import KUBECTL, REPO, LocalCluster, free_port, wait_for

pytestmark = pytest.mark.node

IMAGES_DIR = Path(os.environ.get("SHADOW_IMAGES_DIR", Path.home() / ".cache" / "shadow-operator" / "images"))


@dataclass
class NodeCluster(LocalCluster):
    """LocalCluster in node mode: `up --node`, and what the node wrote into node.env."""

    settings: dict[str, str] = field(default_factory=dict)

    def up(self) -> None:
        subprocess.run([REPO / "hack" / "local-cluster.sh", "up", "--node"], env=self.env, check=True)
        for line in (self.state_dir / "node.env").read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                self.settings[key.strip()] = shlex.split(value)[0] if value.strip() else ""

    @property
    def bridge_ip(self) -> str:
        return self.settings["BRIDGE_IP"]

    def json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def show(self, *args: str) -> str:
        """Run kubectl, print the command and its output as a person would see it."""
        output = self.kubectl(*args).stdout
        print(f"\n$ kubectl {' '.join(args)}\n{output.rstrip()}", flush=True)
        return output


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} missing: run `make cluster-binaries` (make test does it)")
    if not list(IMAGES_DIR.glob("*.tar")):
        pytest.fail(f"no image archives in {IMAGES_DIR}: run `make images` (make test does it)")
    cluster = NodeCluster(tmp_path_factory.mktemp("node"), api_port=free_port(), etcd_port=free_port())
    started = time.monotonic()
    try:
        cluster.up()
        print(f"\nnode Ready {time.monotonic() - started:.1f}s after `up --node`", flush=True)
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def installed_operator(node: NodeCluster) -> Iterator[dict]:
    """`kubectl apply -k manifests/` with the local image; the operator Pod Ready under its own identity."""
    node.show("apply", "-k", str(REPO / "manifests"))
    node.kubectl("wait", "--for=condition=Established", "crd/shadowdeployments.shadow.mlops.dev", "--timeout=60s")
    node.kubectl(
        "-n", "shadow-system", "wait", "--for=condition=Available", "deployment/shadow-operator", "--timeout=180s"
    )
    [pod] = node.json("-n", "shadow-system", "get", "pods", "-l", "app.kubernetes.io/name=shadow-operator")["items"]
    wait_for(
        lambda: (
            "Initial authentication has finished"
            in node.kubectl("-n", "shadow-system", "logs", pod["metadata"]["name"]).stdout
        ),
        timeout=60,
        what="the operator's kopf start in its log",
    )
    # The admission webhook, as installed: the API server reaches the operator's Pod through the
    # webhook Service on the bridge and trusts the CA the operator wrote in. A server-side dry run
    # of the example goes through it (as the cluster admin, so it is admitted once it answers).
    example = (REPO / "examples" / "recommender.yaml").read_text().replace("namespace: demo", "namespace: default")
    wait_for(
        lambda: node.kubectl("create", "--dry-run=server", "-f", "-", stdin=example, check=False).returncode == 0,
        timeout=60,
        what="the operator's admission webhook answering the API server",
    )
    yield pod
    # What a person would look at when something went wrong: printed after the tests, pass or fail.
    for args in (
        ("get", "pods", "-A", "-o", "wide"),
        ("-n", "shadow-system", "logs", pod["metadata"]["name"], "--tail=40"),
    ):
        print(f"\n$ kubectl {' '.join(args)}\n{node.kubectl(*args, check=False).stdout}", flush=True)


class Client:
    """Live traffic from the host to a Service's ClusterIP, one new connection per request, counted.

    A request fails when no answer arrives (refused, reset, timed out) or the answer is not 200.
    Each request carries its own x-request-id so the records can be matched to what was sent.
    """

    def __init__(self, host: str, port: int, bodies, rate: float = 40.0) -> None:
        self.host, self.port, self.bodies, self.rate = host, port, bodies, rate
        self.sent: list[tuple[float, str, int | str]] = []  # (time, request id, status or error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="client", daemon=True)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import http.client

        interval, index = 1.0 / self.rate, 0
        next_at = time.monotonic()
        # Bounded: a test never runs longer than its own timeout; this stops by itself too.
        deadline = time.monotonic() + 3600
        while not self._stop.is_set() and time.monotonic() < deadline:
            body = self.bodies(index)
            request_id = f"client-{index}"
            index += 1
            try:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
                connection.request(
                    "POST",
                    "/predict",
                    body=body,
                    headers={"content-type": "application/json", "x-request-id": request_id},
                )
                response = connection.getresponse()
                response.read()
                outcome: int | str = response.status
                connection.close()
            except OSError as error:
                outcome = type(error).__name__
            self.sent.append((time.time(), request_id, outcome))
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def failures(self, since: float = 0.0, until: float = float("inf")) -> list[tuple[float, str, int | str]]:
        return [entry for entry in self.sent if since <= entry[0] < until and entry[2] != 200]

    def ids(self, since: float, until: float) -> list[str]:
        return [request_id for at, request_id, status in self.sent if since <= at < until and status == 200]
