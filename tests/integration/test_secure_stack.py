"""A whole Hive as `hive up` runs it, credentials required: every role does its job as itself.

Each service process connects as its own user, each agent as ``agent-<id>``; a full flow (tasks
over HTTP, an agent dying with work in hand, a workflow, health) must pass without one permission
refused anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.cli.stack import SERVICE_NAMES, Stack, local_stack
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus, NatsAuthError
from shared.events import AnyEvent, TaskCompleted, TaskRequeued, TaskStarted, WorkflowCompleted
from shared.permissions import agent_user
from tests.conftest import EventLog

EXECUTE = "/api/v1/orchestration/workflow/execute"
ASSIGN = "/api/v1/orchestration/task/assign"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    hive = local_stack(tmp_path / "hive", auth=True, agent_ids=("steady", "doomed"))
    hive.start()
    yield hive
    hive.stop()


async def start_as_itself(agent: Agent, stack: Stack) -> None:
    credentials = stack.credentials_of(agent_user(agent.agent_id))
    await agent.start(nats_url=stack.nats_url, user=credentials.user, password=credentials.password)


def completed(task_ids: set[str]) -> Callable[[list[AnyEvent]], bool]:
    def check(events: list[AnyEvent]) -> bool:
        return task_ids <= {e.task_id for e in events if isinstance(e, TaskCompleted)}

    return check


async def test_every_service_and_agent_does_its_job_under_its_own_user(stack: Stack) -> None:
    with pytest.raises(NatsAuthError):
        await EventBus.connect(stack.nats_url, "anonymous")
    bus = await EventBus.connect(stack.nats_url, "e2e", user=stack.admin.user, password=stack.admin.password)
    log = await EventLog(bus).start()

    async def hang(context: TaskContext) -> None:
        await asyncio.Event().wait()

    async def quick(context: TaskContext) -> str:
        return "done"

    doomed = Agent("doomed", hang, capabilities=["x"], capacity=2)
    steady = Agent("steady", quick, capabilities=["x"], capacity=2)
    try:
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as http:
            await start_as_itself(doomed, stack)
            for index in range(2):
                reply = await http.post(ASSIGN, json={"task_id": f"held-{index}", "task_type": "x"})
                assert reply.status_code in (200, 202), reply.text
            await log.wait_for(
                lambda evs: sum(isinstance(e, TaskStarted) and e.agent_id == "doomed" for e in evs) == 2,
                timeout=30,
            )
            await start_as_itself(steady, stack)
            await doomed.stop()  # gone with its work in hand: recovery hands it to steady
            for index in range(3):
                await http.post(ASSIGN, json={"task_id": f"more-{index}", "task_type": "x"})
            flow = {
                "workflow_id": "flow",
                "tasks": [
                    {"task_id": "first", "task_type": "x"},
                    {"task_id": "second", "task_type": "x", "dependencies": ["first"]},
                ],
            }
            reply = await http.post(EXECUTE, json=flow)
            assert reply.status_code in (200, 202), reply.text
            await log.wait_for(completed({"held-0", "held-1", "more-0", "more-1", "more-2"}), timeout=60)
            await log.wait_for(lambda evs: any(isinstance(e, WorkflowCompleted) for e in evs), timeout=60)
            health = (await http.get("/api/v1/orchestration/health")).json()
        assert health["status"] == "ok"
        assert all(health["services"][name] for name in SERVICE_NAMES), health["services"]
    finally:
        await steady.stop()
        await doomed.stop()
        await log.stop()
        await bus.close()
    moved = {e.task_id for e in log.of_type(TaskRequeued) if e.task_id.startswith("held-")}
    assert moved == {"held-0", "held-1"}
    finishers = {e.task_id: e.agent_id for e in log.of_type(TaskCompleted)}
    assert finishers["held-0"] == finishers["held-1"] == "steady"
    assert stack.nats is not None
    assert "Violation" not in stack.nats.log_path.read_text(), "a role was refused something"
    for log_file in (stack.home / "logs").glob("*.log"):
        assert "nats_permission_denied" not in log_file.read_text(), log_file
