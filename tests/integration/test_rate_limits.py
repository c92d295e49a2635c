"""Rate limits on real services: two routers share one bucket per key read from the log, a held
task says why and when it may start (GET task), and starts then."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.gateway.service import GatewayService
from services.router.service import RouterService
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus
from shared.events import RateTokensTaken, TaskAssigned, TaskCompleted, TaskSubmitted
from shared.settings import Settings
from tests.conftest import EventLog, running

ASSIGN = "/api/v1/orchestration/task/assign"
LIMIT, PERIOD_S = 4, 2.0


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running(GatewayService, settings) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=10) as http,
    ):
        yield http


async def test_two_routers_share_a_keys_bucket_and_a_held_task_says_when_it_may_start(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: httpx.AsyncClient
) -> None:
    answer = await gateway.put(
        "/api/v1/limits/rate", json={"pattern": "llm-*", "limit": LIMIT, "period_seconds": PERIOD_S}
    )
    assert answer.status_code == 200
    agents = make_simulated_agents(3, capabilities=["x"], capacity=10, profile=SimulationProfile(work_s=0.01))
    total = 12
    async with (
        running(RouterService, settings, instance="r0"),
        running(RouterService, settings, instance="r1"),
    ):
        for agent in agents:
            await agent.start(bus)
        try:
            first = await gateway.post(
                ASSIGN, json={"task_id": "probe", "task_type": "x", "rate_limit_key": "llm-a"}
            )
            assert first.json()["status"] == "assigned"
            for index in range(total - 1):
                await bus.append(
                    TaskSubmitted(task_id=f"t{index}", task_type="x", rate_limit_key="llm-a"), expected=0
                )
            held = None
            for index in range(total - 1):
                shown = (await gateway.get(f"/api/v1/tasks/t{index}")).json()
                if shown["queued_reason"] == "rate_limited":
                    held = shown
                    break
            assert held is not None, "no task was held by the rate limit"
            assert held["eligible_ts"] is not None and "the bucket holds them at" in held["queued_detail"]
            await event_log.wait_for(
                lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) == total, timeout=30
            )
        finally:
            for agent in agents:
                await agent.stop()
    takes = sorted(e.ts for e in event_log.of_type(RateTokensTaken))
    assigned = {e.task_id for e in event_log.of_type(TaskAssigned)}
    assert len(takes) == total and len(assigned) == total
    rate = LIMIT / PERIOD_S
    for i, start in enumerate(takes):
        for j in range(i, len(takes)):
            assert j - i + 1 <= LIMIT + rate * (takes[j] - start) + 1e-6, "more taken than the bucket allows"
    assert takes[-1] - takes[0] >= (total - LIMIT) / rate - 0.05  # it really waited for the refill
