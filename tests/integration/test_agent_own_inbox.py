"""An agent's own inbox (no credentials) keeps its state in the server's memory, and the agent
opens it again where it stands when the server forgot it: after a restart, the next assignment
is taken and nothing handled before runs again. The router's inboxes stay on file."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from shared.agent.inbox import open_inbox
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.embedded import EmbeddedNats
from shared.events import TaskAssigned, TaskCompleted
from shared.permissions import agent_durable
from shared.settings import Settings
from shared.subjects import EVENTS_STREAM
from tests.conftest import EventLog


@pytest.fixture
async def agent_bus(settings: Settings, bus: EventBus) -> AsyncIterator[EventBus]:
    connection = await EventBus.connect(settings.nats_url, "agent")
    yield connection
    await connection.close()


async def quick(context: TaskContext) -> str:
    return "done"


def assign(agent_id: str, task_id: str) -> TaskAssigned:
    return TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1, task_type="x")


def completions(log: EventLog) -> Counter[str]:
    return Counter(e.task_id for e in log.of_type(TaskCompleted))


async def test_an_agents_own_inbox_is_in_memory_and_the_routers_on_file(
    bus: EventBus, agent_bus: EventBus
) -> None:
    agent = Agent("own", quick, capabilities=["x"])
    await agent.start(agent_bus)
    try:
        info = await bus.js.consumer_info(EVENTS_STREAM, agent_durable("own"))
        assert info.config.mem_storage is True
    finally:
        await agent.stop()
    assert await open_inbox(bus.js, "routed", 5, 1)  # as the router opens one
    info = await bus.js.consumer_info(EVENTS_STREAM, agent_durable("routed"))
    assert not info.config.mem_storage


async def test_an_inbox_the_server_forgot_is_opened_again_after_the_last_message_handled(
    bus: EventBus, agent_bus: EventBus, event_log: EventLog
) -> None:
    """What a restarted server does to an in-memory inbox, done by hand: the agent opens it again
    right after what it handled, takes the next assignment, and runs nothing twice."""
    agent = Agent("forgot", quick, capabilities=["x"], capacity=2)
    await agent.start(agent_bus)
    try:
        for index in range(3):
            await bus.append(assign("forgot", f"t{index}"), expected=None)
        await event_log.wait_for(lambda events: len(completions(event_log)) == 3)
        handled = agent._received_seq
        await bus.js.delete_consumer(EVENTS_STREAM, agent_durable("forgot"))
        await bus.append(assign("forgot", "after"), expected=None)
        await event_log.wait_for(lambda events: "after" in completions(event_log), timeout=20)
        info = await bus.js.consumer_info(EVENTS_STREAM, agent_durable("forgot"))
    finally:
        await agent.stop()
    assert info.config.opt_start_seq == handled + 1
    assert info.config.mem_storage is True
    assert completions(event_log) == {"t0": 1, "t1": 1, "t2": 1, "after": 1}


async def test_an_agent_takes_work_again_after_a_nats_server_restart(
    bus: EventBus, agent_bus: EventBus, nats_server: EmbeddedNats
) -> None:
    agent = Agent("survivor", quick, capabilities=["x"], capacity=2)
    await agent.start(agent_bus)
    before = await EventLog(bus).start()
    try:
        for index in range(3):
            await bus.append(assign("survivor", f"t{index}"), expected=None)
        await before.wait_for(lambda events: len(completions(before)) == 3)
        handled = agent._received_seq
        await before.stop()
        await asyncio.to_thread(nats_server.stop)  # in a thread: clients notice at once and retry
        await asyncio.to_thread(nats_server.start)
        await bus.ensure_streams()  # returns once JetStream answers again, with the stream recovered
        after = await EventLog(bus).start()
        try:
            await bus.append(assign("survivor", "after"), expected=None)
            await after.wait_for(lambda events: "after" in completions(after), timeout=30)
        finally:
            await after.stop()
        info = await bus.js.consumer_info(EVENTS_STREAM, agent_durable("survivor"))
    finally:
        await agent.stop()
    assert info.config.opt_start_seq == handled + 1  # opened again where it stood
    assert completions(after) == {"t0": 1, "t1": 1, "t2": 1, "after": 1}  # nothing ran twice
