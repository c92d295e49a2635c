"""A workflow's status as the API shows it: per-task state, progress, critical path, estimate. Pure.

The critical path is the plan's: the longest chain of estimated durations through the graph. The
estimated finish is now plus the longest chain of what remains: nothing for ended tasks, the
estimate minus the time already spent for running ones, the full estimate for the rest. For a
workflow still waiting for a slot it is the earliest possible finish (if it started now).
"""

from __future__ import annotations

from services.gateway.workflow_schemas import WorkflowOut, WorkflowProgress, WorkflowTaskOut
from shared.domain.dag import critical_path, zero_slack
from shared.domain.fleet import FleetState, TaskView
from shared.domain.workflows import StepView, WorkflowView, percent_done

FLEET_TO_STEP = {
    "pending": "queued",
    "queued": "queued",
    "assigned": "assigned",
    "running": "running",
    "retrying": "retrying",
}


def step_state(workflow: WorkflowView, step: StepView, task: TaskView | None) -> str:
    if step.status == "pending":
        deps_done = all(workflow.steps[d].done for d in step.spec.dependencies if d in workflow.steps)
        return "ready" if deps_done and workflow.status == "running" else "pending"
    if step.status == "dispatched":
        if task is None:
            return "dispatched"
        return FLEET_TO_STEP.get(task.status, task.status)
    return step.status


def _remaining_s(step: StepView, task: TaskView | None, now: float) -> float:
    if step.done:
        return 0.0
    planned = step.spec.estimated_duration_minutes * 60
    if task is not None and task.started_ts is not None:
        return max(0.0, planned - (now - task.started_ts))
    return planned


def workflow_out(
    workflow: WorkflowView, fleet: FleetState, now: float, *, queue_position: int | None, seq: int
) -> WorkflowOut:
    steps = workflow.steps
    tasks = {name: fleet.tasks.get(step.task_id) if step.task_id else None for name, step in steps.items()}
    deps = {name: list(step.spec.dependencies) for name, step in steps.items()}
    plan = {name: step.spec.estimated_duration_minutes for name, step in steps.items()}
    path, path_minutes = critical_path(deps, plan)
    critical = zero_slack(deps, plan)
    remaining = {name: _remaining_s(step, tasks[name], now) for name, step in steps.items()}
    _rest, remaining_s = critical_path(deps, remaining)
    statuses = [step.status for step in steps.values()]
    progress = WorkflowProgress(
        total=len(steps),
        completed=statuses.count("completed"),
        failed=statuses.count("failed"),
        skipped=statuses.count("skipped"),
        cancelled=statuses.count("cancelled"),
        in_flight=statuses.count("dispatched"),
        pending=statuses.count("pending"),
        percent=percent_done(workflow),
    )
    return WorkflowOut(
        workflow_id=workflow.workflow_id,
        name=workflow.name,
        description=workflow.description,
        status=workflow.status,
        reason=workflow.reason,
        execution_mode=workflow.execution_mode,
        optimization_goal=workflow.optimization_goal,
        template=workflow.template,
        resource_allocation_strategy=workflow.resource_allocation,
        max_concurrent_tasks=workflow.max_concurrent_tasks,
        quality_threshold=workflow.quality_threshold,
        failure_tolerance=workflow.failure_tolerance,
        max_duration_minutes=None if workflow.max_duration_s is None else workflow.max_duration_s / 60,
        submitted_ts=workflow.submitted_ts,
        started_ts=workflow.started_ts,
        finished_ts=workflow.finished_ts,
        queue_position=queue_position,
        progress=progress,
        critical_path=path,
        critical_path_minutes=round(path_minutes, 3),
        estimated_remaining_minutes=0.0 if workflow.done else round(remaining_s / 60, 3),
        estimated_finish_ts=workflow.finished_ts if workflow.done else now + remaining_s,
        tasks=[_task_out(workflow, step, tasks[name], name in critical) for name, step in steps.items()],
        seq=seq,
    )


def _task_out(
    workflow: WorkflowView, step: StepView, task: TaskView | None, critical: bool
) -> WorkflowTaskOut:
    spec = step.spec
    return WorkflowTaskOut(
        task_id=spec.step_id,
        name=spec.name,
        task_type=spec.task_type,
        status=step_state(workflow, step, task),
        reason=step.reason or step.problem or (task.last_error if task is not None and not step.done else ""),
        dependencies=list(spec.dependencies),
        condition=spec.condition,
        parallelizable=spec.parallelizable,
        priority=task.spec.priority if task is not None else spec.priority,
        estimated_duration_minutes=spec.estimated_duration_minutes,
        on_critical_path=critical,
        hive_task_id=step.task_id or None,
        attempt=task.attempt if task is not None else None,
        agent_id=task.agent_id if task is not None else None,
        dispatched_ts=step.dispatched_ts,
        started_ts=task.started_ts if task is not None else None,
        finished_ts=step.finished_ts,
    )
