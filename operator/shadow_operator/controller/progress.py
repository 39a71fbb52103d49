"""Pure status computation: what was observed -> phase, conditions, mirror, coverage.

Everything that changes with time is quantised (coverage moves in whole percent), so a
reconcile with nothing new to say produces the same status and the operator writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..api.durations import format_duration, parse_duration
from ..api.v1alpha1 import Coverage, Mirror, Phase, ShadowDeploymentStatus, Verdict
from ..contract import reasons
from ..contract.coverage import coverage as cycle_coverage
from ..contract.coverage import time_coverage_percent
from ..contract.report import Report, check_priority
from ..contract.resource import ShadowDeployment
from ..contract.timestamps import parse_timestamp, timestamp
from .conditions import set_condition
from .observed import ObservedDeployment
from .routing import RoutingDecision
from .validation import Problem


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found, beyond the object itself."""

    problems: tuple[Problem, ...] = ()
    apply_error: str | None = None
    # (role, name, observed or None when not created yet) for every Deployment the mirror depends on.
    deployments: tuple[tuple[str, str, ObservedDeployment | None], ...] = ()
    # The comparison job's latest report; used only when it judged the current candidate.
    report: Report | None = None
    # Why the primary's answers are not recorded (istio mode, a primary the operator does not run).
    capture_gap: str | None = None
    # builtin mode: where the client Service routes now (the RouterAvailable condition).
    routing: RoutingDecision | None = None


# Status is read by people and stored in etcd: the full list of checks stays in the report.
MAX_CHECKS_IN_STATUS = 40


_WAITING_REASON = {
    "primary": reasons.PRIMARY_NOT_AVAILABLE,
    "candidate": reasons.CANDIDATE_NOT_AVAILABLE,
    "router": reasons.ROUTER_NOT_AVAILABLE,
}


def compute_status(sd: ShadowDeployment, outcome: Outcome, now: datetime) -> ShadowDeploymentStatus:
    previous = sd.status
    generation = sd.identity.generation
    now_text = timestamp(now)
    update: dict = {
        "observed_generation": generation,
        "primary": _primary_display(sd),
        "candidate": sd.spec.candidate.image,
    }
    if previous.candidate is not None and previous.candidate != sd.spec.candidate.image:
        # A new candidate is judged afresh: its business cycle and verdict start from nothing.
        update.update(shadowing_since=None, coverage=None, verdict=None)
    base = previous.model_copy(update=update)
    report = outcome.report
    if report is not None and report.candidate == sd.spec.candidate.image:
        base = base.model_copy(update={"verdict": verdict_for_status(report.verdict)})
        samples = report.coverage.samples
        hours = (report.coverage.hours_seen, report.coverage.cycle_hours) if report.coverage.cycle_hours else None
    else:
        samples = base.coverage.samples if base.coverage else 0
        required_hours = base.coverage.required_hours if base.coverage else None
        hours = (base.coverage.hours_seen or 0, required_hours) if required_hours else None

    def conditions(*entries: tuple[str, bool | None, str, str]) -> list:
        result = [c for c in base.conditions if outcome.routing or c.type != reasons.ROUTER_AVAILABLE]
        if outcome.routing is not None:
            routing = outcome.routing
            entries = (*entries, (reasons.ROUTER_AVAILABLE, routing.available, routing.reason, routing.message))
        for type_, status, reason, message in entries:
            result = set_condition(result, type_, status, reason, message, generation, now_text)
        return result

    errors = list(outcome.problems)
    if outcome.apply_error:
        errors.append(Problem(reasons.APPLY_FAILED, outcome.apply_error))
    if errors:
        return error_status(base, generation, errors, now)

    waiting = [(role, name, d) for role, name, d in outcome.deployments if d is None or not d.available]
    mirror_host = sd.spec.service.name
    if waiting:
        role, name, deployment = waiting[0]
        state = "not created yet" if deployment is None else deployment.availability()
        message = f"Waiting for Deployment {name} ({role}): {state}."
        reason = _WAITING_REASON[role]
        return base.model_copy(
            update={
                "phase": Phase.DEPLOYING,
                "mirror": Mirror(state="Inactive", router=sd.spec.traffic.router, percent=0, host=mirror_host),
                "conditions": conditions(
                    (reasons.READY, False, reason, message),
                    (reasons.RECONCILING, True, reason, message),
                    (reasons.STALLED, False, reasons.RECONCILED, ""),
                    (reasons.MIRRORING, False, reasons.MIRROR_NOT_READY, message),
                ),
            }
        )

    since = base.shadowing_since or now_text
    coverage = compute_coverage(sd, since, now, samples, hours)
    percent = sd.spec.traffic.mirror_percent
    mirror = Mirror(
        state="Active" if percent > 0 else "Inactive", router=sd.spec.traffic.router, percent=percent, host=mirror_host
    )
    if percent > 0:
        message = f"{percent:g}% of {mirror_host}'s requests."
        if outcome.capture_gap:
            message += f" {outcome.capture_gap}"
        mirroring = (reasons.MIRRORING, True, reasons.MIRROR_ACTIVE, message)
    else:
        mirroring = (reasons.MIRRORING, False, reasons.MIRROR_DISABLED, "spec.traffic.mirrorPercent is 0.")
    phase = phase_for(base.verdict, cycle_percent(sd, since, now) >= 100)
    ready, ready_reason, ready_message = _readiness(phase, base.verdict, coverage)
    return base.model_copy(
        update={
            "phase": phase,
            "mirror": mirror,
            "shadowing_since": since,
            "coverage": coverage,
            "conditions": conditions(
                (reasons.READY, ready, ready_reason, ready_message),
                (reasons.RECONCILING, False, reasons.RECONCILED, ""),
                (
                    reasons.STALLED,
                    phase == Phase.FAILED,
                    ready_reason if phase == Phase.FAILED else reasons.RECONCILED,
                    "",
                ),
                mirroring,
                _analyzed(base.verdict),
            ),
        }
    )


