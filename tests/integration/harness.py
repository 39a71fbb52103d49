"""A private control plane, the operator as a real process, and the API server's audit log.

The cluster is started by the project's own hack/local-cluster.sh in a temporary state
directory on free ports, so it never collides with a developer's `make cluster`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from ..support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
ISTIO_CRDS = REPO / "third_party" / "istio" / "networking-crds.yaml"
CACHE_DIR = Path(os.environ.get("SHADOW_CACHE_DIR", Path.home() / ".cache" / "shadow-operator"))
KUBECTL = CACHE_DIR / "k8s-1.20.2" / "kubectl"
OPERATOR_NAMESPACE = "shadow-system"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:shadow-operator"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.25, what: str = "condition"):
    """Poll until `predicate` returns something truthy; return it, or fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass
class LocalCluster:
    state_dir: Path
    api_port: int
    etcd_port: int
    etcd_peer_port: int = 0

    def __post_init__(self) -> None:
        self.etcd_peer_port = self.etcd_peer_port or free_port()

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SHADOW_CLUSTER_DIR": str(self.state_dir),
            "SHADOW_API_PORT": str(self.api_port),
            "SHADOW_ETCD_PORT": str(self.etcd_port),
            # Never "client port + 1": that one may belong to anything else on the machine.
            "SHADOW_ETCD_PEER_PORT": str(self.etcd_peer_port),
        }

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    def up(self) -> None:
        subprocess.run([REPO / "hack" / "local-cluster.sh", "up"], env=self.env, check=True)

    def down(self) -> None:
        subprocess.run([REPO / "hack" / "local-cluster.sh", "down"], env=self.env, check=False)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True, kubeconfig: Path | None = None):
        result = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr or result.stdout}")
        return result

    def api_client(self) -> kubernetes.client.ApiClient:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        return kubernetes.client.ApiClient(configuration)

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount, so RBAC applies as in a Pod."""

        def token() -> str | None:
            result = self.kubectl("-n", namespace, "get", "serviceaccount", name, "-o", "json", check=False)
            if result.returncode != 0:
                return None
            secrets = json.loads(result.stdout).get("secrets") or []
            if not secrets:
                return None
            secret = self.kubectl("-n", namespace, "get", "secret", secrets[0]["name"], "-o", "json")
            data = json.loads(secret.stdout).get("data", {}).get("token")
            if not data:
                return None
            import base64

            return base64.b64decode(data).decode()

        value = wait_for(token, timeout=30, what=f"a token for ServiceAccount {namespace}/{name}")
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [{"name": name, "user": {"token": value}}]
        config["contexts"][0]["context"]["user"] = name
        path = self.state_dir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return path

    def audit_events(self, since: datetime | None = None, user: str | None = None) -> list[dict[str, Any]]:
        """Completed requests from the audit log, optionally from one user after a moment."""
        events = []
        if not self.audit_log.exists():
            return events
        with self.audit_log.open() as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line being written right now
                # A watch is logged when its response starts; it completes only when it ends.
                if event.get("stage") != ("ResponseStarted" if event.get("verb") == "watch" else "ResponseComplete"):
                    continue
                if user and event.get("user", {}).get("username") != user:
                    continue
                if since and _parse_time(event["requestReceivedTimestamp"]) < since:
                    continue
                events.append(event)
        return events

    def writes(self, since: datetime, user: str = OPERATOR_USER) -> list[str]:
        return [describe(e) for e in self.audit_events(since, user) if e["verb"] in WRITE_VERBS]


def describe(event: dict[str, Any]) -> str:
    ref = event.get("objectRef", {})
    resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return f"{event['verb']} {resource} {ref.get('namespace', '')}/{ref.get('name', '')} -> {event.get('responseStatus', {}).get('code')}"


def table(text: str) -> list[dict[str, str]]:
    """`kubectl get` output as rows keyed by header, cut at the header's column offsets."""
    lines = text.rstrip("\n").splitlines()
    header = lines[0]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    names = [header[a:b].strip() for a, b in bounds]
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for line in lines[1:]]


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


class OperatorProcess:
    """`shadowctl run` in a subprocess, as `make run` starts it, logging to a file."""

    def __init__(self, kubeconfig: Path, log_path: Path, resync_seconds: float = 2, webhook_port: int | None = None):
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.resync_seconds = resync_seconds
        # Serve the admission webhook on loopback (the cluster fixture installs its configuration).
        self.webhook_port = webhook_port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "SHADOW_RESYNC_SECONDS": str(self.resync_seconds),
            "SHADOW_OPERATOR_IMAGE": "shadow-operator:test",
            "PYTHONUNBUFFERED": "1",
        }
        if self.webhook_port:
            env |= {"SHADOW_WEBHOOK": "url", "SHADOW_WEBHOOK_PORT": str(self.webhook_port)}
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shadow_operator.cli", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def apply_yaml(cluster: LocalCluster, documents: Iterable[dict[str, Any]] | str, namespace: str) -> None:
    text = documents if isinstance(documents, str) else yaml.safe_dump_all(list(documents))
    cluster.kubectl("-n", namespace, "apply", "-f", "-", stdin=text)


def stop_loop(loop, thread, *servers) -> None:
    """Close `servers`, cancel every task on `loop` (a test's upstreams, run in `thread`), stop it, join."""

    async def cancel_all():
        for server in servers:
            server.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()
