"""End to end, as `hive up` runs it: nats-server and every service as separate processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.cli.stack import Stack, local_stack
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus
from shared.events import TaskAssigned, TaskCompleted
from tests.conftest import EventLog
from tests.integration.test_router import max_in_flight_per_agent


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    hive = local_stack(tmp_path / "hive")
    hive.start()
    yield hive
    hive.stop()


async def test_fifty_tasks_over_http_all_complete_and_no_agent_exceeds_its_capacity(stack: Stack) -> None:
    bus = await EventBus.connect(stack.nats_url, "e2e")
    log = await EventLog(bus).start()
    agents = make_simulated_agents(
        3, capabilities=["code_review"], capacity=2, profile=SimulationProfile(work_s=0.02)
    )
    try:
        for agent in agents:
            await agent.start(bus)
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as http:
            replies = await asyncio.gather(
                *(
                    http.post(
                        "/api/v1/orchestration/task/assign",
                        json={"task_id": f"e2e-{i}", "task_type": "code_review"},
                    )
                    for i in range(50)
                )
            )
            assert {r.status_code for r in replies} <= {200, 202}
            await log.wait_for(
                lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) == 50, timeout=60
            )
            last = max(log.seqs)
            statuses = [
                (await http.get(f"/api/v1/tasks/e2e-{i}", params={"after_seq": last})).json()["status"]
                for i in range(50)
            ]
        assert statuses == ["completed"] * 50
        peaks = max_in_flight_per_agent(log.events)
        assert peaks and all(peak <= 2 for peak in peaks.values())
        assert len(log.of_type(TaskAssigned)) == 50
        assert all(agent.stats.max_concurrent <= 2 for agent in agents)
    finally:
        for agent in agents:
            await agent.stop()
        await log.stop()
        await bus.close()
