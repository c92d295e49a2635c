"""kill -9 every service, and nats-server itself, while tasks flow: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from services.cli.stack import SERVICE_NAMES, Stack, local_stack
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import ConcurrencyConflict, EventBus
from shared.events import TaskAssigned, TaskCompleted, TaskSubmitted
from tests.conftest import EventLog
from tests.integration.test_router import max_in_flight_per_agent

pytestmark = pytest.mark.chaos


async def submit(bus: EventBus, task_id: str) -> None:
    """Submit like a careful client: retry through outages; the same event id never lands twice."""
    event = TaskSubmitted(task_id=task_id, task_type="x")
    while True:
        try:
            await bus.append(event, expected=0)
            return
        except ConcurrencyConflict:
            return  # an earlier try landed and only its answer was lost
        except Exception:  # NATS down: wait and retry
            await asyncio.sleep(0.2)


def report(label: str, total: int, log: EventLog) -> tuple[list[tuple[str, int]], Counter[str]]:
    assignments = Counter((e.task_id, e.attempt) for e in log.of_type(TaskAssigned))
    twice = [key for key, count in assignments.items() if count > 1]
    completed = Counter(e.task_id for e in log.of_type(TaskCompleted))
    print(
        f"\n{label}: submitted={total} completed={len(completed)} lost={total - len(completed)} "
        f"assigned_twice={len(twice)}"
    )
    return twice, completed


class Harness:
    def __init__(self, stack: Stack, bus: EventBus, log: EventLog) -> None:
        self.stack, self.bus, self.log = stack, bus, log

    async def wait_completed(self, total: int, timeout: float = 120) -> None:
        await self.log.wait_for(
            lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) >= total,
            timeout=timeout,
        )


@asynccontextmanager
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    stack = local_stack(tmp_path / "hive", work_ack_wait_s=3.0)
    stack.start()
    bus = await EventBus.connect(stack.nats_url, "chaos")
    log = await EventLog(bus).start()
    agents = make_simulated_agents(4, capabilities=["x"], capacity=3, profile=SimulationProfile(work_s=0.01))
    try:
        for agent in agents:
            await agent.start(bus)
        yield Harness(stack, bus, log)
    finally:
        for agent in agents:
            await agent.stop()
        await log.stop()
        await bus.close()
        stack.stop()


async def test_killing_each_service_in_turn_under_load_loses_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path) as hive:
        total = 50 * len(SERVICE_NAMES)
        for round_index, name in enumerate(SERVICE_NAMES):
            for index in range(50):
                await submit(hive.bus, f"k{round_index}-{index}")
                if index == 10:
                    hive.stack.kill(f"{name}-0")
                if index == 30:
                    hive.stack.restart(f"{name}-0")
        await hive.wait_completed(total)
        twice, completed = report("kill each service", total, hive.log)
        assert twice == []
        assert len(completed) == total and set(completed.values()) == {1}
        assert all(peak <= 3 for peak in max_in_flight_per_agent(hive.log.events).values())


async def test_killing_nats_server_under_load_loses_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path) as hive:
        total = 200
        nats = hive.stack.nats
        assert nats is not None

        async def feed(bus: EventBus) -> None:
            for index in range(total):
                await submit(bus, f"n{index}")

        feeder = asyncio.create_task(feed(hive.bus))
        await hive.log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) >= 40)
        nats.kill()
        await asyncio.sleep(1.0)  # the outage itself, not a synchronisation
        nats.start()
        await asyncio.wait_for(feeder, 60)
        await hive.wait_completed(total)
        twice, completed = report("kill nats-server", total, hive.log)
        assert twice == []
        assert len(completed) == total and set(completed.values()) == {1}
