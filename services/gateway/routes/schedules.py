"""Schedules: cron or interval, firing a task or a workflow; create, show, pause, resume, delete."""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, Parameter, PathParameter

from services.gateway.openapi import READ, WRITE, refusals
from services.gateway.params import AfterSeq
from services.gateway.schedule_schemas import (
    ScheduleChange,
    ScheduleChangeRequest,
    ScheduleOut,
    ScheduleRequest,
    ScheduleStatusOut,
    ScheduleSummary,
)
from services.gateway.schedules import ScheduleDesk
from shared.domain.schedules import MAX_SCHEDULE_ID_CHARS
from shared.ids import ID_PATTERN

Schedules = NamedDependency[ScheduleDesk]
BASE = "/api/v1/schedules"
ScheduleIdPath = Annotated[
    str,
    PathParameter(
        pattern=ID_PATTERN,
        min_length=1,
        max_length=MAX_SCHEDULE_ID_CHARS,
        description=f"a schedule id: 1-{MAX_SCHEDULE_ID_CHARS} letters, digits, '_' or '-'",
    ),
]
Reason = Annotated[str, Parameter(max_length=2000, description="why (kept on the event)")]


@post(
    BASE,
    status_code=201,
    summary="Create a schedule: a cron expression or an interval, firing a task or a workflow",
    description="Exactly one of cron and interval_seconds, exactly one of task (a task/assign body) and "
    "workflow (a workflow/execute body), without their ids: each slot's task or workflow gets an id "
    "derived from the schedule and the slot. Checked in full before anything is stored (400 naming the "
    "field, e.g. cron or task.priority); 409 for an id that exists, also once deleted.",
    responses=refusals(*WRITE, 409),
)
async def create_schedule(data: JSONBody[ScheduleRequest], schedule_desk: Schedules) -> ScheduleOut:
    return await schedule_desk.create(data)


@get(
    BASE,
    summary="Schedules, most recently created first, with each one's next firing",
    responses=refusals(*READ),
)
async def list_schedules(
    schedule_desk: Schedules,
    status: FromQuery[ScheduleStatusOut | None] = None,
    limit: Annotated[int, Parameter(ge=1, le=10_000)] = 100,
) -> list[ScheduleSummary]:
    return schedule_desk.summaries(status, limit)


@get(
    f"{BASE}/{{schedule_id:str}}",
    summary="A schedule: its next firings, its recent firings and what each slot submits",
    description="With after_seq, answers once the gateway has applied the log up to that sequence.",
    responses=refusals(*READ, 404, 503),
)
async def get_schedule(
    schedule_id: ScheduleIdPath, schedule_desk: Schedules, after_seq: AfterSeq = None
) -> ScheduleOut:
    return await schedule_desk.status(schedule_id, after_seq)


@post(
    f"{BASE}/{{schedule_id:str}}/pause",
    status_code=200,
    summary="Pause a schedule: no slot fires until resumed, and the slots of the pause never fire",
    responses=refusals(*WRITE, 404, 409),
)
async def pause_schedule(
    schedule_id: ScheduleIdPath,
    schedule_desk: Schedules,
    data: JSONBody[ScheduleChangeRequest | None] = None,
) -> ScheduleChange:
    return await schedule_desk.pause(schedule_id, (data or ScheduleChangeRequest()).reason)


@post(
    f"{BASE}/{{schedule_id:str}}/resume",
    status_code=200,
    summary="Resume a paused schedule: the slots after now fire",
    responses=refusals(*WRITE, 404, 409),
)
async def resume_schedule(
    schedule_id: ScheduleIdPath,
    schedule_desk: Schedules,
    data: JSONBody[ScheduleChangeRequest | None] = None,
) -> ScheduleChange:
    return await schedule_desk.resume(schedule_id, (data or ScheduleChangeRequest()).reason)


@delete(
    f"{BASE}/{{schedule_id:str}}",
    status_code=200,
    summary="Delete a schedule: no slot fires again (a target already fired is still submitted)",
    responses=refusals(*READ, 404, 409, 503),
)
async def delete_schedule(
    schedule_id: ScheduleIdPath, schedule_desk: Schedules, reason: Reason = "deleted by request"
) -> ScheduleChange:
    return await schedule_desk.delete(schedule_id, reason)


ROUTES = [create_schedule, list_schedules, get_schedule, pause_schedule, resume_schedule, delete_schedule]
