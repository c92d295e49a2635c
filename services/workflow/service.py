"""Workflow shell: wake on what can move a workflow, decide, append, decide again until settled.

Every decision is appended against the workflow's last sequence, so racing instances cannot both
act on the same state: the loser catches up and decides again. A step starts with two appends,
``workflow.step_dispatched`` (the decision, guarded) then ``task.submitted`` (expected 0, a new
task with an id derived from the workflow and step ids). A crash between them leaves the
triggering event unacknowledged: it comes back, and ``decide`` finds the dispatch without its task
and submits it, once (a second submission is refused as the task exists). Admission to one of the
MAX_CONCURRENT_WORKFLOWS slots is appended against the last ``workflow.started`` of *all*
workflows, so instances racing for the last slot cannot both take it.

The end of a step's task is not a work event: task endings are as frequent as tasks and most
tasks belong to no workflow, so taking each one off a durable consumer (deliver, ack) would cost
every task a round trip for nothing. The projection, which reads every event anyway, notices the
ending of a step's task and queues that workflow for a decision; on start every running workflow
is queued once, which covers endings that happened while no instance was looking.

Schedules are fired by the same service (``scheduler.py``): it already submits tasks for workflow
steps, and a scheduled slot is the same two appends (the decision, then the submission).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from prometheus_client import Gauge

from services.workflow.decide import (
    Action,
    CancelTask,
    Dispatch,
    Finish,
    Skip,
    StepTask,
    Submit,
    admissions,
    affected,
    decide,
)
from services.workflow.scheduler import Scheduler
from services.workflow.view import WORKFLOW_VIEW
from shared.bus import ConcurrencyConflict
from shared.command import retry_on_conflict
from shared.domain.cancellation import cancel_notice, cancellation
from shared.domain.message_ids import (
    cancel_msg_id,
    notice_msg_id,
    step_dispatch_msg_id,
    step_skip_msg_id,
    workflow_end_msg_id,
    workflow_start_msg_id,
    workflow_task_msg_id,
)
from shared.domain.windows import WindowSums
from shared.domain.workflows import WorkflowView
from shared.events import (
    AgentRecovered,
    AgentRegistered,
    Event,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStepAdded,
    WorkflowStepCancelled,
    WorkflowStepDispatched,
    WorkflowStepSkipped,
    WorkflowSubmitted,
)
from shared.recorded import Recorded
from shared.service import Service
from shared.subjects import events_of_type
from shared.work import WorkSpec

TRIGGERS: list[type[Event]] = [
    WorkflowSubmitted,
    WorkflowStarted,
    WorkflowStepAdded,
    WorkflowStepCancelled,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    AgentRegistered,
    AgentRecovered,
]
"""Work events: after them a workflow may have something to do. The service's own per-step events
(step_dispatched, step_skipped) are not among them: it decides again right after appending them.
Nor are the endings of tasks (``STEP_ENDINGS``): the projection notices those."""

STEP_ENDINGS = (TaskCompleted, TaskFailed, TaskCancelled)
"""Endings of a task that move its workflow (an attempt's failure does not: recovery retries it)."""
RETRY_AFTER_S = 1.0
"""Pause before deciding again for a workflow whose decision could not be appended."""

STARTED = events_of_type("workflow", WorkflowStarted.event_type())


class WorkflowService(Service):
    name = "workflow"
    clock: Callable[[], float] = staticmethod(time.time)
    """What schedules read the time from (a test's subclass stands for an instance started later)."""

    async def setup(self) -> None:
        self.view = self.projection(WORKFLOW_VIEW)
        self.work(
            WorkSpec(
                durable="workflow",
                filters=[events_of_type(cls.AGGREGATE, cls.event_type()) for cls in TRIGGERS],
                handler=self.on_event,
            )
        )
        self.dispatched = 0
        self.admitted = 0
        self.conflicts = 0
        self.outcomes = WindowSums()
        """Workflows ended per second of event time (a: completed, b: completed or failed)."""
        self.completion_rate = Gauge(
            "orchestration_workflow_completion_rate",
            "Completed / (completed + failed) workflows over METRICS_WINDOW_S, as of the last one that ended",
            registry=self.metrics.registry,
        )
        self.completion_rate.set(math.nan)
        self._due: dict[str, str] = {}
        """Workflows a step ended in and not yet decided for, with the ending event's id (FIFO)."""
        self._due_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.view.add_listener(self._on_applied)
        self.scheduler = Scheduler(self.bus, self.view, self.log, clock=self.clock, instance=self.instance)
        self.view.add_listener(self.scheduler.on_applied)

    async def on_started(self) -> None:
        # A step may have ended while no instance was looking: decide once for every running one
        # (endings seen while catching up count only for workflows still running).
        running = self.view.state.flows.running
        self._due = {wid: cause for wid, cause in self._due.items() if wid in running}
        for workflow_id in running:
            self._due.setdefault(workflow_id, "")
        self._due_task = asyncio.create_task(self._decide_due(), name="workflow-due")
        await self.scheduler.start()

    async def on_stopping(self) -> None:
        """Finish the decision in hand (a few appends), then stop; what is left is redone on start."""
        self._stopping = True
        await self.scheduler.stop()
        task = self._due_task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def details(self) -> dict[str, Any]:
        flows = self.view.state.flows
        return {
            "workflows": dict(Counter(w.status for w in flows.workflows.values())),
            "waiting": len(flows.waiting),
            "running": len(flows.running),
            "max_running": self.settings.max_concurrent_workflows,
            "decisions_due": len(self._due),
            "steps_dispatched": self.dispatched,
            "admitted": self.admitted,
            "conflicts": self.conflicts,
            "schedules": self.scheduler.details(),
        }

    def _on_applied(self, recorded: Recorded) -> None:
        event = recorded.event
        if isinstance(event, STEP_ENDINGS):
            for workflow_id in affected(self.view.state, event):
                self._due.setdefault(workflow_id, event.id)
                if self._due_task is not None and self._due_task.done() and not self._stopping:
                    self._due_task = asyncio.create_task(self._decide_due(), name="workflow-due")
            return
        if not isinstance(event, WorkflowCompleted | WorkflowFailed):
            return
        self.outcomes.add(event.ts, 1.0 if isinstance(event, WorkflowCompleted) else 0.0)
        ended = self.outcomes.sums(event.ts - self.settings.metrics_window_s)
        self.completion_rate.set(ended.a / ended.b if ended.b else math.nan)

    async def on_event(self, recorded: Recorded) -> None:
        await self.view.wait_for(recorded.seq)
        cause = recorded.event.id
        for workflow_id in affected(self.view.state, recorded.event):
            await self.reconcile(workflow_id, cause)
        for workflow_id in await self.admit(cause):
            await self.reconcile(workflow_id, cause)

    async def _decide_due(self) -> None:
        """Decide for each workflow a step ended in, oldest first, until none is left."""
        while self._due and not self._stopping:
            workflow_id = next(iter(self._due))
            cause = self._due.pop(workflow_id)
            try:
                await self.reconcile(workflow_id, cause)
            except Exception:
                self.log.exception(
                    "workflow_decision_failed", workflow_id=workflow_id, retry_in_s=RETRY_AFTER_S
                )
                self._due.setdefault(workflow_id, cause)
                await asyncio.sleep(RETRY_AFTER_S)

    # --- one workflow -------------------------------------------------------------------------

    async def reconcile(self, workflow_id: str, cause: str) -> None:
        """Append what ``decide`` asks for, then ask again, until it asks for nothing."""
        rounds = 0

        async def once() -> int | None:
            """One decision appended; the last sequence written, or None when settled (or stuck)."""
            nonlocal rounds
            actions = decide(self.view.state, workflow_id)
            if not actions:
                return None
            rounds += 1
            if rounds > 4 * len(self.view.state.flows.workflows[workflow_id].steps) + 50:
                self.log.error("workflow_not_settling", workflow_id=workflow_id, actions=repr(actions[:3]))
                return None
            return await self._perform(workflow_id, actions, cause)

        while True:
            last = await retry_on_conflict(
                once, self.view.catch_up, what=f"workflow {workflow_id!r}", on_conflict=self._conflicted
            )
            if last is None:
                return
            await self.view.wait_for(last)

    def _conflicted(self) -> None:
        self.conflicts += 1

    async def _perform(self, workflow_id: str, actions: list[Action], cause: str) -> int:
        """Append the actions in order; returns the last sequence written (to wait for)."""
        workflow = self.view.state.flows.workflows[workflow_id]
        version = await self.view.expected_version("workflow", workflow_id)
        last = 0
        for action in actions:
            if isinstance(action, CancelTask):
                last = max(last, await self._cancel_task(action, cause))
                continue
            if isinstance(action, Submit):
                last = max(last, await self._submit(workflow, action.task, cause))
                continue
            event = self._workflow_event(workflow, action, cause)
            result = await self.bus.append(event, expected=version, msg_id=_msg_id(workflow_id, action))
            version = last = max(version, result.seq)
            if isinstance(action, Dispatch):
                self.dispatched += 1
                last = max(last, await self._submit(workflow, action.task, cause))
            elif isinstance(action, Finish):
                self.log.info("workflow_finished", workflow_id=workflow_id, status=action.status)
        return last

    def _workflow_event(self, workflow: WorkflowView, action: Action, cause: str) -> Event:
        common: dict[str, Any] = {
            "workflow_id": workflow.workflow_id,
            "correlation_id": workflow.correlation_id,
            "causation_id": cause,
        }
        if isinstance(action, Dispatch):
            return WorkflowStepDispatched(step_id=action.task.step_id, task_id=action.task.task_id, **common)
        if isinstance(action, Skip):
            return WorkflowStepSkipped(step_id=action.step_id, reason=action.reason, **common)
        if isinstance(action, Finish) and action.status == "completed":
            return WorkflowCompleted(summary=action.summary, outcomes=action.outcomes, **common)
        if isinstance(action, Finish):
            return WorkflowFailed(
                reason=action.reason, summary=action.summary, outcomes=action.outcomes, **common
            )
        raise TypeError(f"not a workflow event: {action!r}")

    async def _submit(self, workflow: WorkflowView, task: StepTask, cause: str) -> int:
        """Submit a step's task; if it is already in the log, return where, so it can be awaited."""
        step = workflow.steps[task.step_id].spec
        payload = dict(step.payload)
        if task.upstream and "upstream" not in payload:
            payload["upstream"] = task.upstream
        if workflow.context and "context" not in payload:
            payload["context"] = workflow.context
        event = TaskSubmitted(
            task_id=task.task_id,
            task_type=step.task_type,
            name=step.name or step.step_id,
            description=step.description,
            priority=task.priority,
            required_capabilities=step.required_capabilities,
            profile=step.profile,
            routing_strategy=task.routing_strategy,
            expected_quality_threshold=task.expected_quality_threshold,
            deadline_ts=task.deadline_ts,
            payload=payload,
            timeout_s=step.timeout_s,
            retry=step.retry,
            estimated_duration_s=step.estimated_duration_minutes * 60,
            workflow_id=workflow.workflow_id,
            step_id=step.step_id,
            submitted_by="workflow",
            concurrency_key=step.concurrency_key,
            rate_limit_key=step.rate_limit_key,
            units=step.units,
            affinity_key=step.affinity_key,
            affinity=step.affinity,
            labels=step.labels,
            label_rules=step.label_rules,
            correlation_id=workflow.correlation_id,
            causation_id=cause,
        )
        try:
            result = await self.bus.append(event, expected=0, msg_id=workflow_task_msg_id(task.task_id))
        except ConcurrencyConflict:  # not retried: the task exists, which is all this step needs
            return await self.bus.aggregate_version("task", task.task_id)
        return result.seq

    async def _cancel_task(self, action: CancelTask, cause: str) -> int:
        task = self.view.state.fleet.tasks[action.task_id]
        # Both built before any await: the view (and this task in it) moves while we append.
        terminal = cancellation(task, action.reason, cause)
        notice = cancel_notice(task, action.reason, cause)
        result = await self.bus.append(
            terminal,
            expected=await self.view.expected_version("task", action.task_id),
            msg_id=cancel_msg_id(action.task_id),
        )
        if notice is not None:
            await self.bus.append(notice, expected=None, msg_id=notice_msg_id(task.task_id, task.attempt))
        return result.seq

    # --- admission ------------------------------------------------------------------------------

    async def admit(self, cause: str) -> list[str]:
        """Start waiting workflows while slots are free; returns those this call started."""
        started: list[str] = []
        limit = self.settings.max_concurrent_workflows

        async def once() -> str | None:
            """Start the next waiting workflow; None when there is none or no slot is free."""
            # Every earlier start must be applied before counting the running workflows: reading
            # that guard afresh is this attempt's catching up.
            guard_seq = await self.bus.last_sequence_of(STARTED)
            await self.view.wait_for(guard_seq)
            candidates = admissions(self.view.state.flows, limit)
            if not candidates:
                return None
            workflow = self.view.state.flows.workflows[candidates[0]]
            event = WorkflowStarted(
                workflow_id=workflow.workflow_id,
                running=len(self.view.state.flows.running) + 1,
                correlation_id=workflow.correlation_id,
                causation_id=cause,
            )
            result = await self.bus.append(
                event,
                expected=guard_seq,
                expected_filter=STARTED,
                msg_id=workflow_start_msg_id(workflow.workflow_id),
            )
            await self.view.wait_for(result.seq)
            return workflow.workflow_id

        while admissions(self.view.state.flows, limit):
            workflow_id = await retry_on_conflict(
                once, None, what="the running workflows (admission)", on_conflict=self._conflicted
            )
            if workflow_id is None:
                break
            self.admitted += 1
            started.append(workflow_id)
        return started


def _msg_id(workflow_id: str, action: Action) -> str:
    """One message id per decision, so a decision replayed within the window is stored once."""
    if isinstance(action, Dispatch):
        return step_dispatch_msg_id(workflow_id, action.task.step_id)
    if isinstance(action, Skip):
        return step_skip_msg_id(workflow_id, action.step_id)
    return workflow_end_msg_id(workflow_id)
