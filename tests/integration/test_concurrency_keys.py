"""Concurrency keys on real services: limits set over HTTP reach every router instance, two routers
never run more than a key's limit, held tasks say why, slots come back, cancel strategies act, and
bad limits are refused naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.gateway.service import GatewayService
from services.router.service import RouterService
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus
from shared.events import (
    KeySlotClaimed,
    TaskAssigned,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskSubmitted,
)
from shared.settings import Settings
from tests.conftest import EventLog, running
from tests.integration.key_log import key_peaks

ASSIGN = "/api/v1/orchestration/task/assign"
LIMITS = "/api/v1/limits"


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running(GatewayService, settings) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=10) as http,
    ):
        yield http


async def test_two_routers_never_run_more_than_a_keys_limit_set_over_http(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: httpx.AsyncClient
) -> None:
    answer = await gateway.put(f"{LIMITS}/concurrency", json={"pattern": "repo-*", "max_running": 2})
    assert answer.status_code == 200, answer.text
    agents = make_simulated_agents(4, capabilities=["x"], capacity=4, profile=SimulationProfile(work_s=0.05))
    total = 36
    async with (
        running(RouterService, settings, instance="r0"),
        running(RouterService, settings, instance="r1"),
    ):
        for agent in agents:
            await agent.start(bus)
        try:
            for index in range(total):
                await bus.append(
                    TaskSubmitted(task_id=f"t{index}", task_type="x", concurrency_key=f"repo-{index % 3}"),
                    expected=0,
                )
            await event_log.wait_for(
                lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) == total, timeout=60
            )
        finally:
            for agent in agents:
                await agent.stop()
    peaks, at_end = key_peaks(event_log.events)
    assert peaks == {"repo-0": 2, "repo-1": 2, "repo-2": 2}
    assert set(at_end.values()) == {0}
    claimed = {(e.task_id, e.attempt) for e in event_log.of_type(KeySlotClaimed)}
    assert {(e.task_id, e.attempt) for e in event_log.of_type(TaskAssigned)} <= claimed
    # Stored by the routers and agents, not through the gateway: read as of the last event seen.
    key = (await gateway.get("/api/v1/keys/repo-1", params={"after_seq": event_log.seqs[-1]})).json()
    assert key["concurrency_limit"]["max_running"] == 2 and key["running"] == 0 and key["waiting"] == 0


async def test_a_held_task_says_its_key_is_at_its_limit_and_starts_when_a_slot_frees(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: httpx.AsyncClient
) -> None:
    await gateway.put(f"{LIMITS}/concurrency", json={"pattern": "cust-1", "max_running": 1})
    agents = make_simulated_agents(1, capabilities=["x"], capacity=3, profile=SimulationProfile(work_s=1.0))
    async with running(RouterService, settings):
        for agent in agents:
            await agent.start(bus)
        try:
            first = await gateway.post(
                ASSIGN, json={"task_id": "first", "task_type": "x", "concurrency_key": "cust-1"}
            )
            assert first.json()["status"] == "assigned"
            second = await gateway.post(
                ASSIGN, json={"task_id": "second", "task_type": "x", "concurrency_key": "cust-1"}
            )
            assert second.status_code == 202 and second.json()["reason"] == "concurrency_limit"
            shown = (await gateway.get("/api/v1/tasks/second")).json()
            assert shown["status"] == "queued" and "at its limit (1/1" in shown["queued_detail"]
            key = (await gateway.get("/api/v1/keys/cust-1")).json()
            assert key["holders"] == ["first"] and key["waiting"] == 1
            await event_log.wait_for(
                lambda evs: any(isinstance(e, TaskAssigned) and e.task_id == "second" for e in evs),
                timeout=10,
            )
            ends = [e for e in event_log.events if isinstance(e, TaskCompleted) and e.task_id == "first"]
            assert ends, "the second task started before the first ended"
        finally:
            for agent in agents:
                await agent.stop()


async def test_cancel_oldest_cancels_the_running_task_and_tells_its_agent(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: httpx.AsyncClient
) -> None:
    await gateway.put(
        f"{LIMITS}/concurrency", json={"pattern": "live", "max_running": 1, "strategy": "cancel_oldest"}
    )
    agents = make_simulated_agents(1, capabilities=["x"], capacity=2, profile=SimulationProfile(work_s=30.0))
    async with running(RouterService, settings):
        for agent in agents:
            await agent.start(bus)
        try:
            await gateway.post(ASSIGN, json={"task_id": "old", "task_type": "x", "concurrency_key": "live"})
            await gateway.post(ASSIGN, json={"task_id": "new", "task_type": "x", "concurrency_key": "live"})
            await event_log.wait_for(
                lambda evs: any(isinstance(e, TaskAssigned) and e.task_id == "new" for e in evs), timeout=10
            )
        finally:
            for agent in agents:
                await agent.stop()
    cancelled = [e for e in event_log.of_type(TaskCancelled)]
    assert [e.task_id for e in cancelled] == ["old"] and "cancel_oldest" in cancelled[0].reason
    assert [e.task_id for e in event_log.of_type(TaskCancelRequested)] == ["old"]


async def test_cancel_newest_cancels_the_task_over_the_limit(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: httpx.AsyncClient
) -> None:
    await gateway.put(
        f"{LIMITS}/concurrency", json={"pattern": "one", "max_running": 1, "strategy": "cancel_newest"}
    )
    agents = make_simulated_agents(1, capabilities=["x"], capacity=2, profile=SimulationProfile(work_s=30.0))
    async with running(RouterService, settings):
        for agent in agents:
            await agent.start(bus)
        try:
            await gateway.post(ASSIGN, json={"task_id": "kept", "task_type": "x", "concurrency_key": "one"})
            await gateway.post(ASSIGN, json={"task_id": "extra", "task_type": "x", "concurrency_key": "one"})
            await event_log.wait_for(lambda evs: any(isinstance(e, TaskCancelled) for e in evs), timeout=10)
            shown = (await gateway.get("/api/v1/tasks/extra")).json()
        finally:
            for agent in agents:
                await agent.stop()
    assert shown["status"] == "cancelled"
    assert [e.task_id for e in event_log.of_type(TaskCancelled)] == ["extra"]


async def test_limits_are_listed_with_their_source_and_removed(
    settings: Settings, gateway: httpx.AsyncClient
) -> None:
    set_ = await gateway.put(f"{LIMITS}/concurrency", json={"pattern": "a*", "max_running": 3})
    rate = await gateway.put(f"{LIMITS}/rate", json={"pattern": "openai", "limit": 60, "period_seconds": 60})
    listed = (await gateway.get(LIMITS, params={"after_seq": rate.json()["seq"]})).json()
    assert listed["concurrency"] == [
        {"pattern": "a*", "max_running": 3, "strategy": "queue", "source": "api"}
    ]
    assert listed["rate"] == [
        {"pattern": "openai", "limit": 60, "period_seconds": 60.0, "burst": 60, "source": "api"}
    ]
    assert set_.json()["status"] == "set"
    removed = await gateway.delete(f"{LIMITS}/concurrency", params={"pattern": "a*"})
    assert removed.status_code == 200 and removed.json()["status"] == "removed"
    listed = (await gateway.get(LIMITS, params={"after_seq": removed.json()["seq"]})).json()
    assert listed["concurrency"] == []
    missing = await gateway.delete(f"{LIMITS}/concurrency", params={"pattern": "a*"})
    assert missing.status_code == 404 and "no concurrency limit" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("concurrency", {"pattern": "a", "max_running": 0}, "max_running"),
        ("concurrency", {"pattern": "a b", "max_running": 1}, "pattern"),
        ("concurrency", {"pattern": "a", "max_running": 1, "strategy": "drop"}, "strategy"),
        ("rate", {"pattern": "a", "limit": 1, "period_seconds": 0}, "period_seconds"),
    ],
)
async def test_a_bad_limit_is_refused_naming_the_field(
    gateway: httpx.AsyncClient, path: str, body: dict[str, object], field: str
) -> None:
    answer = await gateway.put(f"{LIMITS}/{path}", json=body)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"concurrency_key": "has space"}, "concurrency_key"),
        ({"concurrency_key": "glob*"}, "concurrency_key"),
        ({"units": 0}, "units"),
        ({"affinity": "sticky"}, "affinity"),
        ({"label_rules": [{"label": "gpu", "op": "gt", "value": "big"}]}, "label_rules[0]"),
        ({"label_rules": [{"label": "gpu", "op": "in", "value": "a"}]}, "label_rules[0]"),
    ],
)
async def test_a_task_with_a_bad_key_or_label_rule_is_refused_naming_the_field(
    gateway: httpx.AsyncClient, extra: dict[str, object], field: str
) -> None:
    answer = await gateway.post(ASSIGN, json={"task_type": "x", **extra})
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"]["message"]
