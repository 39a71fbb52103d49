"""Notifications reach a real HTTP receiver on loopback: one failure retried, one POST per transition."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import condition, status_of, wait_phase
from .harness import wait_for
from .test_promotion import CANDIDATE, publish, shadowing

pytestmark = pytest.mark.cluster


class Receiver:
    """A webhook endpoint: the first POST is answered 500, every later one 200; all are kept."""

    def __init__(self) -> None:
        self.received: list[tuple[int, dict]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    code = 500 if not receiver.received else 200
                    receiver.received.append((code, body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def phases(self, code: int | None = None) -> list[str]:
        with self.lock:
            return [body["phase"] for answered, body in self.received if code is None or answered == code]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def test_each_transition_is_posted_once_and_a_failure_is_retried(cluster, operator, apps, namespace, receiver):
    hooks = [{"url": receiver.url, "on": ["Failed", "Passed", "Promoted"]}]
    shadowing(cluster, apps, namespace, notifications=hooks, promotion={"mode": "automatic"})
    assert receiver.phases() == [], "Deploying and Shadowing are not notified"

    publish(cluster, namespace, "recommender", "Failed", "CandidateErrors", "2025-03-03T10:00:00Z")
    wait_phase(cluster, namespace, "recommender", "Failed")
    wait_for(lambda: receiver.phases(200) == ["Failed"], timeout=30, what="the Failed notification, after a retry")
    assert receiver.phases() == ["Failed", "Failed"], "the 500 was retried, once"
    _, failed = receiver.received[1]
    assert failed["transition"] == {"from": "Shadowing", "to": "Failed"}
    assert failed["shadowDeployment"] == {"namespace": namespace, "name": "recommender"}
    assert failed["headline"] == (
        f"ShadowDeployment {namespace}/recommender: candidate {CANDIDATE} Failed (CandidateErrors)"
    )
    assert failed["text"].startswith(failed["headline"])
    assert [c["segment"] for c in failed["failingChecks"]] == ["history=<1"]
    assert failed["coverage"]["requiredSamples"] == 1000
    assert "http" not in failed["text"]

    publish(cluster, namespace, "recommender", "Passed", "Passed", "2025-03-03T11:00:00Z")
    wait_for(
        lambda: status_of(cluster, namespace, "recommender").get("phase") == "Promoted", what="automatic promotion"
    )
    wait_for(lambda: receiver.phases(200) == ["Failed", "Passed", "Promoted"], what="Passed, then Promoted")
    promoted = receiver.received[-1][1]
    assert promoted["transition"] == {"from": "Passed", "to": "Promoted"}
    assert f"{CANDIDATE} promoted" in promoted["headline"]

    # Resyncs every 2 s and a restarted primary's status changes must not send anything again.
    apps_primary = "recommender-primary"
    from .conftest import mark_available

    mark_available(apps, namespace, apps_primary)
    wait_for(lambda: condition(status_of(cluster, namespace, "recommender"), "Ready").get("status") == "True")
    time.sleep(8)
    assert receiver.phases() == ["Failed", "Failed", "Passed", "Promoted"]
