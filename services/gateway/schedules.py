"""The gateway's schedule desk: create a schedule, show it with its next firings, pause, resume, delete.

A schedule is checked in full before anything is stored (its expression or interval, its start,
its target's body as task/assign or workflow/execute would check it: 400 naming the field), then
stored as ``system.schedule_created`` with expected 0 on ``hive.evt.system.sched-<id>.*`` (409 for
an id that exists, also once deleted). Pause, resume and delete are commands on the schedule
(``shared.command``). The workflow service fires it; this desk only reads the projection.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.gateway.core import GatewayCore
from services.gateway.errors import ApiError
from services.gateway.schedule_schemas import (
    FiringOut,
    NextFiring,
    ScheduleChange,
    ScheduleOut,
    ScheduleRequest,
    ScheduleStatusOut,
    ScheduleSummary,
)
from services.gateway.schemas import TaskAssignRequest
from services.gateway.templates import task_template, workflow_template
from services.gateway.timestamps import epoch_of
from shared.bus import ConcurrencyConflict, EventTooLarge
from shared.command import Change, command
from shared.domain.cron import CronError, parse_cron
from shared.domain.schedules import SCHEDULES_SPEC, ScheduleView, iso_ms, ms, upcoming
from shared.events import (
    Event,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduledTask,
    ScheduledWorkflow,
    SchedulePaused,
    ScheduleResumed,
    schedule_scope,
)
from shared.ids import new_id
from shared.projection_spec import fold
from shared.recorded import Recorded

NEXT_FIRINGS = 5


def _refuse(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", f"invalid field '{field}': {message}", field)


class ScheduleDesk:
    """Stateless: everything it knows comes from the gateway's projection or the log."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    # --- create ---------------------------------------------------------------------------------

    async def create(self, data: ScheduleRequest) -> ScheduleOut:
        schedule_id = data.schedule_id or new_id()
        if (data.cron is None) == (data.interval_seconds is None):
            raise _refuse("cron", "give a cron expression or interval_seconds (exactly one)")
        if data.cron is not None:
            try:
                parse_cron(data.cron)
            except CronError as exc:
                raise _refuse("cron", str(exc)) from None
        start_ts = None
        if data.start_at is not None:
            try:
                start_ts = epoch_of(data.start_at)
            except ValueError as exc:
                raise _refuse("start_at", str(exc)) from None
        if (data.task is None) == (data.workflow is None):
            raise _refuse("task", "give the task or the workflow each slot submits (exactly one)")
        task = _task_of(data.task) if data.task is not None else None
        workflow = _workflow_of(data) if data.workflow is not None else None
        scope = schedule_scope(schedule_id)
        event = ScheduleCreated(
            scope=scope,
            name=data.name,
            description=data.description,
            cron=data.cron or "",
            interval_s=data.interval_seconds,
            start_ts=start_ts,
            catch_up=data.catch_up,
            max_catch_up=data.max_catch_up,
            misfire_grace_s=data.misfire_grace_seconds,
            target="task" if task is not None else "workflow",
            task=task,
            workflow=workflow,
            created_by="gateway",
            correlation_id=scope,
        )
        try:
            result = await self.core.bus.append(event, expected=0)
        except EventTooLarge as exc:
            raise ApiError(
                413,
                "payload_too_large",
                f"the schedule takes {exc.size} bytes as an event; the NATS server accepts {exc.limit}",
                "task" if task is not None else "workflow",
            ) from None
        except ConcurrencyConflict:
            raise ApiError(
                409,
                "conflict",
                f"schedule {schedule_id!r} already exists (an id is not reused, also once deleted)",
                "schedule_id",
            ) from None
        view = fold(SCHEDULES_SPEC, [Recorded(result.seq, event.subject, event)]).schedules[schedule_id]
        return schedule_out(view, time.time(), result.seq)

    # --- query ----------------------------------------------------------------------------------

    async def find(self, schedule_id: str) -> ScheduleView:
        """From the projection, or folded from the schedule's own events when no longer kept."""
        found = self.core.view.state.schedules.schedules.get(schedule_id)
        if found is not None:
            return found
        events, _last = await self.core.bus.read_aggregate("system", schedule_scope(schedule_id))
        folded = fold(SCHEDULES_SPEC, events).schedules.get(schedule_id)
        if folded is None:
            raise ApiError(404, "not_found", f"schedule {schedule_id!r} does not exist")
        return folded

    async def status(self, schedule_id: str, after_seq: int | None = None) -> ScheduleOut:
        if after_seq is not None:
            await self.core.wait_for_seq(after_seq)
        return schedule_out(await self.find(schedule_id), time.time(), self.core.view.seq)

    def summaries(self, status: str | None, limit: int) -> list[ScheduleSummary]:
        """Schedules kept in memory (every one but the oldest deleted), most recently created first."""
        now_ms = ms(time.time())
        found = [
            view
            for view in self.core.view.state.schedules.schedules.values()
            if status is None or status_of(view) == status
        ]
        found.sort(key=lambda view: view.created_seq, reverse=True)
        return [schedule_summary(view, now_ms) for view in found[:limit]]

    # --- changes --------------------------------------------------------------------------------

    async def _change(self, schedule_id: str, build: Callable[[ScheduleView], Event]) -> int:
        """Append what `build` makes of the schedule, against its last sequence; when another writer
        got there first (a firing), look again; 409 when it keeps changing."""

        async def decide(_version: int) -> Change:
            view = await self.find(schedule_id)
            if view.status == "deleted":
                raise ApiError(409, "conflict", f"schedule {schedule_id!r} is deleted")
            return Change(build(view))

        done = await command(self.core.bus, self.core.view, "system", schedule_scope(schedule_id), decide)
        assert done is not None  # build always makes an event or refuses
        return done[1].seq

    async def pause(self, schedule_id: str, reason: str) -> ScheduleChange:
        def paused(view: ScheduleView) -> Event:
            if view.status == "paused":
                raise ApiError(409, "conflict", f"schedule {schedule_id!r} is already paused")
            return SchedulePaused(
                scope=schedule_scope(schedule_id), reason=reason, correlation_id=view.spec.scope
            )

        seq = await self._change(schedule_id, paused)
        return ScheduleChange(schedule_id=schedule_id, status="paused", seq=seq)

    async def resume(self, schedule_id: str, reason: str) -> ScheduleChange:
        def resumed(view: ScheduleView) -> Event:
            if view.status != "paused":
                raise ApiError(409, "conflict", f"schedule {schedule_id!r} is not paused")
            return ScheduleResumed(
                scope=schedule_scope(schedule_id), reason=reason, correlation_id=view.spec.scope
            )

        seq = await self._change(schedule_id, resumed)
        return ScheduleChange(schedule_id=schedule_id, status="active", seq=seq)

    async def delete(self, schedule_id: str, reason: str) -> ScheduleChange:
        def deleted(view: ScheduleView) -> Event:
            return ScheduleDeleted(
                scope=schedule_scope(schedule_id), reason=reason, correlation_id=view.spec.scope
            )

        seq = await self._change(schedule_id, deleted)
        return ScheduleChange(schedule_id=schedule_id, status="deleted", seq=seq)


