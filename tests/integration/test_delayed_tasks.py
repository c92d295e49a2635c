"""Delayed tasks on real services: not assigned before their time, assigned soon after (also by a
router restarted meanwhile), shown as scheduled until then, and bad times refused naming the field."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.gateway.service import GatewayService
from services.router.service import RouterService
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.events import AnyEvent, TaskAssigned, TaskCompleted, TaskSubmitted
from shared.settings import Settings
from tests.conftest import EventLog, running

ASSIGN = "/api/v1/orchestration/task/assign"
SOON_AFTER_S = 1.0
"""How late after its time a delayed task may be assigned (the router wakes at the time itself)."""


async def done(context: TaskContext) -> str:
    return "done"


@asynccontextmanager
async def stopping(agent: Agent) -> AsyncIterator[Agent]:
    try:
        yield agent
    finally:
        await agent.stop()


def assigned(task_id: str) -> Any:
    def check(events: list[AnyEvent]) -> bool:
        return any(isinstance(e, TaskAssigned) and e.task_id == task_id for e in events)

    return check


def assignment_of(log: EventLog, task_id: str) -> TaskAssigned:
    return next(e for e in log.of_type(TaskAssigned) if e.task_id == task_id)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running(GatewayService, settings) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=10) as http,
    ):
        yield http


async def test_a_delayed_task_is_not_assigned_before_its_time_and_is_assigned_soon_after(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: httpx.AsyncClient
) -> None:
    agent = Agent("worker", done, capabilities=["x"], capacity=4)
    async with running(RouterService, settings), stopping(agent):
        await agent.start(bus)
        at_once = await gateway.post(ASSIGN, json={"task_id": "now", "task_type": "x"})
        assert at_once.status_code == 200 and at_once.json()["status"] == "assigned"
        asked = time.time()
        delayed = await gateway.post(
            ASSIGN, json={"task_id": "later", "task_type": "x", "delay_seconds": 1.5}
        )
        start_at = datetime.fromtimestamp(asked + 2.0, UTC).isoformat()
        dated = await gateway.post(
            ASSIGN, json={"task_id": "dated", "task_type": "x", "not_before": start_at}
        )
        for answer in (delayed, dated):
            assert answer.status_code == 202, answer.text
            assert answer.json()["status"] == "scheduled" and answer.json()["not_before_ts"] > asked
        status = (
            await gateway.get("/api/v1/tasks/later", params={"after_seq": delayed.json()["seq"]})
        ).json()
        assert status["status"] == "scheduled" and status["not_before_ts"] == delayed.json()["not_before_ts"]
        await event_log.wait_for(
            lambda events: assigned("later")(events) and assigned("dated")(events), timeout=10
        )
        await event_log.wait_for(
            lambda events: sum(isinstance(e, TaskCompleted) for e in events) == 3, timeout=10
        )
        after = (await gateway.get("/api/v1/tasks/later", params={"after_seq": max(event_log.seqs)})).json()
    for task_id, answer in (("later", delayed), ("dated", dated)):
        start = answer.json()["not_before_ts"]
        when = assignment_of(event_log, task_id).ts
        assert start <= when <= start + SOON_AFTER_S, (task_id, when - start)
    assert abs(dated.json()["not_before_ts"] - (asked + 2.0)) < 0.001
    assert after["status"] == "completed" and after["not_before_ts"] == delayed.json()["not_before_ts"]


async def test_a_router_started_after_the_submission_assigns_a_delayed_task_at_its_time(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: httpx.AsyncClient
) -> None:
    agent = Agent("worker", done, capabilities=["x"], capacity=1)
    try:
        async with running(RouterService, settings):
            await agent.start(bus)
            answer = await gateway.post(
                ASSIGN, json={"task_id": "later", "task_type": "x", "delay_seconds": 1.5}
            )
        # The router stopped (snapshot taken) with the task still waiting for its time; a new one starts.
        async with running(RouterService, settings):
            await event_log.wait_for(assigned("later"), timeout=10)
    finally:
        await agent.stop()
    start = answer.json()["not_before_ts"]
    assert start <= assignment_of(event_log, "later").ts <= start + SOON_AFTER_S


async def test_a_delayed_tasks_deadline_counts_from_its_start(
    gateway: httpx.AsyncClient, event_log: EventLog
) -> None:
    answer = await gateway.post(
        ASSIGN, json={"task_id": "t", "task_type": "x", "delay_seconds": 60, "deadline_seconds": 30}
    )
    assert answer.status_code == 202
    await event_log.wait_for(lambda events: any(isinstance(e, TaskSubmitted) for e in events))
    (submitted,) = event_log.of_type(TaskSubmitted)
    assert submitted.not_before_ts == answer.json()["not_before_ts"]
    assert submitted.deadline_ts == pytest.approx(submitted.not_before_ts + 30)


async def test_a_start_already_past_means_at_once(gateway: httpx.AsyncClient, event_log: EventLog) -> None:
    answer = await gateway.post(
        ASSIGN, json={"task_id": "t", "task_type": "x", "not_before": time.time() - 60}
    )
    assert answer.status_code == 202 and answer.json()["status"] == "pending"
    await event_log.wait_for(lambda events: any(isinstance(e, TaskSubmitted) for e in events))
    assert event_log.of_type(TaskSubmitted)[0].not_before_ts is None


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"not_before": "soon"}, "not_before", "is not an ISO-8601 time"),
        ({"not_before": -5}, "not_before", "after 1970"),
        ({"not_before": "2999-01-01T00:00:00Z"}, "not_before", "days ahead"),
        ({"not_before": time.time() + 60, "delay_seconds": 60}, "not_before", "not both"),
        ({"delay_seconds": 0}, "delay_seconds", ""),
        ({"delay_seconds": 10**9}, "delay_seconds", ""),
    ],
)
async def test_a_bad_start_is_refused_with_400_naming_the_field(
    gateway: httpx.AsyncClient, bus: EventBus, body: dict[str, Any], field: str, says: str
) -> None:
    answer = await gateway.post(ASSIGN, json={"task_type": "x", **body})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and says in error["message"], error
    assert await bus.last_sequence() == 0
