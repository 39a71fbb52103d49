"""The install manifests render with the kustomize inside kubectl 1.20, as `kubectl apply -k` runs it.

The CRD's typed podTemplate schema has a `containers` property: a kustomization that both
includes the CRD and sets `images:` fails ("containers path is not of type []interface{}"),
which only the real-node tests had caught.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from .harness import KUBECTL, REPO


@pytest.mark.parametrize("directory", ["manifests", "manifests/namespaced"])
def test_the_install_renders_with_the_operator_image(directory):
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} missing: run `make cluster-binaries` (make test does it)")
    rendered = subprocess.run(
        [str(KUBECTL), "kustomize", str(REPO / directory)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount"} <= kinds, kinds
    [operator] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = operator["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert container["image"] == env["SHADOW_OPERATOR_IMAGE"] == "shadow-operator:0.1.0"


def test_the_cluster_install_checks_authors_and_the_namespaced_one_says_it_cannot():
    """The webhook's Service selects the operator's Pod on the port it serves; the namespaced install serves none."""
    cluster_install, namespaced = (_render(d) for d in ("manifests", "manifests/namespaced"))
    [config] = [o for o in cluster_install if o["kind"] == "ValidatingWebhookConfiguration"]
    [service] = [o for o in cluster_install if o["kind"] == "Service"]
    [operator] = [o for o in cluster_install if o["kind"] == "Deployment"]
    reference = config["webhooks"][0]["clientConfig"]["service"]
    assert (reference["namespace"], reference["name"]) == (
        service["metadata"]["namespace"],
        service["metadata"]["name"],
    )
    assert reference["namespace"] == operator["metadata"]["namespace"]
    labels = operator["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    [container] = operator["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] == "webhook" and "webhook" in ports
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SHADOW_WEBHOOK"] == "service"
    assert env["SHADOW_WEBHOOK_SERVICE"] == f"{reference['namespace']}/{reference['name']}"
    assert config["webhooks"][0]["failurePolicy"] == "Fail"

    assert not any(o["kind"] == "ValidatingWebhookConfiguration" for o in namespaced)
    [operator] = [o for o in namespaced if o["kind"] == "Deployment"]
    [container] = operator["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}["SHADOW_WEBHOOK"] == ""


def _render(directory: str) -> list[dict]:
    rendered = subprocess.run(
        [str(KUBECTL), "kustomize", str(REPO / directory)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    return [o for o in yaml.safe_load_all(rendered.stdout) if o]
