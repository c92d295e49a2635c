"""Workflow decisions, pure: what a workflow needs next, given the projection. No NATS, no clock.

``decide`` is level-triggered: it compares what the workflow wants with what the log holds and
returns every action still missing, whatever event woke the service. Replaying it after a crash
or a redelivery therefore finds nothing left to do, or exactly what was interrupted:

* cancel the live task of every cancelled step (also once the whole workflow is cancelled);
* submit the task of a step whose dispatch is recorded but whose task.submitted is not (a crash
  between the two appends);
* skip steps whose condition can no longer hold, with the reason;
* dispatch ready steps, as many and in the order the execution mode and goal say (``policy``);
* finish the workflow once every step has ended.

Conditions look at the dependencies' outcomes: ``on_success`` runs when every dependency
completed and is skipped as soon as one did not; ``on_failure`` and ``always`` wait until every
dependency has ended, then ``always`` runs and ``on_failure`` runs only if one of them failed.
A workflow completes when every step ended completed, skipped or cancelled, or failed but
*handled*: an ``on_failure`` step depending on it completed. Otherwise it fails, naming the
failed steps. Independent branches keep running after a failure (no fail-fast).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Literal

import msgspec

from services.workflow import policy
from services.workflow.view import WorkflowServiceState
from shared.domain.cancellation import holder_of
from shared.domain.dag import bottom_levels, zero_slack
from shared.domain.workflows import (
    UPSTREAM_RESULT_MAX_NESTING,
    StepView,
    WorkflowsState,
    WorkflowView,
    step_task_id,
)
from shared.events import (
    AgentRecovered,
    AgentRegistered,
    AnyEvent,
    Priority,
    RoutingStrategy,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    WorkflowEvent,
)
from shared.nesting import value_nests_deeper


class StepTask(msgspec.Struct, frozen=True, kw_only=True):
    """The task a step runs as: everything about it that the decision chooses."""

    step_id: str
    task_id: str
    priority: Priority
    routing_strategy: RoutingStrategy | None
    upstream: dict[str, Any] = {}
    expected_quality_threshold: float = 0.0
    deadline_ts: float | None = None


class Dispatch(msgspec.Struct, frozen=True, kw_only=True):
    """Record that the step starts (workflow.step_dispatched), then submit its task."""

    task: StepTask


class Submit(msgspec.Struct, frozen=True, kw_only=True):
    """The dispatch is recorded but the task is not in the log: submit it (idempotent)."""

    task: StepTask


class Skip(msgspec.Struct, frozen=True, kw_only=True):
    step_id: str
    reason: str


class CancelTask(msgspec.Struct, frozen=True, kw_only=True):
    """Cancel a cancelled step's live task and tell the agent holding it, if any."""

    step_id: str
    task_id: str
    attempt: int
    agent_id: str
    reason: str


