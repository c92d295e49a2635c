"""A 3-node JetStream cluster with the stream replicated 3 times: stop one node under load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.cli.stack import local_stack
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus
from shared.events import TaskCompleted
from shared.subjects import EVENTS_STREAM
from tests.chaos.test_kill_everything import report, submit
from tests.conftest import EventLog

pytestmark = pytest.mark.chaos


async def test_losing_one_of_three_nats_nodes_under_load_loses_nothing(tmp_path: Path) -> None:
    stack = local_stack(tmp_path / "hive", cluster_size=3, work_ack_wait_s=3.0)
    stack.start(wait_ready_s=90)
    bus = await EventBus.connect(stack.nats_url, "chaos")
    info = await bus.js.stream_info(EVENTS_STREAM)
    assert info.config.num_replicas == 3
    log = await EventLog(bus).start()
    agents = make_simulated_agents(4, capabilities=["x"], capacity=3, profile=SimulationProfile(work_s=0.01))
    total = 200
    try:
        for agent in agents:
            await agent.start(bus)

        async def feed(client: EventBus) -> None:
            for index in range(total):
                await submit(client, f"c{index}")

        feeder = asyncio.create_task(feed(bus))
        await log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) >= 40, timeout=60)
        assert stack.cluster is not None
        stack.cluster.nodes[1].stop()
        await asyncio.wait_for(feeder, 90)
        await log.wait_for(
            lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) >= total, timeout=120
        )
        twice, completed = report("lose 1 of 3 nodes", total, log)
        assert twice == []
        assert len(completed) == total and set(completed.values()) == {1}
    finally:
        for agent in agents:
            await agent.stop()
        await log.stop()
        await bus.close()
        stack.stop()
