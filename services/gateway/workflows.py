"""Workflow commands and queries of the gateway, kept apart from the GatewayService shell.

Every command is checked in full before anything is appended (400 naming the problem, 404, 409),
then appended with optimistic concurrency against the workflow's last sequence: a workflow that
changed meanwhile (a step ended, the workflow finished) is looked at again before answering.
The workflow service does the rest (dispatching, cancelling in-flight tasks and telling agents).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.gateway.errors import ApiError
from services.gateway.service import GatewayService
from services.gateway.workflow_report import percent_done, workflow_out
from services.gateway.workflow_schemas import (
    WorkflowAccepted,
    WorkflowChange,
    WorkflowExecuteRequest,
    WorkflowOut,
    WorkflowSummary,
    WorkflowTaskIn,
)
from shared.bus import ConcurrencyConflict
from shared.domain.dag import critical_path
from shared.domain.workflow_spec import WorkflowSpecError, apply_template, check_dependencies, check_steps
from shared.domain.workflows import WORKFLOWS_SPEC, WorkflowView
from shared.events import (
    Event,
    WorkflowCancelled,
    WorkflowStepAdded,
    WorkflowStepCancelled,
    WorkflowSubmitted,
    encode_event,
)
from shared.ids import new_id
from shared.projection_spec import fold

ATTEMPTS = 10


def invalid(exc: WorkflowSpecError) -> ApiError:
    return ApiError(400, "invalid_workflow", exc.message, exc.field)


class WorkflowCommands:
    """Stateless: everything it knows comes from the gateway's projection or the log."""

    def __init__(self, gateway: GatewayService) -> None:
        self.gateway = gateway

    # --- submit ---------------------------------------------------------------------------------

    async def execute(self, data: WorkflowExecuteRequest) -> WorkflowAccepted:
        workflow_id = data.workflow_id or new_id()
        try:
            steps = apply_template(data.template, [task.to_step() for task in data.tasks])
            check_steps(steps)
        except WorkflowSpecError as exc:
            raise invalid(exc) from None
        event = WorkflowSubmitted(
            workflow_id=workflow_id,
            name=data.name,
            description=data.description,
            execution_mode=data.execution_mode,
            optimization_goal=data.optimization_goal,
            template=data.template,
            steps=steps,
            correlation_id=data.correlation_id or workflow_id,
        )
        self._check_size(event)
        try:
            result = await self.gateway.bus.append(event, expected=0)
        except ConcurrencyConflict:
            raise ApiError(
                409, "conflict", f"workflow {workflow_id!r} already exists", "workflow_id"
            ) from None
        dependencies = {step.step_id: list(step.dependencies) for step in steps}
        path, minutes = critical_path(
            dependencies, {step.step_id: step.estimated_duration_minutes for step in steps}
        )
        return WorkflowAccepted(
            workflow_id=workflow_id,
            status="submitted",
            tasks=len(steps),
            dependencies=dependencies,
            critical_path=path,
            estimated_duration_minutes=round(minutes, 3),
            seq=result.seq,
        )

    def _check_size(self, event: Event) -> None:
        limit = int(self.gateway.bus.nc.max_payload)
        size = len(encode_event(event))
        if size > limit:
            raise ApiError(
                413,
                "payload_too_large",
                f"the workflow takes {size} bytes as an event; the NATS server accepts {limit} "
                "(make payloads smaller or split the workflow)",
                "tasks",
            )

    # --- query ----------------------------------------------------------------------------------

    async def find(self, workflow_id: str) -> WorkflowView:
        """From the projection, or folded from the workflow's own events when no longer kept."""
        found = self.gateway.view.state.workflows.workflows.get(workflow_id)
        if found is not None:
            return found
        events, _last = await self.gateway.bus.read_aggregate("workflow", workflow_id)
        folded = fold(WORKFLOWS_SPEC, events).workflows.get(workflow_id)
        if folded is None:
            raise ApiError(404, "not_found", f"workflow {workflow_id!r} does not exist")
        return folded

    async def status(self, workflow_id: str) -> WorkflowOut:
        workflow = await self.find(workflow_id)
        waiting = self.gateway.view.state.workflows.waiting
        position = (
            waiting.index(workflow_id) + 1
            if workflow.status == "waiting" and workflow_id in waiting
            else None
        )
        return workflow_out(
            workflow,
            self.gateway.view.state.fleet,
            time.time(),
            queue_position=position,
            seq=self.gateway.view.seq,
        )

    def summaries(self, status: str | None, limit: int) -> list[WorkflowSummary]:
        """Workflows kept in memory, most recently submitted first."""
        found = [
            workflow
            for workflow in self.gateway.view.state.workflows.workflows.values()
            if status is None or workflow.status == status
        ]
        found.sort(key=lambda w: w.submitted_seq, reverse=True)
        return [
            WorkflowSummary(
                workflow_id=w.workflow_id,
                name=w.name,
                status=w.status,
                reason=w.reason,
                execution_mode=w.execution_mode,
                optimization_goal=w.optimization_goal,
                tasks=len(w.steps),
                percent=percent_done(w),
                submitted_ts=w.submitted_ts,
                started_ts=w.started_ts,
                finished_ts=w.finished_ts,
            )
            for w in found[:limit]
        ]

    # --- dynamic changes ------------------------------------------------------------------------

    async def _open(self, workflow_id: str) -> WorkflowView:
        workflow = await self.find(workflow_id)
        if workflow.done:
            raise ApiError(409, "conflict", f"workflow {workflow_id!r} is already {workflow.status}")
        return workflow

    async def _change(self, workflow_id: str, build: Callable[[WorkflowView], Event]) -> int:
        """Append what `build` makes of the open workflow, against its last sequence; when another
        writer got there first, look again (build checks anew) a few times, then give up with 409."""
        view = self.gateway.view
        for _ in range(ATTEMPTS):
            event = build(await self._open(workflow_id))
            try:
                result = await self.gateway.bus.append(
                    event, expected=await view.expected_version("workflow", workflow_id)
                )
            except ConcurrencyConflict:
                await view.catch_up()
                continue
            return result.seq
        raise ApiError(409, "conflict", f"workflow {workflow_id!r} keeps changing; try again")

    async def add_task(self, workflow_id: str, data: WorkflowTaskIn) -> WorkflowChange:
        step = data.to_step()

        def added(workflow: WorkflowView) -> Event:
            if step.step_id in workflow.steps:
                raise ApiError(
                    409,
                    "conflict",
                    f"workflow {workflow_id!r} already has a task {step.step_id!r}",
                    "task_id",
                )
            try:
                check_dependencies(step, set(workflow.steps), field="")
            except WorkflowSpecError as exc:
                raise ApiError(400, "invalid_workflow", exc.message, (exc.field or "").lstrip(".")) from None
            return WorkflowStepAdded(
                workflow_id=workflow_id, step=step, correlation_id=workflow.correlation_id
            )

        seq = await self._change(workflow_id, added)
        return WorkflowChange(workflow_id=workflow_id, task_id=step.step_id, status="added", seq=seq)

    async def cancel_task(self, workflow_id: str, task_id: str, reason: str) -> WorkflowChange:
        def cancelled(workflow: WorkflowView) -> Event:
            step = workflow.steps.get(task_id)
            if step is None:
                raise ApiError(404, "not_found", f"workflow {workflow_id!r} has no task {task_id!r}")
            if step.done:
                raise ApiError(
                    409, "conflict", f"task {task_id!r} of workflow {workflow_id!r} is already {step.status}"
                )
            return WorkflowStepCancelled(
                workflow_id=workflow_id,
                step_id=task_id,
                reason=reason,
                correlation_id=workflow.correlation_id,
            )

        seq = await self._change(workflow_id, cancelled)
        return WorkflowChange(workflow_id=workflow_id, task_id=task_id, status="cancelled", seq=seq)

    async def cancel(self, workflow_id: str, reason: str) -> WorkflowChange:
        def cancelled(workflow: WorkflowView) -> Event:
            return WorkflowCancelled(
                workflow_id=workflow_id, reason=reason, correlation_id=workflow.correlation_id
            )

        seq = await self._change(workflow_id, cancelled)
        return WorkflowChange(workflow_id=workflow_id, status="cancelled", seq=seq)
