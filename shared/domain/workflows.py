"""The workflow projection: every workflow, its steps and where they stand, and the admission queue.

Pure and deterministic: ``apply_workflows(state, recorded)`` reads nothing but its arguments. A
step moves pending -> dispatched -> completed / failed / cancelled (from its task's terminal
event), or pending -> skipped / cancelled (from the workflow's own events); a finished step never
moves again, so redelivered or late facts change nothing. Used by the workflow service (decisions)
and the gateway (status, validation of dynamic changes), whose views let a ``task.completed``
through only from the agent holding the attempt (``shared/domain/fleet.py``: ``admits``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Literal

import msgspec

from shared.domain.workflow_spec import WorkflowSpecError, check_dependencies, problem_of
from shared.events import (
    ExecutionMode,
    OptimizationGoal,
    ResourceAllocation,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStep,
    WorkflowStepAdded,
    WorkflowStepCancelled,
    WorkflowStepDispatched,
    WorkflowStepSkipped,
    WorkflowSubmitted,
    WorkflowTemplate,
)
from shared.nesting import MAX_NESTING
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded

WorkflowStatus = Literal["waiting", "running", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "dispatched", "completed", "failed", "skipped", "cancelled"]
STEP_DONE: Final[frozenset[str]] = frozenset({"completed", "failed", "skipped", "cancelled"})
WORKFLOW_DONE: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})
UPSTREAM_RESULT_MAX_BYTES: Final = 16_384
"""Results of dependencies up to this size are handed to the dependent task in its payload."""
UPSTREAM_RESULT_MAX_NESTING: Final = MAX_NESTING - 3
"""Results nested deeper are not handed on: ``payload.upstream.<step>.result`` puts a result three
levels down in the dependent's payload, which readers refuse past ``MAX_NESTING``."""


def step_task_id(workflow_id: str, step_id: str) -> str:
    """The Hive task id of a step: readable, unique across workflows, at most 62 characters.

    Derived, never random, so a decision replayed after a crash submits the very same task.
    """
    digest = hashlib.sha256(f"{workflow_id}\x00{step_id}".encode()).hexdigest()[:12]
    return f"{workflow_id[:24]}-{step_id[:24]}-{digest}"


class StepView(msgspec.Struct, kw_only=True):
    spec: WorkflowStep
    index: int
    """Declaration order: the last tie-breaker of every ordering."""
    status: StepStatus = "pending"
    task_id: str = ""
    submitted: bool = False
    """The step's task.submitted is in the log (it is dispatched, not only decided)."""
    reason: str = ""
    problem: str = ""
    """Why a step added later can never run (unknown dependency...): it is skipped with it."""
    dispatched_ts: float | None = None
    finished_ts: float | None = None
    result: Any = None
    """The completed task's result when at most ``UPSTREAM_RESULT_MAX_BYTES`` encoded: kept here,
    since the fleet view forgets finished tasks long before a workflow may need their results."""
    result_omitted: str = ""
    """Why the result is not kept (too large)."""

    @property
    def step_id(self) -> str:
        return self.spec.step_id

    @property
    def done(self) -> bool:
        return self.status in STEP_DONE


class WorkflowView(msgspec.Struct, kw_only=True):
    workflow_id: str
    name: str = ""
    description: str = ""
    execution_mode: ExecutionMode = "adaptive"
    optimization_goal: OptimizationGoal = "balance_all"
    template: WorkflowTemplate = "custom"
    resource_allocation: ResourceAllocation = "optimized"
    max_concurrent_tasks: int | None = None
    quality_threshold: float = 0.0
    failure_tolerance: float = 0.0
    max_duration_s: float | None = None
    context: dict[str, Any] = {}
    correlation_id: str = ""
    status: WorkflowStatus = "waiting"
    reason: str = ""
    problem: str = ""
    """Why the submitted graph cannot run (a cycle...): the workflow fails with it at once."""
    submitted_seq: int = 0
    submitted_ts: float = 0.0
    started_ts: float | None = None
    finished_ts: float | None = None
    steps: dict[str, StepView] = {}

    @property
    def done(self) -> bool:
        return self.status in WORKFLOW_DONE


