"""The Argo CD health check (manifests/gitops/argocd-health.lua), run by a real Lua interpreter.

Each object is written as a Lua table literal (converted here from the dict the API server would
return), a tiny driver sets it as the global `obj`, runs the script and prints hs.status and
hs.message. The ConfigMap patch must carry the script verbatim.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from shadow_operator.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    Condition,
    Coverage,
    Phase,
    ShadowDeploymentStatus,
    Verdict,
)
from shadow_operator.contract import reasons

from .factories import contract_spec

REPO = Path(__file__).resolve().parents[2]
GITOPS = REPO / "manifests" / "gitops"
SCRIPT = GITOPS / "argocd-health.lua"
PATCH = GITOPS / "argocd-cm-patch.yaml"
HEALTH_KEY = f"resource.customizations.health.{GROUP}_{KIND}"
LUA = "lua5.4"
NOW = "2024-05-08T06:10:00Z"
GENERATION = 3

DRIVER = """\
obj = {obj}
local script = assert(loadfile(arg[1]))
local hs = script()
assert(type(hs) == "table", "the health script must return hs")
io.write(tostring(hs.status), "\\n", type(hs.message) == "string" and "1" or "0", "\\n", hs.message or "")
"""


# --- dict -> Lua literal -----------------------------------------------------------------------


def lua_string(text: str) -> str:
    """A double-quoted Lua string: printable ASCII as is, every other byte as a decimal escape."""
    out = []
    for byte in text.encode("utf-8"):
        if byte in (0x22, 0x5C):  # " and backslash
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")  # \ddd: understood by Lua 5.1 (Argo CD) and 5.4
    return '"' + "".join(out) + '"'


def to_lua(value: Any) -> str:
    """A Lua expression for a JSON-like value: dicts become keyed tables, lists sequences."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "(0/0)"
        if math.isinf(value):
            return "math.huge" if value > 0 else "-math.huge"
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, Mapping):
        items = [f"[{lua_string(str(k))}] = {to_lua(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        if any(v is None for v in value):
            raise ValueError("a Lua sequence cannot hold nil")
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def test_lua_literals() -> None:
    assert to_lua({"a": [1, 2.5, True], "b": None, "c": "x"}) == '{["a"] = {1, 2.5, true}, ["c"] = "x"}'
    assert lua_string('say "hi"\\\n\u2265') == '"say \\"hi\\"\\\\\\010\\226\\137\\165"'
    assert to_lua(float("inf")) == "math.huge"
    with pytest.raises(ValueError):
        to_lua([1, None])


# --- running the script ------------------------------------------------------------------------


def _run(command: list[str]) -> subprocess.CompletedProcess[str] | str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=280, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)


@pytest.fixture(scope="module")
def lua() -> str:
    """The interpreter; Debian's lua5.4 is installed when it is missing."""
    found = shutil.which(LUA)
    if found:
        return found
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    log = []
    for command in ([*prefix, "apt-get", "update"], [*prefix, "apt-get", "install", "-y", LUA]):
        result = _run(command)
        if isinstance(result, str):
            log.append(f"$ {' '.join(command)}\n{result}")
        else:
            log.append(f"$ {' '.join(command)} -> exit {result.returncode}\n{result.stderr[-2000:]}")
    found = shutil.which(LUA)
    if not found:
        pytest.fail(
            f"{LUA} is needed to run manifests/gitops/argocd-health.lua and could not be installed "
            f"(install it with `apt-get install -y {LUA}`):\n" + "\n".join(log),
            pytrace=False,
        )
    return found


def health(lua: str, obj: Mapping[str, Any], tmp_path: Path) -> tuple[str, str | None]:
    driver = tmp_path / "driver.lua"
    driver.write_text(DRIVER.format(obj=to_lua(obj)), encoding="utf-8")
    result = subprocess.run([lua, str(driver), str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"the health script failed:\n{result.stderr}"
    status, has_message, message = result.stdout.split("\n", 2)
    return status, message if has_message == "1" else None


# --- objects as the API server returns them ----------------------------------------------------


def shadow(status: ShadowDeploymentStatus | Mapping[str, Any] | None, generation: int = GENERATION) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "recommender", "namespace": "default", "generation": generation, "uid": "f00"},
        "spec": contract_spec(),
    }
    if isinstance(status, ShadowDeploymentStatus):
        obj["status"] = status.to_wire()
    elif status is not None:
        obj["status"] = dict(status)
    return obj


def condition(type_: str, status: str, reason: str, message: str | None) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=NOW,
        observed_generation=GENERATION,
    )


def make_status(
    phase: Phase,
    ready: tuple[str, str, str | None] | None = None,
    verdict: Verdict | None = None,
    coverage: Coverage | None = None,
    observed_generation: int | None = GENERATION,
) -> ShadowDeploymentStatus:
    # Another condition with a message comes first: the script must pick Ready's, not the first.
    conditions = [condition(reasons.MIRRORING, "False", reasons.MIRROR_NOT_READY, "not this message")]
    if ready is not None:
        conditions.append(condition(reasons.READY, *ready))
    return ShadowDeploymentStatus(
        phase=phase,
        observed_generation=observed_generation,
        conditions=conditions,
        verdict=verdict,
        coverage=coverage,
    )


def verdict(result: str, reason: str, message: str | None) -> Verdict:
    return Verdict(result=result, reason=reason, message=message, evaluated_at=NOW)


FAILED_MESSAGE = "candidate error rate 4.13% exceeds the 1.00% limit in segment history=<1 (3,120 pairs)"
COVERAGE = Coverage(
    elapsed="43h40m", required="168h", samples=5120, required_samples=1000, percent=26, summary="26% of 168h"
)

