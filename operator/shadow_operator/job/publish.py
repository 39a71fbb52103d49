"""The report as the comparison job publishes it: within a ConfigMap's budget, into the ConfigMap
the operator made for it (`<name>-report`, controlled by the ShadowDeployment), by a JSON patch.
"""

from __future__ import annotations

from typing import Any

from ..contract.metric_names import ALL_SEGMENTS
from ..contract.report import REPORT_KEY, DataProblem, Report, SliceStats, check_priority, report_name
from ..contract.resource import ShadowDeployment

# ConfigMaps hold at most 1 MiB (data and metadata together; the API server refuses more). The
# published report keeps well under it, metadata and managedFields included; what does not fit
# (hour windows first, then the least telling segments) is only in the job's own output
# (`shadowctl analyze -o json|html --output FILE`, or the report it prints).
REPORT_BUDGET_BYTES = 768 * 1024
REPORT_TRUNCATED = "ReportTruncated"
# Last resort only (a spec with thousands of segments): the verdict's checks kept in the ConfigMap,
# failing ones first; status shows at most progress.MAX_CHECKS_IN_STATUS anyway.
_MIN_CHECKS = 200
_TEXT_CAP = 1024


def _size(report: Report) -> int:
    return len(report.model_dump_json().encode())


def _slice_priority(report: Report):
    """Segment slices most worth keeping first: those a failed or inconclusive check names, then the busiest."""
    named = {check.segment for check in report.verdict.checks if check.passed is not True}

    def rank(item: SliceStats) -> tuple[int, int, str]:
        return (0 if item.segment in named else 1, -item.pairs, item.segment)

    return rank


def report_within_budget(report: Report, budget: int = REPORT_BUDGET_BYTES) -> Report:
    """The report as published: whole when it fits `budget` bytes of JSON, else trimmed to fit, and saying so.

    In order, until it fits: hour-of-day slices go; segment slices go, the least telling first
    (the overall slice and those a failing check names stay longest); then the lists that grow
    with the spec (checks beyond the failing ones, PromQL queries, problems) are capped and long
    texts cut. The verdict's result, reason and coverage never change: they were decided on the
    whole report. A problem `ReportTruncated` says what was left out and where the whole is.
    """
    if _size(report) <= budget:
        return report
    hours = [s for s in report.slices if s.hour is not None]
    whole = [s for s in report.slices if s.hour is None]
    overall = [s for s in whole if s.segment == ALL_SEGMENTS]
    segments = sorted((s for s in whole if s.segment != ALL_SEGMENTS), key=_slice_priority(report))
    # Room for the note added below.
    room = budget - 512

    def note(trimmed: Report, left_out: list[str]) -> Report:
        problem = DataProblem(
            code=REPORT_TRUNCATED,
            count=len(left_out),
            message=f"The published report leaves out {', '.join(left_out)} to stay under "
            f"{budget // 1024} KiB (a ConfigMap holds 1 MiB); the verdict was decided on everything. "
            "The whole report is in the comparison job's output: "
            "`shadowctl analyze --name <name> -o json --output report.json` (or -o html).",
        )
        return trimmed.model_copy(update={"problems": [*trimmed.problems, problem]})

    left_out = [f"{len(hours)} hour-of-day slices"] if hours else []
    trimmed = report.model_copy(update={"slices": [*overall, *segments]})
    if _size(trimmed) <= room:
        return note(trimmed, left_out)

    # Segment slices, most telling first, while they fit.
    base = report.model_copy(update={"slices": list(overall)})
    used = _size(base)
    kept = []
    for item in segments:
        cost = len(item.model_dump_json().encode()) + 1
        if used + cost > room:
            continue
        kept.append(item)
        used += cost
    dropped = len(segments) - len(kept)
    if dropped:
        left_out.append(f"{dropped} of {len(segments)} segment slices")
    trimmed = report.model_copy(update={"slices": [*overall, *kept]})
    if _size(trimmed) <= room:
        return note(trimmed, left_out)

    # Last resort: the lists and texts that grow with the spec or the data.
    checks = sorted(report.verdict.checks, key=check_priority)
    failing = sum(1 for c in checks if c.passed is False)
    checks = [_cut_check(c) for c in checks[: max(_MIN_CHECKS, failing)]]
    verdict = report.verdict.model_copy(update={"checks": checks, "message": _cut(report.verdict.message)})
    problems = [p.model_copy(update={"message": _cut(p.message)}) for p in report.problems[:50]]
    left_out.append(f"{len(report.verdict.checks) - len(checks)} checks, {len(report.queries)} PromQL queries")
    trimmed = report.model_copy(
        update={"verdict": verdict, "problems": problems, "queries": {}, "slices": [_cut_slice(s) for s in overall]}
    )
    used = _size(trimmed)
    kept = []
    for item in (_cut_slice(s) for s in segments):
        cost = len(item.model_dump_json().encode()) + 1
        if used + cost <= room:
            kept.append(item)
            used += cost
    trimmed = trimmed.model_copy(update={"slices": [*trimmed.slices, *kept]})
    while _size(trimmed) > room and len(trimmed.verdict.checks) > 1:
        fewer = trimmed.verdict.checks[: len(trimmed.verdict.checks) // 2]
        trimmed = trimmed.model_copy(update={"verdict": trimmed.verdict.model_copy(update={"checks": fewer})})
    if _size(trimmed) > room:  # the overall slice alone is too big (thousands of features): coverage and verdict remain
        trimmed = trimmed.model_copy(update={"slices": []})
    return note(trimmed, left_out)


def _cut(text: str | None, limit: int = _TEXT_CAP) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def _cut_check(check):
    return check.model_copy(update={"message": _cut(check.message)})


def _cut_slice(item: SliceStats) -> SliceStats:
    def side(stats):
        errors = [e.model_copy(update={"text": _cut(e.text, 256)}) for e in stats.top_errors]
        return stats.model_copy(update={"top_errors": errors})

    return item.model_copy(update={"primary": side(item.primary), "candidate": side(item.candidate)})


def report_data(report: Report) -> dict[str, str]:
    """The report ConfigMap's `data`: the report within the budget."""
    return {REPORT_KEY: report_within_budget(report).model_dump_json()}


def report_owner_problem(sd: ShadowDeployment, body: dict[str, Any] | None) -> str | None:
    """Why the job must not publish into this ConfigMap; None when it is its ShadowDeployment's own."""
    name = report_name(sd.name)
    if body is None:
        return (
            f"ConfigMap {sd.namespace}/{name} does not exist: the operator creates it with the ShadowDeployment "
            "(the job may not create ConfigMaps); is the operator running and the object reconciled?"
        )
    controllers = [ref for ref in body.get("metadata", {}).get("ownerReferences") or [] if ref.get("controller")]
    if not any(ref.get("uid") == sd.identity.uid for ref in controllers):
        return (
            f"ConfigMap {sd.namespace}/{name} is not controlled by ShadowDeployment {sd.name} (uid "
            f"{sd.identity.uid}): the operator would ignore a report there; delete the ConfigMap and let the "
            "operator recreate it"
        )
    return None


def publish_operations(body: dict[str, Any], report: Report) -> list[dict[str, Any]]:
    """A JSON patch writing the report into the ConfigMap read as `body`: the same object (uid), data replaced.

    A patch, not server-side apply: the data stays the job's field, and the job needs neither
    `create` nor ownership of the metadata the operator set.
    """
    return [
        {"op": "test", "path": "/metadata/uid", "value": body["metadata"]["uid"]},
        {"op": "add", "path": "/data", "value": report_data(report)},
    ]