class WorkflowsState(msgspec.Struct, kw_only=True):
    workflows: dict[str, WorkflowView] = {}
    task_steps: dict[str, tuple[str, str]] = {}
    """Hive task id -> (workflow id, step id), for the steps dispatched so far."""
    waiting: list[str] = []
    """Workflows waiting for a slot, first submitted first."""
    running: list[str] = []
    finished: list[str] = []
    """Finished workflow ids, oldest first; beyond ``max_finished`` the oldest are forgotten."""
    max_finished: int = 10_000


def percent_done(workflow: WorkflowView) -> float:
    """Share of the workflow's tasks that have ended, in percent (an empty one is done)."""
    steps = workflow.steps
    return round(100.0 * sum(step.done for step in steps.values()) / len(steps), 1) if steps else 100.0


def new_workflows() -> WorkflowsState:
    return WorkflowsState()


# --- helpers --------------------------------------------------------------------------------------


def _discard(items: list[str], item: str) -> None:
    if item in items:
        items.remove(item)


def _finish(state: WorkflowsState, workflow: WorkflowView, status: WorkflowStatus, ts: float) -> None:
    workflow.status = status
    workflow.finished_ts = ts
    _discard(state.waiting, workflow.workflow_id)
    _discard(state.running, workflow.workflow_id)
    state.finished.append(workflow.workflow_id)
    if len(state.finished) > state.max_finished:
        drop = len(state.finished) - state.max_finished
        for old in state.finished[:drop]:
            forgotten = state.workflows.pop(old, None)
            if forgotten is not None:
                for step in forgotten.steps.values():
                    state.task_steps.pop(step.task_id, None)
        del state.finished[:drop]


def _end_step(step: StepView, status: StepStatus, reason: str, ts: float) -> bool:
    """End the step unless it has ended already; says whether it did."""
    if step.done:
        return False
    step.status = status
    step.reason = reason
    step.finished_ts = ts
    return True


def _keep_result(step: StepView, result: Any) -> None:
    if len(msgspec.json.encode(result)) <= UPSTREAM_RESULT_MAX_BYTES:
        step.result = result
    else:
        step.result_omitted = f"larger than {UPSTREAM_RESULT_MAX_BYTES} bytes"


def _step_of_task(state: WorkflowsState, task_id: str) -> StepView | None:
    found = state.task_steps.get(task_id)
    if found is None:
        return None
    workflow = state.workflows.get(found[0])
    return workflow.steps.get(found[1]) if workflow is not None else None


def _open(state: WorkflowsState, workflow_id: str) -> WorkflowView | None:
    """The workflow if it exists and is not finished."""
    workflow = state.workflows.get(workflow_id)
    return workflow if workflow is not None and not workflow.done else None


def _open_step(state: WorkflowsState, workflow_id: str, step_id: str) -> StepView | None:
    """A step of a workflow that is not finished."""
    workflow = _open(state, workflow_id)
    return workflow.steps.get(step_id) if workflow is not None else None


# --- apply ----------------------------------------------------------------------------------------


