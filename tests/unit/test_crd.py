"""The generated CRD: committed files match, schema is structural and documented, columns and names."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shadow_operator.api.crd import crd_manifest, openapi_schema
from shadow_operator.api.durations import DURATION_PATTERN
from shadow_operator.api.reference import SPEC_BEGIN, SPEC_END, with_spec_reference
from shadow_operator.api.v1alpha1 import ShadowDeploymentSpec
from shadow_operator.cli import (
    CRD_PATH,
    GENERATED_HEADER,
    NAMESPACED_ROLE_PATH,
    README_PATH,
    REFERENCE_PATH,
    ROLE_PATH,
    WEBHOOK_PATH,
    generated_manifests,
)

from .factories import CONTRACT_DOCUMENT

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return crd_manifest()


@pytest.fixture(scope="module")
def version(crd) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    return only


@pytest.fixture(scope="module")
def schema(version) -> dict[str, Any]:
    return version["schema"]["openAPIV3Schema"]


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node under `node`, with a readable path (`.spec.traffic.mirrorPercent`, `[]` for items)."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, option in enumerate(node.get(key) or []):
            yield from _nodes(option, f"{path}<{key}{i}>")
    if isinstance(node.get("not"), dict):
        yield from _nodes(node["not"], f"{path}<not>")


def _spec_and_status(schema) -> Iterator[tuple[str, dict[str, Any]]]:
    for root in ("spec", "status"):
        yield from _nodes(schema["properties"][root], f".{root}")


def _at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.strip(".").split("."):
        node = node["properties"][part]
    return node


# -- drift ---------------------------------------------------------------------------


@pytest.mark.parametrize("relative", [CRD_PATH, ROLE_PATH, NAMESPACED_ROLE_PATH, WEBHOOK_PATH, REFERENCE_PATH], ids=str)
def test_committed_manifest_matches_the_generator(relative):
    generated = generated_manifests()[relative]
    committed = (REPO / relative).read_text()
    assert committed == generated, (
        f"{relative} is out of date with the API types: run `make manifests` (shadowctl manifests) and commit it"
    )


def test_the_readme_shows_every_spec_field_as_generated():
    readme = (REPO / README_PATH).read_text()
    assert SPEC_BEGIN in readme and SPEC_END in readme
    assert readme == with_spec_reference(readme), "README.md's spec reference is out of date: run `make manifests`"
    section = readme[readme.index(SPEC_BEGIN) : readme.index(SPEC_END)]
    assert "| `spec.recording.eventTimePath` |" in section and "| `spec.analysis.thresholds.minAgreement` |" in section


def test_the_spec_reference_is_replaced_between_its_markers_only():
    stale = f"intro\n{SPEC_BEGIN}\n| old |\n{SPEC_END}\noutro\n"
    fresh = with_spec_reference(stale)
    assert fresh.startswith(f"intro\n{SPEC_BEGIN}\n| field |") and fresh.endswith(f"{SPEC_END}\noutro\n")
    assert "| old |" not in fresh
    assert with_spec_reference("no markers here") == "no markers here"


def test_generated_manifests_are_the_crd_and_role_with_the_header():
    files = generated_manifests()
    assert set(files) == {CRD_PATH, ROLE_PATH, NAMESPACED_ROLE_PATH, WEBHOOK_PATH, REFERENCE_PATH}
    for path in (CRD_PATH, ROLE_PATH, NAMESPACED_ROLE_PATH, WEBHOOK_PATH):
        assert files[path].startswith(GENERATED_HEADER)
    assert "| `spec.traffic.mirrorPercent` | number |" in files[REFERENCE_PATH]
    assert yaml.safe_load(files[CRD_PATH]) == crd_manifest()
    assert yaml.safe_load(files[ROLE_PATH])["kind"] == "ClusterRole"
    assert yaml.safe_load(files[NAMESPACED_ROLE_PATH])["kind"] == "Role"


def test_manifests_command_writes_what_the_drift_test_compares(tmp_path, capsys):
    from shadow_operator.cli import main

    assert main(["manifests", "--root", str(tmp_path)]) == 0
    for relative, text in generated_manifests().items():
        assert (tmp_path / relative).read_text() == text
    assert "wrote" in capsys.readouterr().out


# -- names, versions, columns ------------------------------------------------------------


def test_names_and_scope(crd, version):
    assert crd["metadata"]["name"] == "shadowdeployments.shadow.mlops.dev"
    spec = crd["spec"]
    assert spec["group"] == "shadow.mlops.dev"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == "ShadowDeployment"
    assert names["plural"] == "shadowdeployments"
    assert names["singular"] == "shadowdeployment"
    assert names["shortNames"] == ["shadow", "sd"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


def test_status_subresource(version):
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version):
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Primary", "Candidate", "Mirror%", "Phase", "Verdict", "Coverage", "Age"]
    by_name = {c["name"]: c for c in columns}
    assert by_name["Mirror%"]["jsonPath"] == ".spec.traffic.mirrorPercent"
    assert by_name["Mirror%"]["type"] == "number"
    assert by_name["Phase"]["jsonPath"] == ".status.phase"
    assert by_name["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def test_every_printer_column_points_at_a_field_of_the_schema(version, schema):
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".metadata."):
            continue
        node = _at(schema, path)
        assert column["type"] == {"number": "number", "string": "string"}[node["type"]], path


# -- structural schema -----------------------------------------------------------------------


def test_root_requires_spec_and_keeps_metadata_open(schema):
    assert schema["type"] == "object"
    assert schema["required"] == ["spec"]
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_every_property_is_described(schema):
    undocumented = [
        f"{path}.{name}"
        for path, node in _spec_and_status(schema)
        for name, prop in (node.get("properties") or {}).items()
        if not (isinstance(prop.get("description"), str) and prop["description"].strip())
    ]
    assert undocumented == []
    # The walk really reaches deep fields.
    assert _at(schema, ".spec.analysis.thresholds.latencyRatio.p99")["description"]
    assert _at(schema, ".status.verdict")["properties"]["checks"]["items"]["properties"]["passed"]["description"]


@pytest.mark.parametrize("key", ["$ref", "$defs", "title", "definitions", "const", "discriminator", "nullable"])
def test_no_json_schema_only_keywords(schema, key):
    offenders = [path for path, node in _nodes(schema) if key in node]
    assert offenders == []


def test_any_of_only_for_int_or_string(schema):
    for path, node in _nodes(schema):
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path


def test_every_node_with_properties_is_an_object(schema):
    offenders = [path for path, node in _nodes(schema) if "properties" in node and node.get("type") != "object"]
    assert offenders == []


def test_every_value_node_has_a_type(schema):
    """Structural: every field has a type, except int-or-string and the insides of logical junctors."""
    offenders = [
        path
        for path, node in _nodes(schema)
        if "<" not in path and "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert offenders == []


def test_logical_junctors_only_constrain(schema):
    """Inside oneOf/anyOf/allOf/not a structural schema may not set type, description, default and the like."""
    forbidden = {"type", "description", "default", "additionalProperties", "nullable", "properties", "items"}
    for path, node in _nodes(schema):
        if node.get("x-kubernetes-int-or-string"):
            continue  # its anyOf of types is the one exception, checked above
        options = [*(node.get("oneOf") or []), *(node.get("anyOf") or []), *(node.get("allOf") or [])]
        if isinstance(node.get("not"), dict):
            options.append(node["not"])
        for option in options:
            assert not (forbidden & set(option)), path


def test_primary_requires_exactly_one_source(schema):
    primary = _at(schema, ".spec.primary")
    assert primary["oneOf"] == [{"required": ["image"]}, {"required": ["deploymentRef"]}]


def test_no_boolean_false_additional_properties(schema):
    assert [path for path, node in _nodes(schema) if node.get("additionalProperties") is False] == []


def test_status_has_no_defaults(schema):
    assert [path for path, node in _nodes(schema["properties"]["status"], ".status") if "default" in node] == []


def test_spec_defaults_match_the_models(schema):
    traffic = _at(schema, ".spec.traffic")["properties"]
    assert traffic["router"]["default"] == "istio"
    assert traffic["candidateTimeout"]["default"] == "2s"
    assert traffic["maxInFlight"]["default"] == 256
    analysis = _at(schema, ".spec.analysis")["properties"]
    assert (analysis["interval"]["default"], analysis["minDuration"]["default"]) == ("10m", "168h")
    # Optional fields have no `default: null` (the API server would store the null).
    assert [path for path, node in _nodes(schema) if "default" in node and node["default"] is None] == []


def test_mirror_percent_bounds(schema):
    mirror = _at(schema, ".spec.traffic.mirrorPercent")
    assert (mirror["type"], mirror["minimum"], mirror["maximum"]) == ("number", 0, 100)
    assert "exclusiveMinimum" not in mirror and "exclusiveMaximum" not in mirror


def test_exclusive_bounds_use_the_openapi_v3_boolean_form(schema):
    p99 = _at(schema, ".spec.analysis.thresholds.latencyRatio.p99")
    assert (p99["minimum"], p99["exclusiveMinimum"]) == (0, True)
    confidence = _at(schema, ".spec.analysis.confidence")
    assert (confidence["minimum"], confidence["exclusiveMinimum"]) == (0.5, True)
    assert (confidence["maximum"], confidence["exclusiveMaximum"]) == (1, True)


@pytest.mark.parametrize(
    "field",
    [
        ".spec.traffic.candidateTimeout",
        ".spec.analysis.interval",
        ".spec.analysis.minDuration",
        ".spec.analysis.prometheus.timeout",
    ],
)
def test_durations_carry_the_pattern(schema, field):
    node = _at(schema, field)
    assert (node["type"], node["pattern"]) == ("string", DURATION_PATTERN)


def test_router_is_an_enum(schema):
    router = _at(schema, ".spec.traffic.router")
    assert (router["type"], router["enum"]) == ("string", ["istio", "builtin"])


def test_status_enums(schema):
    assert _at(schema, ".status.phase")["enum"] == [
        "Pending",
        "Deploying",
        "Shadowing",
        "Passed",
        "Failed",
        "Inconclusive",
        "Error",
        "Promoted",
    ]
    assert _at(schema, ".status.verdict.result")["enum"] == ["Passed", "Failed", "Inconclusive"]


def test_pod_template_and_sink_volume_are_typed_allowlists(schema):
    """Issue 11: nothing is passed through; hostPath, hostNetwork, privileged... have no place in the schema."""
    for field in (".spec.primary.podTemplate", ".spec.candidate.podTemplate", ".spec.recording.sink.volume"):
        node = _at(schema, field)
        assert node["type"] == "object", field
        assert "x-kubernetes-preserve-unknown-fields" not in node, field
    pod = _at(schema, ".spec.primary.podTemplate.spec")["properties"]
    assert set(pod) == {
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
        "serviceAccountName",
        "automountServiceAccountToken",
        "securityContext",
        "volumes",
        "containers",
    }
    volume = pod["volumes"]["items"]
    kinds = ["configMap", "secret", "persistentVolumeClaim", "emptyDir", "projected"]
    assert set(volume["properties"]) == {"name", *kinds}
    assert volume["oneOf"] == [{"required": [kind]} for kind in kinds]
    sink = _at(schema, ".spec.recording.sink.volume")
    assert set(sink["properties"]) == {"persistentVolumeClaim", "emptyDir"}
    assert sink["oneOf"] == [{"required": ["persistentVolumeClaim"]}, {"required": ["emptyDir"]}]
    container = pod["containers"]["items"]["properties"]
    assert "hostPort" not in container["ports"]["items"]["properties"]
    assert "privileged" not in container["securityContext"]["properties"]
    assert container["securityContext"]["properties"]["capabilities"]["properties"]["add"]["items"]["enum"] == [
        "NET_BIND_SERVICE"
    ]


def test_quantities_are_int_or_string(schema):
    requests = _at(schema, ".spec.primary.resources.requests")
    assert requests["type"] == "object"
    assert requests["additionalProperties"]["x-kubernetes-int-or-string"] is True


def test_required_fields(schema):
    spec = schema["properties"]["spec"]
    assert sorted(spec["required"]) == ["candidate", "primary", "service"]
    assert sorted(_at(schema, ".spec.service")["required"]) == ["name", "port"]
    assert _at(schema, ".spec.candidate")["required"] == ["image"]


def test_openapi_schema_is_a_fresh_translation_each_time():
    first = openapi_schema(ShadowDeploymentSpec)
    first["properties"]["traffic"]["properties"]["router"]["enum"].append("linkerd")
    assert openapi_schema(ShadowDeploymentSpec)["properties"]["traffic"]["properties"]["router"]["enum"] == [
        "istio",
        "builtin",
    ]


# -- the API server's view, approximated with jsonschema ---------------------------------------


def _validator(schema):
    jsonschema = pytest.importorskip("jsonschema")
    # OpenAPI v3.0 schemas are draft-4 shaped (boolean exclusiveMinimum); x-kubernetes-* keys are ignored.
    return jsonschema.Draft4Validator(schema)


def test_contract_example_is_valid_against_the_crd_schema(schema):
    errors = list(_validator(schema).iter_errors(CONTRACT_DOCUMENT))
    assert errors == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("traffic", "mirrorPercent"), 150),
        (("traffic", "router"), "linkerd"),
        (("analysis", "interval"), "10 minutes"),
        (("recording", "sampleRate"), 1.5),
        (("analysis", "thresholds", "latencyRatio", "p99"), 0),
    ],
)
def test_bad_values_fail_the_crd_schema(schema, path, value):
    document = copy.deepcopy(CONTRACT_DOCUMENT)
    node = document["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = list(_validator(schema).iter_errors(document))
    assert [list(error.absolute_path) for error in errors] == [["spec", *path]]


def test_primary_with_both_sources_fails_the_crd_schema(schema):
    document = copy.deepcopy(CONTRACT_DOCUMENT)
    document["spec"]["primary"]["deploymentRef"] = {"name": "recsys"}
    errors = list(_validator(schema).iter_errors(document))
    assert [list(error.absolute_path) for error in errors] == [["spec", "primary"]]
