"""kill -9 a router instance in the middle of the load: nothing lost, nothing assigned twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from services.cli.stack import local_stack
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus
from shared.events import TaskAssigned, TaskCompleted, TaskSubmitted
from tests.conftest import EventLog
from tests.integration.test_router import max_in_flight_per_agent

pytestmark = pytest.mark.chaos


async def test_killing_a_router_mid_load_loses_nothing_and_assigns_nothing_twice(tmp_path: Path) -> None:
    stack = local_stack(tmp_path / "hive", services=("router", "recovery"), scale={"router": 2})
    stack.start()
    bus = await EventBus.connect(stack.nats_url, "chaos")
    await bus.ensure_streams()
    log = await EventLog(bus).start()
    agents = make_simulated_agents(4, capabilities=["x"], capacity=2, profile=SimulationProfile(work_s=0.01))
    total = 300
    try:
        for agent in agents:
            await agent.start(bus)
        for index in range(total):
            await bus.append(TaskSubmitted(task_id=f"c{index}", task_type="x"), expected=0)
            if index == total // 3:
                await log.wait_for(lambda evs: sum(isinstance(e, TaskAssigned) for e in evs) >= 20)
                stack.kill("router-0")
            if index == 2 * total // 3:
                stack.restart("router-0")
        await log.wait_for(
            lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) == total, timeout=90
        )
        assignments = Counter((e.task_id, e.attempt) for e in log.of_type(TaskAssigned))
        twice = [key for key, count in assignments.items() if count > 1]
        completed = Counter(e.task_id for e in log.of_type(TaskCompleted))
        print(
            f"\nsubmitted={total} completed={len(completed)} lost={total - len(completed)} "
            f"assigned_twice={len(twice)}"
        )
        assert twice == []
        assert all(count == 1 for count in completed.values())
        assert all(peak <= 2 for peak in max_in_flight_per_agent(log.events).values())
    finally:
        for agent in agents:
            await agent.stop()
        await log.stop()
        await bus.close()
        stack.stop()
