"""Affinity keys and labels on real services: agents register labels, a task goes only to an agent
with its required labels and says so, tasks of a key stay with its agent, and a hard key waits
while its agent is busy and moves when the agent leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from services.gateway.service import GatewayService
from services.router.service import RouterService
from services.workflow.service import WorkflowService
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.events import TaskAssigned, TaskSubmitted
from shared.settings import Settings
from tests.conftest import EventLog, running

ASSIGN = "/api/v1/orchestration/task/assign"


def slow(seconds: float):  # type: ignore[no-untyped-def]
    async def handle(context: TaskContext) -> str:
        await asyncio.sleep(seconds)
        return "done"

    return handle


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running(GatewayService, settings) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=10) as http,
    ):
        yield http


async def test_labels_are_registered_required_and_preferred_and_the_choice_says_so(
    settings: Settings, bus: EventBus, gateway: httpx.AsyncClient
) -> None:
    agents = [
        Agent("us-a10", slow(0.01), capabilities=["x"], capacity=4, labels={"region": "us", "gpu": "a10"}),
        Agent("eu-a10", slow(0.01), capabilities=["x"], capacity=4, labels={"region": "eu", "gpu": "a10"}),
        Agent(
            "eu-h100",
            slow(0.01),
            capabilities=["x"],
            capacity=4,
            labels={"region": "eu", "gpu": "h100", "vram": "80"},
        ),
    ]
    async with running(RouterService, settings):
        for agent in agents:
            await agent.start(bus)
        try:
            # Registered over NATS, not through the gateway: listed as of what the log holds now.
            stored = await bus.last_sequence()
            listed = (await gateway.get("/api/v1/agents", params={"after_seq": stored})).json()
            assert {a["agent_id"]: a["labels"]["region"] for a in listed} == {
                "us-a10": "us",
                "eu-a10": "eu",
                "eu-h100": "eu",
            }
            required = await gateway.post(ASSIGN, json={"task_type": "x", "labels": {"region": "eu"}})
            assert required.json()["agent_id"] in {"eu-a10", "eu-h100"}
            assert any(
                r["agent_id"] == "us-a10" and r["reason"] == "labels not met: region=eu"
                for r in required.json()["rejected"]
            )
            preferred = await gateway.post(
                ASSIGN,
                json={
                    "task_type": "x",
                    "label_rules": [
                        {"label": "vram", "op": "gte", "value": 40, "mode": "prefer", "weight": 3},
                        {"label": "region", "op": "ne", "value": "us"},
                    ],
                },
            )
            body = preferred.json()
            assert body["agent_id"] == "eu-h100", body
            assert "preferred labels met: vram>=40 (+3)" in body["explanation"]
            missing = await gateway.post(ASSIGN, json={"task_type": "x", "labels": {"gpu": "tpu"}})
            assert missing.status_code == 202 and missing.json()["reason"] == "no_capable_agent"
        finally:
            for agent in agents:
                await agent.stop()


async def test_a_hard_affinity_key_waits_for_its_busy_agent_and_moves_when_it_leaves(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: httpx.AsyncClient
) -> None:
    home = Agent("home", slow(1.0), capabilities=["x"], capacity=1)
    other = Agent("other", slow(0.01), capabilities=["x"], capacity=1)
    async with running(RouterService, settings):
        await home.start(bus)
        try:
            first = await gateway.post(
                ASSIGN,
                json={"task_id": "first", "task_type": "x", "affinity_key": "repo", "affinity": "hard"},
            )
            assert first.json()["agent_id"] == "home"
            await other.start(bus)
            second = await gateway.post(
                ASSIGN,
                json={"task_id": "second", "task_type": "x", "affinity_key": "repo", "affinity": "hard"},
            )
            assert second.status_code == 202 and second.json()["reason"] == "affinity_agent_busy", second.text
            assert (await gateway.get("/api/v1/keys/repo")).json()["affinity_agent"] == "home"
            await home.drain()  # finishes "first", then leaves: the key fails over
            await event_log.wait_for(
                lambda evs: any(isinstance(e, TaskAssigned) and e.task_id == "second" for e in evs),
                timeout=10,
            )
            moved = next(e for e in event_log.of_type(TaskAssigned) if e.task_id == "second")
            assert moved.agent_id == "other" and "moves to other" in moved.explanation
        finally:
            await home.stop()
            await other.stop()


async def test_a_soft_affinity_key_stays_with_its_agent(
    settings: Settings, bus: EventBus, gateway: httpx.AsyncClient
) -> None:
    agents = [Agent(f"w{i}", slow(0.01), capabilities=["x"], capacity=8) for i in range(3)]
    async with running(RouterService, settings):
        for agent in agents:
            await agent.start(bus)
        try:
            chosen = set()
            for index in range(6):
                answer = await gateway.post(
                    ASSIGN, json={"task_id": f"s{index}", "task_type": "x", "affinity_key": "cache"}
                )
                chosen.add(answer.json()["agent_id"])
            assert len(chosen) == 1
        finally:
            for agent in agents:
                await agent.stop()


async def test_workflow_steps_carry_labels_and_keys_to_their_tasks(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: httpx.AsyncClient
) -> None:
    gpu = Agent("gpu", slow(0.01), capabilities=["x"], capacity=4, labels={"gpu": "h100"})
    cpu = Agent("cpu", slow(0.01), capabilities=["x"], capacity=4)
    steps = [
        {"task_id": "a", "task_type": "x", "labels": {"gpu": "h100"}, "concurrency_key": "repo-1"},
        {
            "task_id": "b",
            "task_type": "x",
            "dependencies": ["a"],
            "affinity_key": "repo-1",
            "affinity": "hard",
            "label_rules": [{"label": "gpu", "op": "exists"}],
        },
    ]
    bad = {"task_id": "c", "task_type": "x", "label_rules": [{"label": "gpu", "op": "gt", "value": "big"}]}
    refused = await gateway.post(
        "/api/v1/orchestration/workflow/execute", json={"workflow_id": "bad", "tasks": [bad]}
    )
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "tasks[0].label_rules[0]"
    async with running(RouterService, settings), running(WorkflowService, settings):
        for agent in (cpu, gpu):
            await agent.start(bus)
        try:
            started = await gateway.post(
                "/api/v1/orchestration/workflow/execute", json={"workflow_id": "labelled", "tasks": steps}
            )
            assert started.status_code in (200, 202), started.text
            await event_log.wait_for(
                lambda evs: (
                    sum(isinstance(e, TaskAssigned) and e.task_id.startswith("labelled-") for e in evs) >= 2
                ),
                timeout=20,
            )
        finally:
            await cpu.stop()
            await gpu.stop()
    submitted = {e.step_id: e for e in event_log.of_type(TaskSubmitted) if e.workflow_id == "labelled"}
    assert submitted["a"].labels == {"gpu": "h100"} and submitted["a"].concurrency_key == "repo-1"
    assert submitted["b"].affinity_key == "repo-1" and submitted["b"].affinity == "hard"
    assert [rule.op for rule in submitted["b"].label_rules] == ["exists"]
    assigned = [e.agent_id for e in event_log.of_type(TaskAssigned) if e.task_id.startswith("labelled-")]
    assert assigned == ["gpu", "gpu"]