def error_status(
    previous: ShadowDeploymentStatus, generation: int, problems: list[Problem], now: datetime
) -> ShadowDeploymentStatus:
    """Phase Error: Ready False and Stalled True, both saying what to fix.

    Children stay as the last good spec left them, so mirror and coverage keep their last state.
    """
    reason, message = problems[0].reason, "; ".join(problem.message for problem in problems)
    conditions = list(previous.conditions)
    for type_, value, text in (
        (reasons.READY, False, message),
        (reasons.STALLED, True, message),
        (reasons.RECONCILING, False, "Waiting for the spec to be fixed."),
    ):
        conditions = set_condition(conditions, type_, value, reason, text, generation, timestamp(now))
    return previous.model_copy(
        update={"phase": Phase.ERROR, "observed_generation": generation, "conditions": conditions}
    )


def verdict_for_status(verdict: Verdict) -> Verdict:
    """The report's verdict trimmed for status: failing checks first, then overall ones, capped."""

    checks = sorted(verdict.checks, key=check_priority)[:MAX_CHECKS_IN_STATUS]
    return verdict.model_copy(update={"checks": checks})


def phase_for(verdict: Verdict | None, cycle_complete: bool) -> Phase:
    """Verdict to phase: Failed at once; Inconclusive only once the cycle's time is complete (however
    few samples it brought: too few after a full cycle is an answer, Inconclusive)."""
    if verdict is None:
        return Phase.SHADOWING
    if verdict.result == "Failed":
        return Phase.FAILED
    if verdict.result == "Passed":
        return Phase.PASSED
    return Phase.INCONCLUSIVE if cycle_complete else Phase.SHADOWING


def cycle_percent(sd: ShadowDeployment, since: str, now: datetime) -> int:
    """Whole percent of analysis.minDuration since shadowing began."""
    elapsed = max(now - parse_timestamp(since), timedelta(0))
    # Integer arithmetic: float division reads one percent low at exact boundaries.
    return time_coverage_percent(elapsed.total_seconds(), parse_duration(sd.spec.analysis.min_duration).total_seconds())


def compute_coverage(
    sd: ShadowDeployment, since: str, now: datetime, samples: int, hours: tuple[int, int] | None = None
) -> Coverage:
    """The lowest of time covered, samples seen and hours of the cycle seen, as the comparison job
    counts them (contract/coverage.py); `hours`: (seen, in the cycle) from the job's report.

    Time alone read "50% of 2m" while no record had reached the job and its report said 0%.
    """
    required = parse_duration(sd.spec.analysis.min_duration)
    elapsed = max(now - parse_timestamp(since), timedelta(0)).total_seconds()
    min_samples = sd.spec.analysis.min_samples
    covered = cycle_coverage(elapsed, required.total_seconds(), samples, min_samples, hours)
    percent = covered.lowest
    summary = f"{percent}% of {sd.spec.analysis.min_duration}"
    if hours and covered.hours < min(covered.time, covered.samples):
        summary += f" ({hours[0]} of {hours[1]} hours seen)"
    elif covered.samples < covered.time:
        summary += f" ({samples} of {min_samples} samples)"
    return Coverage(
        elapsed=format_duration(required * covered.time / 100),
        required=sd.spec.analysis.min_duration,
        samples=samples,
        required_samples=min_samples,
        hours_seen=hours[0] if hours else None,
        required_hours=hours[1] if hours else None,
        percent=percent,
        summary=summary,
    )


def _analyzed(verdict: Verdict | None) -> tuple[str, bool | None, str, str]:
    if verdict is None:
        return (reasons.ANALYZED, False, reasons.AWAITING_ANALYSIS, "No report for this candidate yet.")
    status = {"Passed": True, "Failed": False}.get(verdict.result)
    return (reasons.ANALYZED, status, verdict.reason, verdict.message or verdict.result)


def _readiness(phase: Phase, verdict: Verdict | None, coverage: Coverage) -> tuple[bool, str, str]:
    if phase == Phase.FAILED and verdict is not None:
        return False, verdict.reason, verdict.message
    if phase in (Phase.PASSED, Phase.INCONCLUSIVE) and verdict is not None:
        return True, verdict.reason, verdict.message
    return True, reasons.SHADOWING, f"Shadowing; {coverage.summary} of the business cycle covered."


def _primary_display(sd: ShadowDeployment) -> str:
    ref = sd.spec.primary.deployment_ref
    return f"deployment/{ref.name}" if ref is not None else str(sd.spec.primary.image)
