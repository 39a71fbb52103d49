"""kube/client.py's API discovery against a tiny local API server: answers are cached, failures are asked again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shadow_operator.kube.client import KubeError

from ..support.json_api import JsonApiServer

BATCH_V1 = {
    "kind": "APIResourceList",
    "groupVersion": "batch/v1",
    "resources": [{"name": "jobs"}, {"name": "cronjobs"}],
}
OLD_BATCH_V1 = {"kind": "APIResourceList", "groupVersion": "batch/v1", "resources": [{"name": "jobs"}]}


class FakeApiServer(JsonApiServer):
    """Answers discovery from a script of (status, body), one per request (the last repeats), and CronJob GETs."""

    def __init__(self, discovery: list[tuple[int, dict]]) -> None:
        self.discovery = list(discovery)
        self.requests: list[str] = []
        super().__init__()

    def answer(self, method: str, target: str, content_type: str, raw: bytes) -> tuple[int, dict]:
        self.requests.append(target)
        if target == "/apis/batch/v1":
            return self.discovery.pop(0) if len(self.discovery) > 1 else self.discovery[0]
        return 200, {"kind": "CronJob", "path": target}

    def discoveries(self) -> int:
        return self.requests.count("/apis/batch/v1")


@pytest.fixture
def api() -> Iterator[callable]:
    servers: list[FakeApiServer] = []

    def start(discovery: list[tuple[int, dict]]) -> FakeApiServer:
        server = FakeApiServer(discovery)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


UNAVAILABLE = (503, {"kind": "Status", "message": "the server is currently unable to handle the request"})


def test_a_failed_discovery_is_not_cached_and_the_next_call_asks_again(api):
    server = api([UNAVAILABLE, (200, BATCH_V1)])
    kube = server.kube()

    with pytest.raises(KubeError) as failed:
        kube.get("CronJob", "default", "job")
    assert failed.value.status == 503
    assert "will ask again" in str(failed.value)

    assert kube.get("CronJob", "default", "job")["path"] == "/apis/batch/v1/namespaces/default/cronjobs/job"
    assert kube.get("CronJob", "default", "job")["path"] == "/apis/batch/v1/namespaces/default/cronjobs/job"
    assert server.discoveries() == 2  # the failure, then one answer remembered


def test_an_answer_without_cronjobs_caches_the_older_version(api):
    server = api([(200, OLD_BATCH_V1)])
    kube = server.kube()
    for _ in range(3):
        assert kube.get("CronJob", "ns", "job")["path"] == "/apis/batch/v1beta1/namespaces/ns/cronjobs/job"
    assert server.discoveries() == 1


def test_a_group_version_the_server_does_not_know_is_an_answer(api):
    server = api([(404, {"kind": "Status", "message": "not found"}), (200, BATCH_V1)])
    kube = server.kube()
    for _ in range(2):
        assert kube.get("CronJob", "ns", "job")["path"] == "/apis/batch/v1beta1/namespaces/ns/cronjobs/job"
    assert server.discoveries() == 1


def test_repeated_failures_keep_asking_until_the_server_answers(api):
    server = api([UNAVAILABLE, (500, {"message": "etcd leader changed"}), UNAVAILABLE, (200, BATCH_V1)])
    kube = server.kube()
    statuses = []
    for _ in range(3):
        with pytest.raises(KubeError) as failed:
            kube.get("CronJob", "ns", "job")
        statuses.append(failed.value.status)
    assert statuses == [503, 500, 503]
    assert kube.get("CronJob", "ns", "job")["path"] == "/apis/batch/v1/namespaces/ns/cronjobs/job"
    assert server.discoveries() == 4
