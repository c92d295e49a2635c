"""Task submission (routing), status and cancellation."""

from __future__ import annotations

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from services.gateway.openapi import READ, WRITE, also, refusals
from services.gateway.params import AfterSeq, PathId
from services.gateway.schemas import (
    CancelRequest,
    CancelResponse,
    TaskAssignRequest,
    TaskAssignResponse,
    TaskOut,
)
from services.gateway.tasks import TaskDesk

Tasks = NamedDependency[TaskDesk]


@post(
    "/api/v1/orchestration/task/assign",
    status_code=200,
    summary="Submit a task and get the routing decision",
    description="200 with the chosen agent when routed within ASSIGN_WAIT_MS, else 202 (queued or pending).",
    responses={
        **also(202, TaskAssignResponse, "Accepted: queued (with the reason) or not yet routed"),
        **refusals(*WRITE, 409),
    },
)
async def assign_task(data: JSONBody[TaskAssignRequest], task_desk: Tasks) -> Response[TaskAssignResponse]:
    answer = await task_desk.submit(data)
    return Response(answer, status_code=200 if answer.status == "assigned" else 202)


@get(
    "/api/v1/tasks/{task_id:str}",
    summary="Task status, with each routing decision explained",
    description="With after_seq, answers once the gateway has applied the log up to that sequence "
    "(read your writes: pass the seq a previous answer returned).",
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


ROUTES = [assign_task, get_task, cancel_task]