def apply_workflows(state: WorkflowsState, recorded: Recorded) -> WorkflowsState:
    event = recorded.event
    match event:
        case WorkflowSubmitted():
            if event.workflow_id in state.workflows:
                return state
            state.workflows[event.workflow_id] = WorkflowView(
                workflow_id=event.workflow_id,
                name=event.name,
                description=event.description,
                execution_mode=event.execution_mode,
                optimization_goal=event.optimization_goal,
                template=event.template,
                resource_allocation=event.resource_allocation,
                max_concurrent_tasks=event.max_concurrent_tasks,
                quality_threshold=event.quality_threshold,
                failure_tolerance=event.failure_tolerance,
                max_duration_s=event.max_duration_s,
                context=event.context,
                correlation_id=event.correlation_id or event.workflow_id,
                problem=problem_of(event.steps),
                submitted_seq=recorded.seq,
                submitted_ts=event.ts,
                steps={
                    step.step_id: StepView(spec=step, index=index) for index, step in enumerate(event.steps)
                },
            )
            state.waiting.append(event.workflow_id)
        case WorkflowStarted():
            workflow = _open(state, event.workflow_id)
            if workflow is not None and workflow.status == "waiting":
                workflow.status = "running"
                workflow.started_ts = event.ts
                _discard(state.waiting, event.workflow_id)
                state.running.append(event.workflow_id)
        case WorkflowStepAdded():
            workflow = _open(state, event.workflow_id)
            if workflow is None or event.step.step_id in workflow.steps:
                return state
            added = StepView(spec=event.step, index=len(workflow.steps))
            try:
                check_dependencies(event.step, set(workflow.steps), field="step")
            except WorkflowSpecError as exc:
                added.problem = exc.message
            workflow.steps[event.step.step_id] = added
        case WorkflowStepDispatched():
            step = _open_step(state, event.workflow_id, event.step_id)
            if step is not None and step.status == "pending":
                step.status = "dispatched"
                step.task_id = event.task_id
                step.dispatched_ts = event.ts
                state.task_steps[event.task_id] = (event.workflow_id, event.step_id)
        case WorkflowStepSkipped():
            step = _open_step(state, event.workflow_id, event.step_id)
            if step is not None and step.status == "pending":
                _end_step(step, "skipped", event.reason, event.ts)
        case WorkflowStepCancelled():
            step = _open_step(state, event.workflow_id, event.step_id)
            if step is not None:
                _end_step(step, "cancelled", event.reason or "cancelled by request", event.ts)
        case TaskSubmitted():
            of_task = _step_of_task(state, event.task_id)
            if of_task is not None and event.step_id == of_task.step_id:
                of_task.submitted = True
        case TaskCompleted():
            of_task = _step_of_task(state, event.task_id)
            if of_task is not None and _end_step(of_task, "completed", "", event.ts):
                _keep_result(of_task, event.result)
        case TaskFailed():
            of_task = _step_of_task(state, event.task_id)
            if of_task is not None:
                _end_step(of_task, "failed", event.error or "task failed", event.ts)
        case TaskCancelled():
            of_task = _step_of_task(state, event.task_id)
            if of_task is not None:
                _end_step(of_task, "cancelled", event.reason or "task cancelled", event.ts)
        case WorkflowCompleted() | WorkflowFailed():
            workflow = _open(state, event.workflow_id)
            if workflow is None:
                return state
            for step_id, outcome in event.outcomes.items():
                ended = workflow.steps.get(step_id)
                if ended is not None and outcome in STEP_DONE:
                    _end_step(ended, outcome, ended.reason, event.ts)  # type: ignore[arg-type]
            if isinstance(event, WorkflowFailed):
                workflow.reason = event.reason
                _finish(state, workflow, "failed", event.ts)
            else:
                _finish(state, workflow, "completed", event.ts)
        case WorkflowCancelled():
            workflow = _open(state, event.workflow_id)
            if workflow is None:
                return state
            workflow.reason = event.reason or "cancelled by request"
            for left in workflow.steps.values():
                _end_step(left, "cancelled", "workflow cancelled", event.ts)
            _finish(state, workflow, "cancelled", event.ts)
        case _:
            pass
    return state


WORKFLOWS_SPEC: ProjectionSpec[WorkflowsState] = ProjectionSpec(
    name="workflows",
    state_type=WorkflowsState,
    initial=WorkflowsState,
    apply=apply_workflows,
)
"""The workflows alone, for folding one workflow's own events (one no longer kept in memory)."""
