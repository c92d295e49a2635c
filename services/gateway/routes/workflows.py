"""Workflows: submit a DAG, follow it, change it while it runs."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from services.gateway.openapi import READ, WRITE, refusals
from services.gateway.params import AfterSeq, Limit, PathId, only_known, page_of
from services.gateway.query.filters import DEFAULT_LIMIT, MAX_LIMIT, WorkflowFilter
from services.gateway.workflow_schemas import (
    WorkflowAccepted,
    WorkflowCancelRequest,
    WorkflowChange,
    WorkflowExecuteRequest,
    WorkflowOut,
    WorkflowPage,
    WorkflowTaskIn,
)
from services.gateway.workflows import WORKFLOWS, WorkflowDesk
from shared.domain.workflows import WorkflowStatus

Workflows = NamedDependency[WorkflowDesk]
BASE = "/api/v1/orchestration/workflow"
LIST_WORKFLOWS_PARAMS = frozenset(
    {"status", "name", "submitted_after", "submitted_before", "limit", "cursor", "after_seq"}
)


@post(
    f"{BASE}/execute",
    status_code=202,
    summary="Submit a workflow (a DAG of tasks)",
    description="Checked in full before anything is stored: duplicate task ids, unknown dependencies and "
    "cycles (named with their path) are refused with 400. A template fills in dependencies by position.",
    responses=refusals(*WRITE, 409),
)
async def execute_workflow(
    data: JSONBody[WorkflowExecuteRequest], workflow_desk: Workflows
) -> WorkflowAccepted:
    return await workflow_desk.execute(data)


@get(
    f"{BASE}/{{workflow_id:str}}",
    summary="Workflow status: per-task state, progress, critical path, estimated finish",
    description="With after_seq, answers once the gateway has applied the log up to that sequence.",
    responses=refusals(*READ, 404, 503),
)
async def get_workflow(
    workflow_id: PathId,
    workflow_desk: Workflows,
    after_seq: AfterSeq = None,
) -> WorkflowOut:
    return await workflow_desk.status(workflow_id, after_seq)


@get(
    "/api/v1/orchestration/workflows",
    summary="Workflows of any age, most recently submitted first, filtered and paged",
    description="Filters match the fields of the same name; submitted_after/submitted_before are Unix "
    f"seconds. limit defaults to {DEFAULT_LIMIT}, at most {MAX_LIMIT}; pass next_cursor back as cursor "
    "for the next page. An unknown query parameter is refused with 400.",
    responses=refusals(*READ, 503),
)
async def list_workflows(
    request: Request[Any, Any, Any],
    workflow_desk: Workflows,
    status: FromQuery[WorkflowStatus | None] = None,
    name: FromQuery[str | None] = None,
    submitted_after: FromQuery[float | None] = None,
    submitted_before: FromQuery[float | None] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
    after_seq: AfterSeq = None,
) -> WorkflowPage:
    only_known(request, LIST_WORKFLOWS_PARAMS)
    where = WorkflowFilter(
        status=status, name=name, submitted_after=submitted_after, submitted_before=submitted_before
    )
    return await workflow_desk.summaries(where, page_of(WORKFLOWS, limit, cursor), after_seq)


@post(
    f"{BASE}/{{workflow_id:str}}/tasks",
    status_code=202,
    summary="Add a task to a workflow that is not finished",
    responses=refusals(*WRITE, 404, 409),
)
async def add_workflow_task(
    workflow_id: PathId, data: JSONBody[WorkflowTaskIn], workflow_desk: Workflows
) -> WorkflowChange:
    return await workflow_desk.add_task(workflow_id, data)


@post(
    f"{BASE}/{{workflow_id:str}}/tasks/{{task_id:str}}/cancel",
    status_code=202,
    summary="Cancel one task of a workflow (its agent is told; dependents follow their condition)",
    responses=refusals(*WRITE, 404, 409),
)
async def cancel_workflow_task(
    workflow_id: PathId,
    task_id: PathId,
    workflow_desk: Workflows,
    data: JSONBody[WorkflowCancelRequest | None] = None,
) -> WorkflowChange:
    return await workflow_desk.cancel_task(workflow_id, task_id, (data or WorkflowCancelRequest()).reason)


@post(
    f"{BASE}/{{workflow_id:str}}/cancel",
    status_code=202,
    summary="Cancel a workflow: nothing new starts, in-flight tasks are cancelled and their agents told",
    responses=refusals(*WRITE, 404, 409),
)
async def cancel_workflow(
    workflow_id: PathId, workflow_desk: Workflows, data: JSONBody[WorkflowCancelRequest | None] = None
) -> WorkflowChange:
    return await workflow_desk.cancel(workflow_id, (data or WorkflowCancelRequest()).reason)


ROUTES = [
    execute_workflow,
    get_workflow,
    list_workflows,
    add_workflow_task,
    cancel_workflow_task,
    cancel_workflow,
]
