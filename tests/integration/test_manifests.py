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
