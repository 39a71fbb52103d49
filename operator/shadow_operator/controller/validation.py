"""What the schema cannot check: paths, schedules, and the spec against the live cluster.

Pure: takes the parsed object and the observed facts, returns problems that each name
the field and say what to do. An empty list means the spec can be reconciled.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.durations import parse_duration
from ..api.v1alpha1.containers import MODEL_CONTAINER
from ..contract import reasons
from ..contract.jsonpath import JsonPathError, compile_path
from ..contract.naming import RECORDER_ADMIN_PORT, RECORDER_HTTP_PORT
from ..contract.resource import ShadowDeployment
from .builders import candidate_pod_labels, cron_schedule
from .builders.recorder import CONFIG_VOLUME, CONTAINER_NAME, RECORDS_VOLUME
from .observed import ALLOW_ADOPTION_ANNOTATION, Observed


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def validate(sd: ShadowDeployment, observed: Observed) -> list[Problem]:
    return [*_static_problems(sd), *_cluster_problems(sd, observed)]


def json_paths(sd: ShadowDeployment) -> list[tuple[str, str]]:
    """(field, path) for every JSON path in the spec."""
    recording = sd.spec.recording
    return [
        ("spec.recording.predictionPath", recording.prediction_path),
        *((f"spec.recording.segments[{i}].path", s.path) for i, s in enumerate(recording.segments)),
        *((f"spec.recording.features[{i}]", p) for i, p in enumerate(recording.features)),
        *((f"spec.recording.redact[{i}]", p) for i, p in enumerate(recording.redact)),
    ]


def _static_problems(sd: ShadowDeployment) -> list[Problem]:
    problems = []
    for field, path in json_paths(sd):
        try:
            compile_path(path)
        except JsonPathError as error:
            problems.append(Problem(reasons.INVALID_JSON_PATH, f"{field}: {error}"))
    try:
        cron_schedule(sd.spec.analysis.interval)
    except ValueError as error:
        problems.append(Problem(reasons.INVALID_INTERVAL, str(error)))
    except OverflowError:
        pass  # _duration_problems names it
    names = [segment.name for segment in sd.spec.recording.segments]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        problems.append(
            Problem(reasons.INVALID_SPEC, f"spec.recording.segments: names must be unique, repeated: {duplicates}")
        )
    problems += _duration_problems(sd)
    problems += _pod_template_problems(sd)
    if sd.spec.traffic.router == "istio":
        problems += _recorder_problems(sd)
    problems += _retention_problems(sd)
    if sd.spec.analysis.baseline is not None and sd.spec.primary.deployment_ref is not None:
        problems.append(
            Problem(
                reasons.INVALID_SPEC,
                "spec.analysis.baseline: needs spec.primary.image (the baseline is a copy of the primary the "
                "operator runs from its image and settings); with spec.primary.deploymentRef, remove baseline.",
            )
        )
    return problems


def _duration_problems(sd: ShadowDeployment) -> list[Problem]:
    """The schema's pattern admits durations too long to compute with (e.g. 30000000000h)."""
    spec, problems = sd.spec, []
    for field, value in (
        ("spec.analysis.interval", spec.analysis.interval),
        ("spec.analysis.minDuration", spec.analysis.min_duration),
        ("spec.recording.sink.retention.maxAge", spec.recording.sink.retention.max_age),
        ("spec.traffic.candidateTimeout", spec.traffic.candidate_timeout),
        ("spec.traffic.routerGracePeriod", spec.traffic.router_grace_period),
    ):
        try:
            parse_duration(value)
        except OverflowError:
            problems.append(
                Problem(reasons.INVALID_SPEC, f"{field}: {value} is too long to compute with; use a shorter duration.")
            )
        except ValueError:
            pass  # the schema's pattern admits it; parse_duration's own message comes elsewhere
    return problems


