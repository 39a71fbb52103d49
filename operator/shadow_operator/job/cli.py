"""`shadowctl analyze` and `shadowctl report`: the comparison job and its reader."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import yaml

from ..contract.report import Report, report_name
from ..contract.resource import ShadowDeployment, SpecInvalid, parse
from ..kube.client import Kube, KubeError
from .render import FORMATS

EXIT_CODES = {"Passed": 0, "Failed": 1, "Inconclusive": 2}


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="judge the candidate from records (and Prometheus); print or publish the report",
        description="Reads the ShadowDeployment from the cluster (--name) or a file (--file), the records, "
        "and Prometheus when the spec names one; prints the report and, with --publish, writes it to "
        "the ConfigMap <name>-report that the operator reflects into status.",
    )
    source = analyze.add_mutually_exclusive_group(required=True)
    source.add_argument("--name", help="ShadowDeployment to read from the cluster (current KUBECONFIG or in-cluster)")
    source.add_argument("--file", type=Path, help="ShadowDeployment YAML to read instead")
    analyze.add_argument("--namespace", "-n", default=None, help="namespace (default: the file's, else default)")
    analyze.add_argument(
        "--records", type=Path, nargs="+", help="record files or directories (default: spec.recording.sink.path)"
    )
    analyze.add_argument(
        "--records-from",
        metavar="URL",
        help="read the records from this collector, e.g. http://recommender-collector.ml.svc.cluster.local:8090; "
        "with --state or --cluster-state only the bytes new since the previous run (what the CronJob does), "
        "else every record (GET URL/v1/records)",
    )
    analyze.add_argument(
        "--records-max-bytes",
        type=int,
        default=4 << 30,
        help="refuse to read more than this from --records-from in one run (default 4 GiB)",
    )
    kept = analyze.add_mutually_exclusive_group()
    kept.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="incremental analysis: fold only the records that arrived since the previous run into the "
        "aggregates kept in FILE (created, and rebuilt from every record when the candidate or the recording "
        "spec changes); without it every record is read (docs/verdict.md, Incremental analysis)",
    )
    kept.add_argument(
        "--cluster-state",
        action="store_true",
        help="incremental analysis with the state kept in the ConfigMap <name>-analysis-state, which the operator "
        "creates and only this object's job may write (needs --name); what the CronJob does",
    )
    analyze.add_argument(
        "--rebuild-state",
        action="store_true",
        help="with --state or --cluster-state: ignore the kept state, fold every record again and keep the "
        "result (a full recomputation); without a state every run is one anyway",
    )
    analyze.add_argument("--prometheus", help="Prometheus URL, overriding spec.analysis.prometheus.url")
    analyze.add_argument("--publish", action="store_true", help="write the report ConfigMap for the operator")
    _output_arguments(analyze)
    analyze.add_argument(
        "--exit-code", action="store_true", help="exit 0 on Passed, 1 on Failed, 2 on Inconclusive (for CI)"
    )
    analyze.set_defaults(handler=_guarded(_analyze))

    report = commands.add_parser("report", help="print the latest published report of a ShadowDeployment")
    report.add_argument("name", nargs="?", help="ShadowDeployment name")
    report.add_argument("--namespace", "-n", default="default")
    report.add_argument("--file", type=Path, help="a report.json to render instead of the cluster's")
    _output_arguments(report)
    report.set_defaults(handler=_guarded(_report))


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", "-o", choices=FORMATS, default="table")
    parser.add_argument("--output", type=Path, help="write to this file instead of standard output")


def _guarded(handler):
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except CommandError as error:
            print(f"shadowctl {args.command}: {error}", file=sys.stderr)
            return 3

    return run


def _load_shadow(args: argparse.Namespace, kube: Kube | None) -> ShadowDeployment:
    if args.file is not None:
        try:
            body = yaml.safe_load(args.file.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise CommandError(f"cannot read {args.file}: {error}") from None
        if not isinstance(body, dict):
            raise CommandError(f"{args.file}: not a ShadowDeployment")
        metadata = body.setdefault("metadata", {})
        metadata["namespace"] = args.namespace or metadata.get("namespace") or "default"
    else:
        namespace = args.namespace or "default"
        try:
            body = kube.get("ShadowDeployment", namespace, args.name)
        except KubeError as error:
            raise CommandError(f"cannot read ShadowDeployment {namespace}/{args.name}: {error}") from None
        if body is None:
            raise CommandError(f"ShadowDeployment {namespace}/{args.name} not found")
    try:
        return parse(body)
    except SpecInvalid as invalid:
        raise CommandError("; ".join(invalid.problems)) from None


def _kube() -> Kube:
    try:
        return Kube.from_environment()
    except Exception as error:  # the kubernetes client raises several unrelated types here
        raise CommandError(f"no cluster credentials (in-cluster or KUBECONFIG): {error}") from None


def _analyze(args: argparse.Namespace) -> int:
    from .job import analyze
    from .remote import CollectorSource, download_records

    if args.cluster_state and not args.name:
        raise CommandError("--cluster-state keeps the state in the ShadowDeployment's ConfigMap: give --name")
    if args.rebuild_state and not (args.state or args.cluster_state):
        raise CommandError("--rebuild-state rebuilds a kept state: give --state FILE or --cluster-state")
    kube = _kube() if (args.name or args.publish) else None
    sd = _load_shadow(args, kube)
    state = _state_store(args, kube, sd)
    with contextlib.ExitStack() as stack:
        problems = []
        source = None
        if args.records_from and state is not None:
            # Incremental: only the bytes past each part's cursor are read (job/remote.py).
            source = CollectorSource(args.records_from, args.records_max_bytes)
            records = []
        elif args.records_from:
            try:  # $TMPDIR: the CronJob mounts an emptyDir at /tmp under a read-only root filesystem
                scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shadow-records-")))
            except OSError as error:
                raise CommandError(
                    f"no writable temporary directory for --records-from (set TMPDIR): {error}"
                ) from None
            downloaded, problem = download_records(args.records_from, scratch, args.records_max_bytes)
            records = [downloaded] if downloaded else []
            records += args.records or []
            problems += [problem] if problem else []
        else:
            records = args.records or [Path(sd.spec.recording.sink.path)]
        report = analyze(
            sd, records, now=datetime.now(UTC), prometheus_url=args.prometheus, problems=problems, state=state,
            source=source,
        )  # fmt: skip
    if source is not None:
        print(
            f"read {source.bytes_read} record bytes from {args.records_from} in {source.requests} requests",
            file=sys.stderr,
        )
    if args.publish:
        _publish(kube, sd, report)
    _emit(report, args)
    return EXIT_CODES[report.verdict.result] if args.exit_code else 0


def _state_store(args: argparse.Namespace, kube: Kube | None, sd: ShadowDeployment):
    """Where the incremental state is kept (--state FILE, --cluster-state), or None: a full run."""
    from .incremental_state import Rebuilding
    from .state_configmap import ConfigMapStore
    from .state_file import FileStore

    if args.state is not None:
        store = FileStore(args.state)
    elif args.cluster_state:
        store = ConfigMapStore(kube, sd)
    else:
        return None
    return Rebuilding(store) if args.rebuild_state else store


def _publish(kube: Kube, sd: ShadowDeployment, report: Report) -> None:
    """Write the report into the ConfigMap the operator made for it; the job may not create one."""
    from .publish import publish_operations, report_owner_problem

    name = report_name(sd.name)
    try:
        body = kube.get("ConfigMap", sd.namespace, name)
        problem = report_owner_problem(sd, body)
        if problem:
            raise CommandError(f"cannot publish the report: {problem}")
        kube.json_patch("ConfigMap", sd.namespace, name, publish_operations(body, report))
    except KubeError as error:
        raise CommandError(f"cannot publish the report to ConfigMap {sd.namespace}/{name}: {error}") from None


def _report(args: argparse.Namespace) -> int:
    if args.file is not None:
        try:
            report = Report.model_validate_json(args.file.read_text())
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot read a report from {args.file}: {error}") from None
    else:
        if not args.name:
            raise CommandError("give a ShadowDeployment name or --file")
        from ..contract.report import trusted_report

        kube = _kube()
        try:
            shadow = kube.get("ShadowDeployment", args.namespace, args.name)
            body = kube.get("ConfigMap", args.namespace, report_name(args.name))
        except KubeError as error:
            raise CommandError(f"cannot read the report: {error}") from None
        if shadow is None:
            raise CommandError(f"ShadowDeployment {args.namespace}/{args.name} not found")
        # The operator's rules: a report counts only in the ConfigMap this object controls, naming it.
        report, untrusted = trusted_report(body, args.namespace, args.name, shadow["metadata"].get("uid", ""))
        if untrusted:
            raise CommandError(untrusted)
        if report is None:
            raise CommandError(
                f"no report for {args.namespace}/{args.name} yet: the comparison job publishes one every "
                "analysis.interval (or run `shadowctl analyze --name ... --publish`)"
            )
    _emit(report, args)
    return 0


def _emit(report: Report, args: argparse.Namespace) -> None:
    from .render import render

    text = render(report, args.format)
    if args.output is None and args.format == "html":
        args.output = Path(f"shadow-report-{report.shadow.replace('/', '-')}.html")
    if args.output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        args.output.write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
