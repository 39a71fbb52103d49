"""One home for the operator's version and image: pyproject.toml, followed by the package, the
Makefile's IMG and the manifests (`make manifests IMG=name:tag`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from shadow_operator import __version__
from shadow_operator.cli import DEPLOYMENT_PATH, KUSTOMIZATION_PATH, with_image

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def images(kustomization: str, deployment: str) -> tuple[str, str, str]:
    """(kustomize images entry, container image, SHADOW_OPERATOR_IMAGE)."""
    [entry] = yaml.safe_load(kustomization)["images"]
    [container] = yaml.safe_load(deployment)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return f"{entry['newName']}:{entry['newTag']}", container["image"], env["SHADOW_OPERATOR_IMAGE"]


def checked_in() -> tuple[str, str]:
    return (REPO / KUSTOMIZATION_PATH).read_text(), (REPO / DEPLOYMENT_PATH).read_text()


def test_the_package_and_the_checked_in_manifests_follow_pyprojects_version():
    assert __version__ == VERSION
    assert images(*checked_in()) == (f"shadow-operator:{VERSION}",) * 3


def test_one_image_reference_sets_all_three_places_and_keeps_the_comments():
    kustomization, deployment = with_image(*checked_in(), "registry.example:5000/ml/shadow-operator:1.2.3")
    assert images(kustomization, deployment) == ("registry.example:5000/ml/shadow-operator:1.2.3",) * 3
    assert kustomization.count("#") == checked_in()[0].count("#")
    assert deployment.count("#") == checked_in()[1].count("#")


@pytest.mark.parametrize("image", ["shadow-operator", "registry.example:5000/shadow-operator"])
def test_an_image_without_a_tag_is_refused_naming_the_flag(image):
    with pytest.raises(ValueError, match=re.escape(f"--image {image!r}: give name:tag")):
        with_image(*checked_in(), image)


def test_the_makefile_takes_the_version_from_pyproject():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^IMG \?= shadow-operator:\$\(VERSION\)$", makefile, re.M)
    assert "pyproject.toml" in re.search(r"^VERSION := .*$", makefile, re.M).group(0)
