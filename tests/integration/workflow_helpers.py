"""What the workflow tests share: a Hive in this event loop, DAG builders, checks on the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from services.gateway.service import GatewayService
from services.recovery.service import RecoveryService
from services.router.service import RouterService
from services.workflow.service import WorkflowService
from shared.agent.sdk import TaskContext
from shared.events import (
    AnyEvent,
    TaskCompleted,
    TaskStarted,
    TaskSubmitted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
)
from shared.settings import Settings
from tests.conftest import EventLog, running

EXECUTE = "/api/v1/orchestration/workflow/execute"


def workflow_url(workflow_id: str, *rest: str) -> str:
    return "/".join(["/api/v1/orchestration/workflow", workflow_id, *rest])


@dataclass
class Hive:
    http: httpx.AsyncClient
    gateway: GatewayService
    workflow: WorkflowService


@asynccontextmanager
async def hive(settings: Settings, *, workflow_instances: int = 1, **overrides: Any) -> AsyncIterator[Hive]:
    """Router, recovery, workflow (N instances) and gateway in this loop, with an HTTP client."""
    async with (
        running(RouterService, settings),
        running(RecoveryService, settings),
        running(WorkflowService, settings, instance="workflow-1", **overrides) as workflow,
        running(GatewayService, settings, **overrides) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http,
    ):
        if workflow_instances == 1:
            yield Hive(http, gateway, workflow)
            return
        async with running(WorkflowService, settings, instance="workflow-2", **overrides):
            yield Hive(http, gateway, workflow)


def task(task_id: str, *deps: str, task_type: str = "x", **fields: Any) -> dict[str, Any]:
    return {"task_id": task_id, "task_type": task_type, "dependencies": list(deps), **fields}


def fan_out_fan_in_50() -> list[dict[str, Any]]:
    """50 tasks: a root fans out to 20 chains of two, joined by 4 merges, 4 checks and a report."""
    tasks = [task("root")]
    tasks += [task(f"map-{i}", "root") for i in range(20)]
    tasks += [task(f"check-{i}", f"map-{i}") for i in range(20)]
    tasks += [task(f"merge-{j}", *(f"check-{i}" for i in range(5 * j, 5 * j + 5))) for j in range(4)]
    tasks += [task(f"verify-{j}", f"merge-{j}", f"map-{j}") for j in range(4)]
    tasks += [task("report", *(f"verify-{j}" for j in range(4)))]
    assert len(tasks) == 50
    return tasks


def finished(*workflow_ids: str) -> Any:
    """A predicate for EventLog.wait_for: every workflow named has ended."""
    wanted = set(workflow_ids)

    def check(events: list[AnyEvent]) -> bool:
        ended = {
            e.workflow_id
            for e in events
            if isinstance(e, WorkflowCompleted | WorkflowFailed | WorkflowCancelled)
        }
        return wanted <= ended

    return check


def outcome(log: EventLog, workflow_id: str) -> AnyEvent:
    return next(
        e
        for e in log.events
        if isinstance(e, WorkflowCompleted | WorkflowFailed | WorkflowCancelled)
        and e.workflow_id == workflow_id
    )


def started_before_dependencies_completed(log: EventLog, graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """Steps whose task started (any attempt) before every dependency's task had completed.

    `graph`: workflow id -> step id -> dependencies. Read in stream order from the log.
    """
    step_of: dict[str, tuple[str, str]] = {}
    completed: set[tuple[str, str]] = set()
    early = []
    for event in log.events:
        if isinstance(event, TaskSubmitted) and event.workflow_id in graph and event.step_id:
            step_of[event.task_id] = (event.workflow_id, event.step_id)
        elif isinstance(event, TaskCompleted) and event.task_id in step_of:
            completed.add(step_of[event.task_id])
        elif isinstance(event, TaskStarted) and event.task_id in step_of:
            workflow_id, step_id = step_of[event.task_id]
            if any((workflow_id, d) not in completed for d in graph[workflow_id][step_id]):
                early.append(f"{workflow_id}/{step_id}")
    return early


class Gate:
    """A handler that holds its tasks until opened; counts who is waiting."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered: list[str] = []

    async def __call__(self, context: TaskContext) -> str:
        self.entered.append(context.task_id)
        await self.open.wait()
        return "done"


async def quick(context: TaskContext) -> dict[str, Any]:
    await asyncio.sleep(0.005)
    return {"step": context.task_id, "upstream": sorted(context.payload.get("upstream", {}))}
