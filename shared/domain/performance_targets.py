"""The targets of the orchestration figures, whether each is met, and one score for all. Pure.

A target is met when its figure was measured in the window and is on the right side of it
(strictly below an upper bound, at or above a lower bound). A figure with nothing to measure in
the window (no workflow ended, no failure happened...) is neither met nor missed: ``met`` is None.

``performance_score`` = 100 x the mean *attainment* of the measured figures, where attainment is
``min(1, measured / target)`` for a lower bound and ``min(1, target / measured)`` for an upper bound:
partial credit, so a latency 10% over its target costs about 9 points out of 100 divided by the
number of measured figures, not all of them.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from shared.domain.performance_metrics import Figure, OrchestrationFigures

Comparison = Literal["<", ">="]


class Target(msgspec.Struct, frozen=True, kw_only=True):
    metric: str
    comparison: Comparison
    value: float
    unit: str
    variable: str
    """The environment variable that sets it."""


class TargetCheck(msgspec.Struct, frozen=True, kw_only=True):
    metric: str
    measured: float | None
    target: float
    comparison: Comparison
    unit: str
    met: bool | None
    """None: not measured in the window."""
    attainment: float | None
    samples: int
    variable: str
    definition: str


DEFINITIONS: Final[dict[str, str]] = {
    "task_assignment_latency_ms": "p99 of the time from an attempt becoming routable to its assignment "
    "(attempts held for lack of an agent excluded)",
    "load_balancing_efficiency": "1 - misplaced / in-flight tasks, summed over samples taken at "
    "assignments among the agents able to take the task (misplaced: tasks above the agent's "
    "capacity share, rounded either way)",
    "routing_accuracy_percent": "share of first attempts ended in the window that the first chosen agent "
    "completed at or above the task's quality threshold (infrastructure failures, cancellations and "
    "non-retryable failures not judged)",
    "failure_recovery_time_ms": "p95 of the time from a failure (an unresponsive agent's last heartbeat, "
    "a stalled agent's unreceived assignment first seen pending, or a reported failure) until all the "
    "work it took away runs again elsewhere or has ended",
    "system_throughput_tasks_per_second": "tasks completed in the window / time from the first of them "
    "(or the window's start) to now",
    "workflow_completion_rate": "completed / (completed + failed) workflows ended in the window",
}


def targets(
    *,
    assignment_latency_ms: float,
    load_balancing_efficiency: float,
    routing_accuracy_percent: float,
    recovery_time_ms: float,
    throughput_tps: float,
    workflow_completion_rate: float,
) -> list[Target]:
    """The six targets at these values (``shared.configured`` reads them from the settings)."""
    return [
        Target(
            metric="task_assignment_latency_ms",
            comparison="<",
            value=assignment_latency_ms,
            unit="ms",
            variable="TASK_ASSIGNMENT_LATENCY_TARGET_MS",
        ),
        Target(
            metric="load_balancing_efficiency",
            comparison=">=",
            value=load_balancing_efficiency,
            unit="ratio",
            variable="LOAD_BALANCING_EFFICIENCY_TARGET",
        ),
        Target(
            metric="routing_accuracy_percent",
            comparison=">=",
            value=routing_accuracy_percent,
            unit="%",
            variable="ROUTING_ACCURACY_TARGET",
        ),
        Target(
            metric="failure_recovery_time_ms",
            comparison="<",
            value=recovery_time_ms,
            unit="ms",
            variable="RECOVERY_TIME_TARGET_MS",
        ),
        Target(
            metric="system_throughput_tasks_per_second",
            comparison=">=",
            value=throughput_tps,
            unit="tasks/s",
            variable="THROUGHPUT_TARGET_TPS",
        ),
        Target(
            metric="workflow_completion_rate",
            comparison=">=",
            value=workflow_completion_rate,
            unit="ratio",
            variable="WORKFLOW_COMPLETION_TARGET",
        ),
    ]


def attainment(measured: float, target: Target) -> float:
    if target.comparison == "<":
        return 1.0 if measured <= 0 else min(1.0, target.value / measured)
    return 1.0 if target.value <= 0 else max(0.0, min(1.0, measured / target.value))


def is_met(measured: float, target: Target) -> bool:
    return measured < target.value if target.comparison == "<" else measured >= target.value


def check_targets(found: OrchestrationFigures, targets: list[Target]) -> list[TargetCheck]:
    checks = []
    for target in targets:
        figure: Figure = getattr(found, target.metric)
        measured = figure.value
        checks.append(
            TargetCheck(
                metric=target.metric,
                measured=None if measured is None else round(measured, 4),
                target=target.value,
                comparison=target.comparison,
                unit=target.unit,
                met=None if measured is None else is_met(measured, target),
                attainment=None if measured is None else round(attainment(measured, target), 4),
                samples=figure.samples,
                variable=target.variable,
                definition=DEFINITIONS[target.metric],
            )
        )
    return checks


def performance_score(checks: list[TargetCheck]) -> float | None:
    """100 x mean attainment over the measured figures (None when none was measured)."""
    measured = [check.attainment for check in checks if check.attainment is not None]
    if not measured:
        return None
    return round(100.0 * sum(measured) / len(measured), 2)


ADVICE: Final[dict[str, str]] = {
    "task_assignment_latency_ms": "assignments wait: run more router instances (hive up --scale "
    "router=N) or offer less work at once; held-for-capacity waits are not counted here",
    "load_balancing_efficiency": "work is uneven among equally able agents: route with load_balanced, "
    "or let the balancer move unstarted work (ENABLE_REBALANCING, REBALANCE_AFTER_S)",
    "routing_accuracy_percent": "first choices miss their quality threshold: prefer proven agents "
    "(performance_optimized routing, ORCHESTRATION_MODE=fault_tolerant) or lower the thresholds",
    "failure_recovery_time_ms": "work moves slowly after failures: lower HEARTBEAT_INTERVAL_S or "
    "HEARTBEAT_MISSED_LIMIT, and keep spare capacity for reassigned work",
    "system_throughput_tasks_per_second": "fewer tasks complete than the target: add agents (see "
    "scale_recommendations) or router instances, or lower THROUGHPUT_TARGET_TPS to the load offered",
    "workflow_completion_rate": "workflows fail: raise their tasks' retry budgets, add on_failure "
    "handlers, or allow a failure_tolerance",
}
"""What to look at when a figure misses its target (performance/validate's recommendations)."""


def recommendations(checks: list[TargetCheck]) -> list[str]:
    """One piece of advice per target measured and missed, naming the figure and by how much."""
    advice = []
    for check in checks:
        if check.met is False and check.measured is not None:
            advice.append(
                f"{check.metric} is {check.measured:g} {check.unit}, target {check.comparison} "
                f"{check.target:g}: {ADVICE[check.metric]}"
            )
    return advice