def _retention_problems(sd: ShadowDeployment) -> list[Problem]:
    """Limits under which the collector would delete records the comparison job still needs."""
    sink, problems = sd.spec.recording.sink, []
    if sink.retention.max_bytes < 2 * sink.rotate_bytes:
        problems.append(
            Problem(
                reasons.INVALID_SPEC,
                f"spec.recording.sink.retention.maxBytes: {sink.retention.max_bytes} is less than twice "
                f"spec.recording.sink.rotateBytes ({sink.rotate_bytes}), so the collector would delete each "
                f"record file about as soon as it fills; raise maxBytes to at least {2 * sink.rotate_bytes} "
                "(better: rotateBytes times the number of router or model Pods, times a few) or lower rotateBytes.",
            )
        )
    max_age, min_duration = sink.retention.max_age, sd.spec.analysis.min_duration
    try:
        too_short = parse_duration(max_age) < parse_duration(min_duration)
    except (ValueError, OverflowError):
        too_short = False  # the schema's pattern admits it; parse_duration's own message comes elsewhere
    if too_short:
        problems.append(
            Problem(
                reasons.INVALID_SPEC,
                f"spec.recording.sink.retention.maxAge: {max_age} is shorter than spec.analysis.minDuration "
                f"({min_duration}), so the records of a whole business cycle are never kept together; set maxAge "
                f"to at least {min_duration} (the default 336h keeps two weeks).",
            )
        )
    return problems


def _recorder_problems(sd: ShadowDeployment) -> list[Problem]:
    """Istio mode adds a recorder sidecar to the model Pods the operator runs: nothing there may clash with it."""
    workloads = [("candidate", sd.spec.candidate)]
    if sd.spec.primary.deployment_ref is None:
        workloads.insert(0, ("primary", sd.spec.primary))
    problems = []
    for role, workload in workloads:
        if workload.port in (RECORDER_HTTP_PORT, RECORDER_ADMIN_PORT):
            problems.append(
                Problem(
                    reasons.INVALID_SPEC,
                    f"spec.{role}.port: {workload.port} is taken by the recorder sidecar, which listens on "
                    f"{RECORDER_HTTP_PORT} and {RECORDER_ADMIN_PORT} in the model's Pod in istio mode; "
                    "serve the model on another port, e.g. 8080.",
                )
            )
        pod_spec = workload.pod_template.spec if workload.pod_template else None
        for field, entries, reserved in (
            ("containers", pod_spec.containers if pod_spec else None, {CONTAINER_NAME}),
            ("volumes", pod_spec.volumes if pod_spec else None, {CONFIG_VOLUME, RECORDS_VOLUME}),
        ):
            for index, entry in enumerate(entries or []):
                name = entry.name
                if name in reserved:
                    problems.append(
                        Problem(
                            reasons.INVALID_SPEC,
                            f"spec.{role}.podTemplate.spec.{field}[{index}].name: {name!r} is the name of the "
                            "recorder sidecar's own entry in istio mode; rename it.",
                        )
                    )
    return problems


def _pod_template_problems(sd: ShadowDeployment) -> list[Problem]:
    """What the podTemplate's schema cannot say: reserved PriorityClasses, the model entry's limits,
    sidecars without an image, repeated names and mounts of volumes the template does not declare."""
    problems = []
    for role, workload in (("primary", sd.spec.primary), ("candidate", sd.spec.candidate)):
        pod = workload.pod_template.spec if workload.pod_template else None
        if pod is None:
            continue
        where = f"spec.{role}.podTemplate.spec"
        if pod.priority_class_name and pod.priority_class_name.startswith("system-"):
            problems.append(
                Problem(
                    reasons.INVALID_SPEC,
                    f"{where}.priorityClassName: {pod.priority_class_name} is reserved for the cluster's own "
                    "components; use a PriorityClass your cluster defines for workloads, or leave it out.",
                )
            )
        volumes = [volume.name for volume in pod.volumes or []]
        containers = [container.name for container in pod.containers or []]
        for field, names in (("volumes", volumes), ("containers", containers)):
            if repeated := sorted({name for name in names if names.count(name) > 1}):
                problems.append(
                    Problem(reasons.INVALID_SPEC, f"{where}.{field}: names must be unique, repeated: {repeated}")
                )
        for index, container in enumerate(pod.containers or []):
            entry = f"{where}.containers[{index}]"
            if container.name == MODEL_CONTAINER:
                for field, instead in (("image", "image"), ("command", "args"), ("args", "args"), ("ports", "port")):
                    if getattr(container, field) is not None:
                        problems.append(
                            Problem(
                                reasons.INVALID_SPEC,
                                f"{entry}.{field}: the entry named model adds env, envFrom, resources, "
                                f"volumeMounts and securityContext to the model container; set spec.{role}.{instead} "
                                "instead.",
                            )
                        )
            elif container.image is None:
                problems.append(
                    Problem(
                        reasons.INVALID_SPEC,
                        f"{entry}.image: {container.name} is a sidecar (only the entry named model adds to the "
                        "model container) and needs an image; set one, or name the entry model.",
                    )
                )
            for mount_index, mount in enumerate(container.volume_mounts or []):
                if mount.name not in volumes:
                    problems.append(
                        Problem(
                            reasons.INVALID_SPEC,
                            f"{entry}.volumeMounts[{mount_index}].name: {mount.name!r} is not a volume of "
                            f"{where}.volumes; declare it there (configMap, secret, persistentVolumeClaim, "
                            "emptyDir or projected) or fix the name.",
                        )
                    )
    return problems


