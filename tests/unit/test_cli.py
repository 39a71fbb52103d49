"""`shadowctl validate` offline, and the commands the operator's own image is started with."""

from __future__ import annotations

import copy

import pytest
import yaml

from shadow_operator.cli import build_parser, main
from shadow_operator.controller.builders import desired_state
from shadow_operator.controller.observed import Observed

from .factories import CONTRACT_DOCUMENT, CONTRACT_YAML, make_sd


def _write(tmp_path, name: str, *documents) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return str(path)


def _with(path: tuple[str, ...], value) -> dict:
    document = copy.deepcopy(CONTRACT_DOCUMENT)
    node = document["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return document


def test_contract_file_is_valid(tmp_path, capsys):
    path = tmp_path / "recommender.yaml"
    path.write_text(CONTRACT_YAML)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: recommender: valid\n"


def test_mirror_percent_out_of_range_is_refused(tmp_path, capsys):
    path = _write(tmp_path, "bad.yaml", _with(("traffic", "mirrorPercent"), 150))
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert f"{path}: recommender: spec.traffic.mirrorPercent: " in out
    assert "valid\n" not in out


def test_unsupported_json_path_is_refused(tmp_path, capsys):
    path = _write(tmp_path, "bad.yaml", _with(("recording", "features"), ["$.features[*]"]))
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert f"{path}: recommender: spec.recording.features[0]: " in out
    assert "wildcards and filters are not supported" in out


def test_unschedulable_interval_is_refused(tmp_path, capsys):
    path = _write(tmp_path, "bad.yaml", _with(("analysis", "interval"), "7m"))
    assert main(["validate", path]) == 1
    assert "analysis.interval '7m' cannot be run on a schedule" in capsys.readouterr().out


def test_cluster_only_checks_are_skipped_offline(tmp_path, capsys):
    document = copy.deepcopy(CONTRACT_DOCUMENT)
    document["spec"]["primary"] = {"deploymentRef": {"name": "recsys"}}
    path = _write(tmp_path, "ref.yaml", document)
    assert main(["validate", path]) == 0
    assert capsys.readouterr().out.endswith("recommender: valid\n")


def test_other_kinds_are_skipped_and_every_shadow_deployment_is_checked(tmp_path, capsys):
    good = copy.deepcopy(CONTRACT_DOCUMENT)
    good["metadata"]["name"] = "good"
    bad = _with(("recording", "sampleRate"), 1.5)
    bad["metadata"]["name"] = "bad"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "recommender"}, "spec": {"oops": 1}}
    path = _write(tmp_path, "all.yaml", service, good, bad)
    assert main(["validate", path]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: good: valid"
    assert lines[1].startswith(f"{path}: bad: spec.recording.sampleRate: ")
    assert len(lines) == 2


def test_several_files_fail_if_any_fails(tmp_path, capsys):
    good = _write(tmp_path, "good.yaml", CONTRACT_DOCUMENT)
    bad = _write(tmp_path, "bad.yaml", _with(("traffic", "router"), "linkerd"))
    assert main(["validate", good, bad]) == 1
    out = capsys.readouterr().out
    assert f"{good}: recommender: valid" in out
    assert f"{bad}: recommender: spec.traffic.router: " in out


def test_unreadable_files_fail(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    missing = tmp_path / "missing.yaml"
    assert main(["validate", str(broken), str(missing)]) == 1
    out = capsys.readouterr().out
    assert f"{broken}: cannot read: " in out
    assert f"{missing}: cannot read: " in out


def test_a_document_that_is_not_a_map_is_reported(tmp_path, capsys):
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n")
    assert main(["validate", str(path)]) == 1


def test_validate_needs_a_file():
    with pytest.raises(SystemExit) as caught:
        main(["validate"])
    assert caught.value.code == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("shadowctl ")


def _image_commands() -> dict[str, list[str]]:
    """The args each child running the operator's image is started with (ENTRYPOINT is shadowctl)."""
    image = "shadow-operator:test"
    commands = {}
    for child in desired_state(make_sd({"traffic": {"router": "builtin"}}), Observed(), image).children:
        if child["kind"] == "CronJob":
            pod = child["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif child["kind"] == "Deployment":
            pod = child["spec"]["template"]["spec"]
        else:
            continue
        for container in pod["containers"]:
            if container["image"] == image:
                commands[f"{child['kind']} {child['metadata']['name']}"] = container["args"]
    return commands


def test_the_operator_image_runs_the_router_and_the_comparison_job():
    assert set(_image_commands()) == {
        "Deployment recommender-router",
        "Deployment recommender-collector",
        "CronJob recommender-analysis",
    }


@pytest.mark.parametrize(
    "child",
    ["Deployment recommender-router", "Deployment recommender-collector", "CronJob recommender-analysis"],
)
def test_shadowctl_accepts_the_commands_its_children_run(child):
    args = build_parser().parse_args(_image_commands()[child])
    assert args.command == child.split()[1].rsplit("-", 1)[1].replace("analysis", "analyze")
