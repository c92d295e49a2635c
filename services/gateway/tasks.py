"""The gateway's task desk: submit a task and wait a while for its routing, show a task, cancel one.

A submission is ``task.submitted`` appended with expected 0 (a task id is new only once). A retry
of the same request (same task id, same content: ``resubmission.py``) is answered as the original,
so a client that got no answer may simply send it again; the same id with other content is a 409.
When the event log does not answer, the 503 says whether the task may have been stored (the append
went out and its answer did not come back) or surely was not. ``task/assign`` then waits up to
``ASSIGN_WAIT_MS`` for the router's decision and answers with it, or with the task queued or still
pending. A delayed task (``not_before``, ``delay_seconds``) is answered at once as scheduled: the
router takes it at its time. A cancellation is a command on the task (``shared.command``), followed
by a notice to the agent holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from prometheus_client import CollectorRegistry, Counter

from services.gateway.core import GatewayCore
from services.gateway.errors import ApiError
from services.gateway.query.filters import Page, TaskFilter, encode_cursor
from services.gateway.query.store import TASK_COLUMN_NAMES
from services.gateway.resubmission import same_submission
from services.gateway.schemas import (
    AssignmentOut,
    CancelResponse,
    TaskAssignRequest,
    TaskAssignResponse,
    TaskOut,
    TaskPage,
    TaskSummary,
)
from services.gateway.templates import task_start, task_template
from services.gateway.timestamps import iso_utc
from shared.bus import ConcurrencyConflict
from shared.command import Change, command
from shared.domain.cancellation import cancel_notice, cancellation
from shared.domain.fleet import TaskView
from shared.domain.message_ids import cancel_msg_id, notice_msg_id
from shared.domain.schedules import task_submission
from shared.events import TaskAssigned, TaskCancelRequested, TaskQueued, TaskSubmitted
from shared.ids import new_id
from shared.recorded import Recorded

TASKS = "tasks"
"""The kind of list a task cursor continues."""
TASK_SUMMARY_FIELDS = tuple("submitted_seq" if name == "seq" else name for name in TASK_COLUMN_NAMES)
"""The fields of a listed task, in the order the store reads them."""


@dataclass(frozen=True)
class Cancellation(Change):
    """The terminal event, and the word to the agent holding the task (appended once that is stored)."""

    notice: TaskCancelRequested | None = None


class TaskDesk:
    def __init__(self, core: GatewayCore, registry: CollectorRegistry) -> None:
        self.core = core
        self._routing_waiters: dict[str, asyncio.Future[None]] = {}
        self.submitted = Counter(
            "hive_gateway_tasks_submitted_total", "Tasks submitted over HTTP", registry=registry
        )

    def on_event(self, recorded: Recorded) -> None:
        """Wake the submission waiting for this task's routing decision."""
        event = recorded.event
        if isinstance(event, TaskAssigned | TaskQueued):
            waiter = self._routing_waiters.get(event.task_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # --- submit ---------------------------------------------------------------------------------

    async def submit(self, data: TaskAssignRequest) -> TaskAssignResponse:
        # Not a command retried on conflict: expected 0 makes the id new once; a conflict is a 409.
        task_id = data.task_id or new_id()
        now = time.time()
        start = task_start(data, now)
        event = task_submission(
            task_template(data),
            task_id=task_id,
            ts=now,
            not_before_ts=start,
            submitted_by="gateway",
            correlation_id=data.correlation_id or task_id,
        )
        core = self.core
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._routing_waiters[task_id] = waiter
        try:
            stored, seq = await self._store(event)
            if stored.not_before_ts is not None:
                return scheduled_answer(task_id, stored.not_before_ts, seq)
            if core.settings.assign_wait_ms > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        self._routed(task_id, seq, waiter), core.settings.assign_wait_ms / 1000
                    )
        finally:
            self._routing_waiters.pop(task_id, None)
        return routing_answer(core.view.state.fleet.tasks.get(task_id), task_id, seq)

    async def _store(self, event: TaskSubmitted) -> tuple[TaskSubmitted, int]:
        """Append the submission, or find it stored by an earlier try: what is stored, and where."""
        task_id = event.task_id
        try:
            try:
                result = await self.core.bus.append(event, expected=0)
            except ConcurrencyConflict:
                return await self._stored_before(event)
        except nats.errors.NoRespondersError as exc:
            raise ApiError(
                503,
                "unavailable",
                f"event log unavailable ({type(exc).__name__}): task {task_id!r} was not stored, retry later",
                "task_id",
                retry_after_s=1,
            ) from None
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise ApiError(
                503,
                "unavailable",
                f"event log unavailable ({type(exc).__name__}): task {task_id!r} may have been stored; "
                "retry with the same task_id (the same request is answered as the original)",
                "task_id",
                retry_after_s=1,
            ) from None
        self.submitted.inc()
        return event, result.seq

    async def _stored_before(self, event: TaskSubmitted) -> tuple[TaskSubmitted, int]:
        """The id is taken: by this very request (an earlier try landed), or 409."""
        task_id = event.task_id
        try:
            stored = await self.core.find_task(task_id)
        except ApiError as exc:
            if exc.status != 404:
                raise  # not caught up (503): the client retries; never a 409 for a task unseen yet
            stored = None  # events under that id, none of them a submission
        if stored is None or not same_submission(stored.spec, event):
            raise ApiError(409, "conflict", f"task {task_id!r} already exists with other content", "task_id")
        return stored.spec, stored.submitted_seq

    async def _routed(self, task_id: str, seq: int, waiter: asyncio.Future[None]) -> None:
        async with self.core.view.urgent():  # the decision is due any moment: no reading in bursts
            await self.core.view.wait_for(seq)
            task = self.core.view.state.fleet.tasks.get(task_id)
            if task is not None and (task.status != "pending" or task.assignments):
                return
            await waiter

    # --- show -----------------------------------------------------------------------------------

    async def task(self, task_id: str, after_seq: int | None = None) -> TaskOut:
        """From the query model, once it holds what this gateway has applied (and `after_seq`)."""
        return task_out(await self.core.stored_task(task_id, after_seq))

    async def listed(self, where: TaskFilter, page: Page, after_seq: int | None = None) -> TaskPage:
        """A page of tasks of any age, newest submission first."""
        await self.core.query_ready(after_seq)
        rows = await self.core.query.store.tasks(where, page)
        items = [TaskSummary(*row) for row in rows[: page.limit]]
        more = len(rows) > page.limit
        return TaskPage(
            items=items, next_cursor=encode_cursor(TASKS, items[-1].submitted_seq) if more else None
        )

    # --- cancel ---------------------------------------------------------------------------------

    async def cancel(self, task_id: str, reason: str) -> CancelResponse:
        async def decide(_version: int) -> Cancellation:
            task = await self.core.find_task(task_id)
            if task.terminal:
                raise ApiError(409, "conflict", f"task {task_id!r} is already {task.status}")
            # Both built before any await: the view (and this task in it) moves while we append.
            return Cancellation(
                cancellation(task, reason), cancel_msg_id(task_id), notice=cancel_notice(task, reason)
            )

        await self.core.caught_up_on("task", task_id)
        done = await command(self.core.bus, self.core.view, "task", task_id, decide)
        assert done is not None  # decide always cancels or refuses
        change, result = done
        if change.notice is not None:
            await self.core.bus.append(
                change.notice, expected=None, msg_id=notice_msg_id(task_id, change.notice.attempt)
            )
        return CancelResponse(task_id=task_id, status="cancelled", seq=result.seq)


