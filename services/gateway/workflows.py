"""The gateway's workflow desk: submit a DAG, follow it, change it while it runs.

Every command is checked in full before anything is appended (400 naming the problem, 404, 409),
then appended with optimistic concurrency against the workflow's last sequence (``shared.command``):
a workflow that changed meanwhile (a step ended, the workflow finished) is looked at again.
The workflow service does the rest (dispatching, cancelling in-flight tasks and telling agents).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.gateway.core import GatewayCore
from services.gateway.errors import ApiError
from services.gateway.query.filters import Page, WorkflowFilter, encode_cursor
from services.gateway.query.store import WORKFLOW_COLUMN_NAMES
from services.gateway.templates import workflow_template
from services.gateway.workflow_report import workflow_out
from services.gateway.workflow_schemas import (
    WorkflowAccepted,
    WorkflowChange,
    WorkflowExecuteRequest,
    WorkflowOut,
    WorkflowPage,
    WorkflowSummary,
    WorkflowTaskIn,
)
from shared.bus import ConcurrencyConflict, EventTooLarge
from shared.command import Change, command
from shared.domain.dag import critical_path
from shared.domain.schedules import workflow_submission
from shared.domain.workflow_spec import WorkflowSpecError, check_dependencies, with_execution_mode
from shared.domain.workflows import WorkflowView
from shared.events import (
    Event,
    WorkflowCancelled,
    WorkflowStepAdded,
    WorkflowStepCancelled,
)
from shared.ids import new_id

WORKFLOWS = "workflows"
"""The kind of list a workflow cursor continues."""
WORKFLOW_SUMMARY_FIELDS = tuple("submitted_seq" if name == "seq" else name for name in WORKFLOW_COLUMN_NAMES)
"""The fields of a listed workflow, in the order the store reads them."""


class WorkflowDesk:
    """Stateless: everything it knows comes from the gateway's projection or its query model."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    # --- submit ---------------------------------------------------------------------------------

    async def execute(self, data: WorkflowExecuteRequest) -> WorkflowAccepted:
        """Not a command retried on conflict: expected 0 makes the id new once; a conflict is a 409."""
        workflow_id = data.workflow_id or new_id()
        template = workflow_template(data)
        event = workflow_submission(
            template, workflow_id=workflow_id, correlation_id=data.correlation_id or workflow_id
        )
        steps = template.steps
        try:
            result = await self.core.bus.append(event, expected=0)
        except EventTooLarge as exc:
            raise ApiError(
                413,
                "payload_too_large",
                f"the workflow takes {exc.size} bytes as an event; the NATS server accepts {exc.limit} "
                "(make payloads smaller or split the workflow)",
                "tasks",
            ) from None
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

    # --- query ----------------------------------------------------------------------------------

    async def find(self, workflow_id: str) -> WorkflowView:
        """A workflow still running (or waiting) from the projection; one that ended, from the query
        model, as every ended workflow of any age (404 with the reason when it has none)."""
        core = self.core
        for looked in range(2):
            found = core.view.state.workflows.workflows.get(workflow_id)
            if found is not None and not found.done:
                return found
            await core.query_ready()
            stored = await core.query.store.workflow(workflow_id)
            if stored is not None:
                return stored
            if looked or not await core.caught_up_on("workflow", workflow_id):
                break  # a workflow the log holds but this gateway had not read: looked at again
        raise await core.missing("workflow", workflow_id)

    async def status(self, workflow_id: str, after_seq: int | None = None) -> WorkflowOut:
        if after_seq is not None:
            await self.core.wait_for_seq(after_seq)
        workflow = await self.find(workflow_id)
        waiting = self.core.view.state.workflows.waiting
        position = (
            waiting.index(workflow_id) + 1
            if workflow.status == "waiting" and workflow_id in waiting
            else None
        )
        return workflow_out(
            workflow,
            self.core.view.state.fleet,
            time.time(),
            queue_position=position,
            seq=self.core.view.seq,
        )

    async def summaries(
        self, where: WorkflowFilter, page: Page, after_seq: int | None = None
    ) -> WorkflowPage:
        """Workflows of any age from the query model, most recently submitted first."""
        await self.core.query_ready(after_seq)
        rows = await self.core.query.store.workflows(where, page)
        items = [
            WorkflowSummary(**dict(zip(WORKFLOW_SUMMARY_FIELDS, row, strict=True)))
            for row in rows[: page.limit]
        ]
        more = len(rows) > page.limit
        return WorkflowPage(
            items=items, next_cursor=encode_cursor(WORKFLOWS, items[-1].submitted_seq) if more else None
        )

    # --- dynamic changes ------------------------------------------------------------------------

    async def _open(self, workflow_id: str) -> WorkflowView:
        workflow = await self.find(workflow_id)
        if workflow.done:
            raise ApiError(409, "conflict", f"workflow {workflow_id!r} is already {workflow.status}")
        return workflow

    async def _change(self, workflow_id: str, build: Callable[[WorkflowView], Event]) -> int:
        """Append what `build` makes of the open workflow, against its last sequence; when another
        writer got there first, look again (build checks anew); 409 when it keeps changing."""

        async def decide(_version: int) -> Change:
            return Change(build(await self._open(workflow_id)))

        await self.core.caught_up_on("workflow", workflow_id)
        done = await command(self.core.bus, self.core.view, "workflow", workflow_id, decide)
        assert done is not None  # build always makes an event or refuses
        return done[1].seq

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
                workflow_id=workflow_id,
                step=with_execution_mode(workflow.execution_mode, [step])[0],
                correlation_id=workflow.correlation_id,
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
