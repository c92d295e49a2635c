"""Task submission (routing), status and cancellation."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from services.gateway.openapi import READ, WRITE, also, refusals
from services.gateway.params import AfterSeq, IdFilter, Limit, PathId, only_known, page_of
from services.gateway.query.filters import DEFAULT_LIMIT, MAX_LIMIT, TaskFilter
from services.gateway.schemas import (
    CancelRequest,
    CancelResponse,
    TaskAssignRequest,
    TaskAssignResponse,
    TaskOut,
    TaskPage,
)
from services.gateway.tasks import TASKS, TaskDesk
from shared.domain.fleet import TaskStatus
from shared.events import Capability, Priority

Tasks = NamedDependency[TaskDesk]
LIST_TASKS_PARAMS = frozenset(
    {
        "status",
        "task_type",
        "agent_id",
        "workflow_id",
        "priority",
        "submitted_after",
        "submitted_before",
        "limit",
        "cursor",
        "after_seq",
    }
)


@post(
    "/api/v1/orchestration/task/assign",
    status_code=200,
    summary="Submit a task and get the routing decision",
    description="200 with the chosen agent when routed within ASSIGN_WAIT_MS, else 202 (queued or pending). "
    "Retrying is safe: the same request again with the same task_id is answered as the original.",
    responses={
        **also(202, TaskAssignResponse, "Accepted: queued (with the reason) or not yet routed"),
        **refusals(
            *WRITE,
            409,
            meaning={
                409: "Conflict: the task_id exists with other content (the same request again is "
                "answered as the original, not refused)",
                503: "The event log is unavailable: error.message says whether the task may have been "
                "stored (retry with the same task_id) or was not; retry after the Retry-After header's "
                "seconds",
            },
        ),
    },
)
async def assign_task(data: JSONBody[TaskAssignRequest], task_desk: Tasks) -> Response[TaskAssignResponse]:
    answer = await task_desk.submit(data)
    return Response(answer, status_code=200 if answer.status == "assigned" else 202)


@get(
    "/api/v1/tasks",
    summary="Tasks of any age, newest submission first, filtered and paged",
    description="Each filter matches the field of the same name (agent_id: the agent holding the task, "
    "or that last held it); submitted_after/submitted_before are Unix seconds (after: at or after). "
    f"limit defaults to {DEFAULT_LIMIT}, at most {MAX_LIMIT}. Pass next_cursor back as cursor for the "
    "next page: pages are cut by submission sequence, so tasks submitted meanwhile never shift them. "
    "An unknown query parameter is refused with 400. Tasks that ended longer than QUERY_RETENTION_S "
    "ago are no longer listed.",
    responses=refusals(*READ, 503),
)
async def list_tasks(
    request: Request[Any, Any, Any],
    task_desk: Tasks,
    status: FromQuery[TaskStatus | None] = None,
    task_type: FromQuery[Capability | None] = None,
    agent_id: IdFilter = None,
    workflow_id: IdFilter = None,
    priority: FromQuery[Priority | None] = None,
    submitted_after: FromQuery[float | None] = None,
    submitted_before: FromQuery[float | None] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
    after_seq: AfterSeq = None,
) -> TaskPage:
    only_known(request, LIST_TASKS_PARAMS)
    where = TaskFilter(
        status=status,
        task_type=task_type,
        agent_id=agent_id,
        workflow_id=workflow_id,
        priority=priority,
        submitted_after=submitted_after,
        submitted_before=submitted_before,
    )
    return await task_desk.listed(where, page_of(TASKS, limit, cursor), after_seq)


@get(
    "/api/v1/tasks/{task_id:str}",
    summary="Task status, with each routing decision explained",
    description="Answered for a task of any age from the gateway's query model. With after_seq, answers "
    "once the gateway has applied the log up to that sequence (read your writes: pass the seq a "
    "previous answer returned). A 404 says why a task is not there: unknown, or ended longer than "
    "QUERY_RETENTION_S ago (and whether its events are still in the log).",
    responses=refusals(*READ, 404, 503),
)
async def get_task(task_id: PathId, task_desk: Tasks, after_seq: AfterSeq = None) -> TaskOut:
    return await task_desk.task(task_id, after_seq)


@post(
    "/api/v1/tasks/{task_id:str}/cancel",
    status_code=200,
    summary="Cancel a task",
    responses=refusals(*WRITE, 404, 409),
)
async def cancel_task(
    task_id: PathId, task_desk: Tasks, data: JSONBody[CancelRequest | None] = None
) -> CancelResponse:
    return await task_desk.cancel(task_id, (data or CancelRequest()).reason)


ROUTES = [assign_task, list_tasks, get_task, cancel_task]