def scheduled_answer(task_id: str, start: float, seq: int) -> TaskAssignResponse:
    """What ``task/assign`` answers for a delayed task: scheduled, and until when."""
    return TaskAssignResponse(
        task_id=task_id,
        status="scheduled",
        detail=f"delayed: routed at {iso_utc(start)}",
        not_before_ts=start,
        seq=seq,
        timestamp=iso_utc(time.time()),
    )


def routing_answer(task: TaskView | None, task_id: str, seq: int) -> TaskAssignResponse:
    """What ``task/assign`` answers: the assignment, the reason it is queued, or pending."""
    if task is not None and task.assignments:
        last = task.assignments[-1]
        return TaskAssignResponse(
            task_id=task_id,
            status="assigned",
            attempt=last.attempt,
            agent_id=last.agent_id,
            strategy=last.strategy,
            score=last.score,
            breakdown=last.breakdown,
            rejected=last.rejected,
            explanation=last.explanation,
            seq=seq,
            success=True,
            timestamp=iso_utc(time.time()),
        )
    if task is not None and task.status == "queued":
        return TaskAssignResponse(
            task_id=task_id,
            status="queued",
            reason=task.queued_reason,
            detail=task.queued_detail,
            attempt=task.attempt,
            seq=seq,
            timestamp=iso_utc(time.time()),
        )
    return TaskAssignResponse(
        task_id=task_id,
        status="pending",
        detail="submitted; no routing decision yet",
        seq=seq,
        timestamp=iso_utc(time.time()),
    )


def task_status(task: TaskView, now: float) -> str:
    """The task's status; a delayed task waiting for its time is ``scheduled``."""
    if task.status == "pending" and task.attempt == 1 and task.not_before_ts > now:
        return "scheduled"
    return task.status


def task_out(task: TaskView) -> TaskOut:
    return TaskOut(
        task_id=task.task_id,
        task_type=task.spec.task_type,
        status=task_status(task, time.time()),
        attempt=task.attempt,
        priority=task.spec.priority,
        agent_id=task.agent_id,
        required_capabilities=task.spec.required_capabilities,
        submitted_ts=task.submitted_ts,
        assigned_ts=task.assigned_ts,
        started_ts=task.started_ts,
        finished_ts=task.finished_ts,
        queued_reason=task.queued_reason,
        queued_detail=task.queued_detail,
        routing_strategy=task.spec.routing_strategy,
        expected_quality_threshold=task.spec.expected_quality_threshold,
        last_error=task.last_error,
        failure_type=task.failure_type,
        progress=task.progress,
        result=task.result,
        quality=task.quality,
        workflow_id=task.spec.workflow_id,
        not_before_ts=task.not_before_ts or None,
        schedule_id=task.spec.schedule_id,
        eligible_ts=task.eligible_ts if task.status == "queued" else None,
        concurrency_key=task.spec.concurrency_key,
        rate_limit_key=task.spec.rate_limit_key,
        units=task.spec.units,
        affinity_key=task.spec.affinity_key,
        affinity=task.spec.affinity,
        labels=task.spec.labels,
        label_rules=task.spec.label_rules,
        step_id=task.spec.step_id,
        name=task.spec.name,
        submitted_seq=task.submitted_seq,
        assignments=[
            AssignmentOut(
                agent_id=a.agent_id,
                attempt=a.attempt,
                seq=a.seq,
                ts=a.ts,
                strategy=a.strategy,
                score=a.score,
                breakdown=a.breakdown,
                rejected=a.rejected,
                explanation=a.explanation,
            )
            for a in task.assignments
        ],
    )