CASES = {
    "no status": (shadow(None), "Progressing", "Waiting for the operator"),
    "status behind the spec": (
        shadow(make_status(Phase.PASSED, observed_generation=GENERATION - 1)),
        "Progressing",
        "Waiting for the operator",
    ),
    "status never observed a generation": (
        shadow(make_status(Phase.PENDING, observed_generation=None)),
        "Progressing",
        "Waiting for the operator",
    ),
    "pending": (
        shadow(make_status(Phase.PENDING, ready=("False", "Pending", "Waiting for the first reconcile"))),
        "Progressing",
        "Waiting for the first reconcile",
    ),
    "deploying": (
        shadow(
            make_status(
                Phase.DEPLOYING,
                ready=("False", reasons.CANDIDATE_NOT_AVAILABLE, "recommender-candidate: 0/1 replicas available"),
            )
        ),
        "Progressing",
        "recommender-candidate: 0/1 replicas available",
    ),
    "deploying without conditions": (
        shadow({"phase": "Deploying", "observedGeneration": GENERATION}),
        "Progressing",
        "Deploying",
    ),
    "shadowing": (
        shadow(
            make_status(
                Phase.SHADOWING,
                ready=("True", reasons.SHADOWING, "Mirroring 100% of recommender; 26% of 168h seen"),
                coverage=COVERAGE,
            )
        ),
        "Progressing",
        "Mirroring 100% of recommender; 26% of 168h seen",
    ),
    "shadowing without a Ready message": (
        shadow(make_status(Phase.SHADOWING, ready=("True", reasons.SHADOWING, None), coverage=COVERAGE)),
        "Progressing",
        "Shadowing: 26% of 168h",
    ),
    "passed": (
        shadow(make_status(Phase.PASSED, verdict=verdict("Passed", "Passed", "every check passed on 48,210 pairs"))),
        "Healthy",
        "every check passed on 48,210 pairs",
    ),
    "promoted": (
        shadow(
            make_status(
                Phase.PROMOTED, ready=("True", "Promoted", "registry.example/recsys:2.0.0 serves as the primary")
            )
        ),
        "Healthy",
        "registry.example/recsys:2.0.0 serves as the primary",
    ),
    "inconclusive": (
        shadow(
            make_status(
                Phase.INCONCLUSIVE,
                verdict=verdict("Inconclusive", "InsufficientData", "612 pairs in 168h, fewer than minSamples 1000"),
            )
        ),
        "Degraded",
        "612 pairs in 168h, fewer than minSamples 1000",
    ),
    "failed": (
        shadow(
            make_status(
                Phase.FAILED,
                ready=("False", "CandidateErrors", "not the verdict"),
                verdict=verdict("Failed", "CandidateErrors", FAILED_MESSAGE),
            )
        ),
        "Degraded",
        f"CandidateErrors: {FAILED_MESSAGE}",
    ),
    "failed without a verdict message": (
        shadow(make_status(Phase.FAILED, verdict=verdict("Failed", "LatencyRegression", None))),
        "Degraded",
        "LatencyRegression",
    ),
    "failed with quotes, newlines and non-ASCII": (
        shadow(
            make_status(
                Phase.FAILED,
                verdict=verdict(
                    "Failed", "CandidateErrors", "KeyError: \"purchase_count\"\n\u2265 1% in 'history=<1' \u2014 \\o/"
                ),
            )
        ),
        "Degraded",
        "CandidateErrors: KeyError: \"purchase_count\"\n\u2265 1% in 'history=<1' \u2014 \\o/",
    ),
    "error": (
        shadow(
            make_status(
                Phase.ERROR,
                ready=("False", reasons.INVALID_JSON_PATH, "spec.recording.predictionPath: unexpected ']' at 3"),
            )
        ),
        "Degraded",
        "spec.recording.predictionPath: unexpected ']' at 3",
    ),
    "error without a Ready message": (
        shadow(make_status(Phase.ERROR)),
        "Degraded",
        "The operator reported an error",
    ),
    "a phase from the future": (
        shadow({"phase": "Paused", "observedGeneration": GENERATION}),
        "Unknown",
        "Unknown phase: Paused",
    ),
    "no phase": (
        shadow({"observedGeneration": GENERATION}),
        "Unknown",
        "The operator has not reported a phase",
    ),
}


@pytest.mark.parametrize(("obj", "status", "message"), CASES.values(), ids=CASES.keys())
def test_health(lua: str, tmp_path: Path, obj: dict[str, Any], status: str, message: str) -> None:
    assert health(lua, obj, tmp_path) == (status, message)


def test_every_phase_is_covered() -> None:
    phases = {case[0].get("status", {}).get("phase") for case in CASES.values()}
    assert {p.value for p in Phase} <= phases


def test_the_configmap_patch_embeds_the_script_verbatim() -> None:
    patch = yaml.safe_load(PATCH.read_text(encoding="utf-8"))
    assert patch["apiVersion"] == "v1"
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["metadata"]["namespace"] == "argocd"
    assert list(patch["data"]) == [HEALTH_KEY]
    assert patch["data"][HEALTH_KEY] == SCRIPT.read_text(encoding="utf-8"), (
        "manifests/gitops/argocd-cm-patch.yaml is out of date with argocd-health.lua: "
        "regenerate it with the command in manifests/gitops/README.md"
    )


def test_the_readme_names_the_configmap_key() -> None:
    assert f"{HEALTH_KEY}: |" in (GITOPS / "README.md").read_text(encoding="utf-8")