class Finish(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["completed", "failed"]
    reason: str
    summary: dict[str, int]
    outcomes: dict[str, str]


Action = Dispatch | Submit | Skip | CancelTask | Finish


# --- readiness ------------------------------------------------------------------------------------


class Wait(msgspec.Struct, frozen=True):
    pass


class Ready(msgspec.Struct, frozen=True):
    pass


WAIT = Wait()
READY = Ready()


def readiness(workflow: WorkflowView, step: StepView) -> Wait | Ready | Skip:
    """Whether a pending step waits, may run, or can never run (and why)."""
    if step.problem:
        return Skip(step_id=step.step_id, reason=step.problem)
    dependencies = [workflow.steps[name] for name in step.spec.dependencies if name in workflow.steps]
    condition = step.spec.condition
    if condition == "on_success":
        for dependency in dependencies:
            if dependency.done and dependency.status != "completed":
                return Skip(
                    step_id=step.step_id,
                    reason=f"dependency {dependency.step_id!r} {_as_outcome(dependency.status)}",
                )
    if not all(dependency.done for dependency in dependencies):
        return WAIT
    if condition == "on_failure" and not any(d.status == "failed" for d in dependencies):
        return Skip(step_id=step.step_id, reason="condition on_failure: no dependency failed")
    return READY


def _as_outcome(status: str) -> str:
    return {"skipped": "was skipped", "cancelled": "was cancelled"}.get(status, status)


# --- the decision ---------------------------------------------------------------------------------


def decide(state: WorkflowServiceState, workflow_id: str) -> list[Action]:
    """Every action the workflow needs now (empty: nothing to do until something happens)."""
    workflow = state.flows.workflows.get(workflow_id)
    if workflow is None:
        return []
    actions: list[Action] = list(_cancellations(state, workflow))
    if workflow.status == "waiting" and workflow.problem:
        return [*actions, _failed_at_once(workflow)]
    if workflow.status != "running":
        return actions
    if workflow.problem:
        return [*actions, _failed_at_once(workflow)]
    steps = list(workflow.steps.values())
    ready: list[StepView] = []
    unsubmitted: list[StepView] = []
    for step in steps:
        if step.status == "dispatched" and not step.submitted:
            unsubmitted.append(step)
        elif step.status == "pending":
            verdict = readiness(workflow, step)
            if isinstance(verdict, Skip):
                actions.append(verdict)
            elif isinstance(verdict, Ready):
                ready.append(step)
    if unsubmitted or ready:
        plan = _Plan(state, workflow)
        actions.extend(Submit(task=plan.task(step)) for step in unsubmitted)
        actions.extend(Dispatch(task=plan.task(step)) for step in plan.choose(ready))
    if not actions and all(step.done for step in steps):
        actions.append(finish(workflow))
    return actions


def _cancellations(state: WorkflowServiceState, workflow: WorkflowView) -> list[CancelTask]:
    found = []
    for step in workflow.steps.values():
        if step.status != "cancelled" or not step.submitted:
            continue
        task = state.fleet.tasks.get(step.task_id)
        if task is None or task.terminal:
            continue
        found.append(
            CancelTask(
                step_id=step.step_id,
                task_id=step.task_id,
                attempt=task.attempt,
                agent_id=holder_of(task) or "",
                reason=f"workflow {workflow.workflow_id}: {step.reason}",
            )
        )
    return found


def _failed_at_once(workflow: WorkflowView) -> Finish:
    return Finish(
        status="failed",
        reason=f"invalid workflow: {workflow.problem}",
        summary={"pending": len(workflow.steps)},
        outcomes={},
    )


class _Plan:
    """What dispatching needs of one workflow, computed once per decision."""

    def __init__(self, state: WorkflowServiceState, workflow: WorkflowView) -> None:
        self.state = state
        self.workflow = workflow
        self.deps = {name: step.spec.dependencies for name, step in workflow.steps.items()}
        self.weight = {name: step.spec.estimated_duration_minutes for name, step in workflow.steps.items()}
        self.widths: dict[policy.Kind, int] = {}
        self._bottom: dict[str, float] | None = None
        self._critical: set[str] | None = None

    @property
    def bottom(self) -> dict[str, float]:
        """Per step: the longest chain of estimates from it (itself included) to the end."""
        if self._bottom is None:
            self._bottom = bottom_levels(self.deps, self.weight)
        return self._bottom

    @property
    def critical(self) -> set[str]:
        if self._critical is None:
            self._critical = zero_slack(self.deps, self.weight, bottom=self.bottom)
        return self._critical

    def width_of(self, kind: policy.Kind) -> int:
        if kind not in self.widths:
            self.widths[kind] = policy.capable_capacity(self.state.fleet, kind)
        return self.widths[kind]

    def choose(self, ready: list[StepView]) -> list[StepView]:
        workflow = self.workflow
        goal, allocation = workflow.optimization_goal, workflow.resource_allocation
        bottom = self.bottom
        ordered = sorted(
            ready, key=lambda step: policy.order_key(goal, step, bottom.get(step.step_id, 0.0), allocation)
        )
        in_flight = [step for step in workflow.steps.values() if step.status == "dispatched"]
        return policy.select(
            workflow.execution_mode, ordered, in_flight, self.width_of, workflow.max_concurrent_tasks
        )

    def task(self, step: StepView) -> StepTask:
        workflow = self.workflow
        goal = workflow.optimization_goal
        critical = policy.goal_of(goal) == "minimize_time" and step.step_id in self.critical
        deadline = None
        if workflow.max_duration_s is not None and workflow.started_ts is not None:
            deadline = workflow.started_ts + workflow.max_duration_s
        return StepTask(
            step_id=step.step_id,
            task_id=step.task_id or step_task_id(workflow.workflow_id, step.step_id),
            priority=policy.task_priority(goal, step, critical),
            routing_strategy=policy.routing_strategy(goal, workflow.resource_allocation),
            upstream=_upstream(workflow, step),
            expected_quality_threshold=workflow.quality_threshold,
            deadline_ts=deadline,
        )


def _upstream(workflow: WorkflowView, step: StepView) -> dict[str, Any]:
    """How each dependency ended, with its result when small enough to pass along."""
    out: dict[str, Any] = {}
    for name in step.spec.dependencies:
        dependency = workflow.steps.get(name)
        if dependency is None:
            continue
        entry: dict[str, Any] = {"status": dependency.status, "task_id": dependency.task_id}
        if dependency.status == "completed":
            if dependency.result_omitted:
                entry["result_omitted"] = dependency.result_omitted
            elif value_nests_deeper(dependency.result, UPSTREAM_RESULT_MAX_NESTING):
                entry["result_omitted"] = f"nested deeper than {UPSTREAM_RESULT_MAX_NESTING} levels"
            else:
                entry["result"] = dependency.result
        out[name] = entry
    return out


def finish(workflow: WorkflowView) -> Finish:
    """How a workflow whose steps have all ended ends: completed unless a failure went unhandled."""
    steps = workflow.steps
    outcomes: dict[str, str] = {name: step.status for name, step in steps.items()}
    summary: dict[str, int] = dict(Counter(outcomes.values()))
    handled = {
        dependency
        for step in steps.values()
        if step.spec.condition == "on_failure" and step.status == "completed"
        for dependency in step.spec.dependencies
    }
    unhandled = [name for name, step in steps.items() if step.status == "failed" and name not in handled]
    tolerated = math.floor(workflow.failure_tolerance * len(steps) + 1e-9)
    if unhandled and len(unhandled) <= tolerated:
        return Finish(
            status="completed",
            reason=f"{len(unhandled)} task(s) failed, within its failure_tolerance "
            f"{workflow.failure_tolerance:g} ({tolerated} of {len(steps)}): "
            + ", ".join(repr(name) for name in unhandled[:10]),
            summary=summary,
            outcomes=outcomes,
        )
    if unhandled:
        shown = ", ".join(repr(name) for name in unhandled[:10])
        more = f" and {len(unhandled) - 10} more" if len(unhandled) > 10 else ""
        return Finish(
            status="failed",
            reason=f"task(s) failed: {shown}{more}",
            summary=summary,
            outcomes=outcomes,
        )
    return Finish(status="completed", reason="", summary=summary, outcomes=outcomes)


# --- which workflows an event concerns, and admission ----------------------------------------------


def affected(state: WorkflowServiceState, event: AnyEvent) -> list[str]:
    """The workflows that may need a decision after `event`."""
    flows = state.flows
    if isinstance(event, WorkflowEvent):
        return [event.workflow_id]
    if isinstance(event, TaskCompleted | TaskFailed | TaskCancelled):
        found = flows.task_steps.get(event.task_id)
        return [found[0]] if found is not None else []
    if isinstance(event, AgentRegistered | AgentRecovered):
        # New capacity: adaptive workflows holding steps back may widen.
        return [
            wid
            for wid in flows.running
            if policy.dispatch_mode(flows.workflows[wid].execution_mode) == "adaptive"
        ]
    return []


def admissions(flows: WorkflowsState, max_running: int) -> list[str]:
    """Waiting workflows that may start now, first submitted first."""
    free = max_running - len(flows.running)
    if free <= 0:
        return []
    return [wid for wid in flows.waiting if not flows.workflows[wid].problem][:free]