def _cluster_problems(sd: ShadowDeployment, observed: Observed) -> list[Problem]:
    spec = sd.spec
    service_name, port = spec.service.name, spec.service.port
    problems = []
    if observed.rival_claims:
        problems.append(
            Problem(
                reasons.SERVICE_CLAIMED,
                f"Service {service_name} is already shadowed by ShadowDeployment {observed.rival_claims[0]}, "
                "created earlier; a Service can have one shadow at a time: delete that one or set "
                "spec.service.name to another Service.",
            )
        )
    ref = spec.primary.deployment_ref
    if ref is not None and observed.primary_ref is None:
        problems.append(
            Problem(
                reasons.PRIMARY_DEPLOYMENT_NOT_FOUND,
                f"spec.primary.deploymentRef: Deployment {ref.name} not found in namespace {sd.namespace}: "
                "fix the name, create the Deployment, or set spec.primary.image to let the operator run the primary.",
            )
        )
    service = observed.service
    if service is None:
        if ref is not None:
            problems.append(
                Problem(
                    reasons.SERVICE_NOT_FOUND,
                    f"spec.service.name: Service {service_name} not found in namespace {sd.namespace}; with "
                    "spec.primary.deploymentRef the Service that clients call must already exist.",
                )
            )
        return problems
    if sd.identity.uid in service.owner_uids:
        return problems  # the operator created it; its shape is the builders'
    if ref is None and not service.allows_adoption:
        problems.append(
            Problem(
                reasons.INVALID_SPEC,
                f"spec.service.name: Service {service_name} already exists and was not created by this "
                "ShadowDeployment; with spec.primary.image the operator's primary Pods would take over its "
                "traffic, so they may do that only if the Service opts in: whoever may edit it annotates it "
                f'{ALLOW_ADOPTION_ANNOTATION}: "true" (kubectl annotate service {service_name} '
                f"{ALLOW_ADOPTION_ANNOTATION}=true). Otherwise set spec.primary.deploymentRef to the Deployment "
                "it serves today, or set spec.service.name to a Service that does not exist yet (the operator "
                "creates it).",
            )
        )
    if service.port(port) is None:
        available = ", ".join(str(p.get("port")) for p in service.ports) or "none"
        problems.append(
            Problem(
                reasons.SERVICE_PORT_MISMATCH,
                f"spec.service.port: Service {service_name} has no port {port} (its ports: {available}); "
                "set spec.service.port to the port clients call.",
            )
        )
    selector = service.serving_selector()
    if not selector:
        problems.append(
            Problem(
                reasons.SERVICE_NOT_SWITCHABLE,
                f"spec.service.name: Service {service_name} has no selector (headless or external endpoints); "
                "point spec.service.name at a Service that selects the primary's Pods.",
            )
        )
        return problems
    if _selects(selector, candidate_pod_labels(sd)):
        problems.append(
            Problem(
                reasons.CANDIDATE_WOULD_SERVE_USERS,
                f"spec.candidate.podTemplate.metadata.labels: the candidate's Pods would match Service "
                f"{service_name}'s selector {selector} and receive live traffic; remove those labels.",
            )
        )
    if observed.primary_ref is not None and not _selects(selector, observed.primary_ref.pod_labels):
        problems.append(
            Problem(
                reasons.PRIMARY_DEPLOYMENT_UNUSABLE,
                f"spec.primary.deploymentRef: Service {service_name}'s selector {selector} does not select the Pods "
                f"of Deployment {observed.primary_ref.name}; reference the Deployment the Service sends traffic to.",
            )
        )
    if spec.traffic.router == "builtin" and len(service.ports) > 1 and service.original_routing is None:
        problems.append(
            Problem(
                reasons.SERVICE_NOT_SWITCHABLE,
                f"spec.traffic.router: the builtin router takes over all of Service {service_name}'s Pods but it "
                f"has {len(service.ports)} ports; use a single-port Service or router: istio.",
            )
        )
    return problems


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