def _task_of(body: TaskAssignRequest) -> ScheduledTask:
    """The task each slot submits: a task/assign body without its id or a start of its own."""
    for name, value in (
        ("task_id", body.task_id),
        ("not_before", body.not_before),
        ("delay_seconds", body.delay_seconds),
    ):
        if value is not None:
            raise _refuse(
                f"task.{name}",
                "a scheduled task gets its id from the schedule and the slot, and starts at its slot: "
                f"leave {name} out",
            )
    if body.correlation_id:
        raise _refuse("task.correlation_id", "each scheduled task is correlated by its own id: leave it out")
    return task_template(body, "task.")


def _workflow_of(data: ScheduleRequest) -> ScheduledWorkflow:
    body = data.workflow
    assert body is not None
    if body.workflow_id is not None:
        raise _refuse(
            "workflow.workflow_id",
            "a scheduled workflow gets its id from the schedule and the slot: leave workflow_id out",
        )
    if body.correlation_id:
        raise _refuse("workflow.correlation_id", "each scheduled workflow is correlated by its own id")
    return workflow_template(body, prefix="workflow.")


def status_of(view: ScheduleView) -> ScheduleStatusOut:
    return "invalid" if view.problem and view.status != "deleted" else view.status


def _next_firings(view: ScheduleView, now_ms: int, count: int) -> list[NextFiring]:
    return [NextFiring(ts=slot / 1000, at=iso_ms(slot)) for slot in upcoming(view, now_ms, count)]


def schedule_out(view: ScheduleView, now: float, seq: int) -> ScheduleOut:
    spec = view.spec
    now_ms = ms(now)
    due = view.next_ms if view.active and view.next_ms is not None and view.next_ms <= now_ms else None
    return ScheduleOut(
        schedule_id=view.schedule_id,
        name=spec.name,
        description=spec.description,
        status=status_of(view),
        reason=view.reason,
        problem=view.problem,
        cron=spec.cron or None,
        interval_seconds=spec.interval_s,
        start_ts=spec.start_ts,
        catch_up=spec.catch_up,
        max_catch_up=spec.max_catch_up,
        misfire_grace_seconds=spec.misfire_grace_s,
        target=spec.target,
        task=spec.task,
        workflow=spec.workflow,
        created_ts=spec.ts,
        next_firings=_next_firings(view, now_ms, NEXT_FIRINGS),
        due_since_ts=due / 1000 if due is not None else None,
        fired_total=view.fired_total,
        skipped_total=view.skipped_total,
        last_fired_slot_ts=view.last_fired_ms / 1000 if view.last_fired_ms is not None else None,
        recent_firings=[
            FiringOut(
                slot_ts=firing.slot_ms / 1000,
                slot=iso_ms(firing.slot_ms),
                target_id=firing.target_id,
                fired_ts=firing.fired_ts,
                late_s=firing.late_s,
            )
            for firing in view.recent
        ],
        seq=seq,
    )


def schedule_summary(view: ScheduleView, now_ms: int) -> ScheduleSummary:
    spec = view.spec
    following = _next_firings(view, now_ms, 1)
    return ScheduleSummary(
        schedule_id=view.schedule_id,
        name=spec.name,
        status=status_of(view),
        cron=spec.cron or None,
        interval_seconds=spec.interval_s,
        target=spec.target,
        next_firing=following[0] if following else None,
        fired_total=view.fired_total,
        last_fired_slot_ts=view.last_fired_ms / 1000 if view.last_fired_ms is not None else None,
        created_ts=spec.ts,
    )
