"""What an agent's inbox costs per assignment on a real nats-server: acknowledgements due on one
connection leave in one write, never before the message is handled and never lost when the agent
stops; pull requests ask for as much as the inbox lets wait, so they are few."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats.errors
import pytest

from shared import natsclient
from shared.agent.acks import AckBatch, ack_batch
from shared.agent.inbox import pull_batch
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.events import (
    AgentRegistered,
    AgentRestartRequested,
    AnyEvent,
    TaskAssigned,
    TaskCancelRequested,
    TaskCompleted,
    TaskStarted,
)
from shared.permissions import agent_durable
from shared.settings import Settings
from shared.subjects import EVENTS_STREAM
from tests.conftest import EventLog


@pytest.fixture
async def agent_bus(settings: Settings, bus: EventBus) -> AsyncIterator[EventBus]:
    """The agent's own connection (the test's appends and reads go over `bus`)."""
    connection = await EventBus.connect(settings.nats_url, "agent")
    yield connection
    await connection.close()


def ack_writes(bus: EventBus, count: int = 1) -> tuple[list[tuple[int, int]], asyncio.Event]:
    """Per socket write of `bus` that carries acknowledgements, how many it carries and how many
    other commands (filled as the connection writes), and an event set once `count`
    acknowledgements were written."""
    transport: Any = bus.nc._transport
    real_writelines = transport.writelines
    found: list[tuple[int, int]] = []
    written = asyncio.Event()

    def counting(commands: list[bytes]) -> None:
        acks = sum(1 for command in commands if command.startswith(b"PUB $JS.ACK."))
        if acks:
            found.append((acks, len(commands) - acks))
            if sum(each for each, _ in found) >= count:
                written.set()
        real_writelines(commands)

    transport.writelines = counting
    return found, written


def completed(count: int) -> Callable[[list[AnyEvent]], bool]:
    return lambda events: sum(isinstance(e, TaskCompleted) for e in events) >= count


async def ack_pending(bus: EventBus, agent_id: str) -> int:
    info = await bus.js.consumer_info(EVENTS_STREAM, agent_durable(agent_id))
    return int(info.num_ack_pending)


def assign(agent_id: str, task_id: str) -> TaskAssigned:
    return TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1, task_type="x")


async def quick(context: TaskContext) -> str:
    return "done"


async def test_acknowledgements_leave_with_the_agents_next_write_never_in_one_of_their_own(
    bus: EventBus, agent_bus: EventBus, event_log: EventLog
) -> None:
    """Each assignment's acknowledgement leaves with the write of its completion (the next thing
    the agent sends): no write, and no server read, carries acknowledgements alone. (They were
    held ``ACK_LINGER_S`` and sent in a write of their own.)"""
    agent = Agent("acker", quick, capabilities=["x"], capacity=4)
    await agent.start(agent_bus)
    writes, written = ack_writes(agent_bus)
    try:
        for index in range(3):
            await bus.append(assign("acker", f"t{index}"), expected=None)
            await event_log.wait_for(completed(index + 1))  # taken and done before the next
        await asyncio.wait_for(written.wait(), 10.0)
        await agent_bus.nc.flush()  # the server has read them once this round trip is answered
        assert await ack_pending(bus, "acker") == 0
    finally:
        await agent.stop()
    assert sum(acks for acks, _ in writes) == 3
    assert all(others > 0 for _, others in writes), writes


async def test_acknowledgements_leave_on_their_own_when_nothing_else_is_written(
    bus: EventBus, agent_bus: EventBus, event_log: EventLog
) -> None:
    """An agent that appends nothing after taking a message (a cancellation of a task it does
    not hold) still acknowledges it, within ``DEFERRED_WRITE_S``."""
    agent = Agent("idler", quick, capabilities=["x"], capacity=1)
    await agent.start(agent_bus)
    writes, written = ack_writes(agent_bus)
    try:
        await bus.append(TaskCancelRequested(agent_id="idler", task_id="other", attempt=1), expected=None)
        await asyncio.wait_for(written.wait(), 10.0)
        await agent_bus.nc.flush()
        assert await ack_pending(bus, "idler") == 0
    finally:
        await agent.stop()
    assert writes[0][0] == 1


async def test_an_agent_stopping_acknowledges_what_it_handled_before_it_leaves(
    bus: EventBus, agent_bus: EventBus, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(natsclient, "DEFERRED_WRITE_S", 60.0)
    agent = Agent("leaver", quick, capabilities=["x"], capacity=2, heartbeat_interval_s=60.0)
    await agent.start(agent_bus)
    await bus.append(assign("leaver", "t"), expected=None)
    await event_log.wait_for(completed(1))
    batch = ack_batch(agent_bus.nc)
    real_add = batch.add
    taken = asyncio.Event()

    def add(nc: Any, reply: str) -> None:
        real_add(nc, reply)
        taken.set()  # the assignment before it was acknowledged before this is patched in

    monkeypatch.setattr(batch, "add", add)
    await bus.append(TaskCancelRequested(agent_id="leaver", task_id="gone", attempt=1), expected=None)
    await asyncio.wait_for(taken.wait(), 10)  # taken: its acknowledgement queued, not written
    assert await ack_pending(bus, "leaver") == 1  # held
    await agent.stop()
    await agent_bus.nc.flush()
    assert await ack_pending(bus, "leaver") == 0


async def test_acknowledgements_that_cannot_be_sent_are_dropped_without_error(
    settings: Settings, bus: EventBus, agent_bus: EventBus
) -> None:
    agent = Agent("closer", quick, capabilities=["x"], capacity=1)
    await agent.start(agent_bus)  # opens its inbox
    await agent.stop()
    await bus.append(assign("closer", "t"), expected=None)
    # A delivery of that inbox, taken by hand on a connection that then closes.
    reader = await EventBus.connect(settings.nats_url, "reader")
    subscription = await reader.js.pull_subscribe_bind(agent_durable("closer"), EVENTS_STREAM)
    (msg,) = await subscription.fetch(1, timeout=5)
    await reader.nc.close()
    batch = AckBatch(linger_s=60.0)
    batch.add(reader.nc, msg.reply)
    await batch.flush()  # nothing sent, nothing raised: the message comes again after ack_wait
    assert batch.held == 0
    assert await ack_pending(bus, "closer") == 1
    with pytest.raises(nats.errors.ConnectionClosedError):
        await msg.ack()  # what the batch met


async def test_an_agent_asks_its_inbox_for_as_many_messages_as_may_wait_unacknowledged(
    bus: EventBus, agent_bus: EventBus, event_log: EventLog
) -> None:
    """Each pull request is a message for the server: an agent of capacity 1 taking 40
    assignments asks twice (for capacity + 64, then again once half have come), not once per 8."""
    pulls: list[str] = []
    real_publish = agent_bus.nc.publish

    async def counting(subject: str, payload: bytes = b"", reply: str = "", headers: Any = None) -> None:
        if subject.startswith("$JS.API.CONSUMER.MSG.NEXT."):
            pulls.append(subject)
        await real_publish(subject, payload, reply=reply, headers=headers)

    agent_bus.nc.publish = counting  # type: ignore[method-assign]
    agent = Agent("puller", quick, capabilities=["x"], capacity=1)
    await agent.start(agent_bus)
    try:
        for index in range(40):
            await bus.append(assign("puller", f"t{index}"), expected=None)
        await event_log.wait_for(completed(40))
    finally:
        await agent.stop()
    assert pull_batch(1) == 65
    assert len(pulls) <= 2, pulls


async def test_an_agent_reads_its_inbox_without_a_message_object_per_delivery(
    bus: EventBus, agent_bus: EventBus, event_log: EventLog
) -> None:
    """Hive's client hands each inbox delivery over as bytes in its read loop (``consume_delivered``):
    no message object, queue or task switch per assignment."""
    built: list[str] = []
    real_build = agent_bus.nc._build_message

    def counting(sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> Any:
        built.append(subject.decode())
        return real_build(sid, subject, reply, data, headers)

    agent_bus.nc._build_message = counting  # type: ignore[method-assign]
    agent = Agent("bytes", quick, capabilities=["x"], capacity=2)
    await agent.start(agent_bus)
    _writes, written = ack_writes(agent_bus, count=4)
    try:
        for index in range(3):
            await bus.append(assign("bytes", f"t{index}"), expected=None)
        await bus.append(TaskCancelRequested(agent_id="bytes", task_id="other", attempt=1), expected=None)
        await event_log.wait_for(completed(3))
        # The cancel request's acknowledgement has no report to leave with: it leaves on its own,
        # within DEFERRED_WRITE_S, possibly after the completions were read.
        await asyncio.wait_for(written.wait(), 10.0)
        await agent_bus.nc.flush()
        assert await ack_pending(bus, "bytes") == 0
    finally:
        await agent.stop()
    assert [subject for subject in built if subject.startswith("hive.evt.agent.")] == []


async def test_an_old_assignment_is_started_before_its_handler_runs_and_holds_the_deliveries_behind_it(
    bus: EventBus, agent_bus: EventBus, event_log: EventLog
) -> None:
    """An assignment received late appends its start first; the cancellation stored right behind it
    waits until the attempt runs, so it stops the attempt instead of finding nothing to cancel, and
    the attempt, cancelled before its task ever ran, is forgotten (it was kept in hand forever)."""
    began: list[str] = []

    async def slow(context: TaskContext) -> str:
        began.append(context.task_id)
        await asyncio.sleep(30)
        return "done"

    agent = Agent("lagging", slow, capabilities=["x"], capacity=2)
    await agent.start(agent_bus)
    try:
        old = TaskAssigned(agent_id="lagging", task_id="old", attempt=1, task_type="x", ts=time.time() - 60)
        await bus.append(old, expected=None)
        await bus.append(TaskCancelRequested(agent_id="lagging", task_id="old", attempt=1), expected=None)
        await event_log.wait_for(lambda events: any(isinstance(e, TaskStarted) for e in events))
        await agent.wait_idle(10)
        await agent_bus.nc.flush()
        assert await ack_pending(bus, "lagging") == 0
    finally:
        await agent.stop()
    assert agent.stats.started == 1 and agent.stats.completed == 0
    assert event_log.of_type(TaskCompleted) == []


async def test_a_restart_read_right_behind_an_assignment_stops_it_and_leaves_the_agent_idle(
    bus: EventBus, agent_bus: EventBus, event_log: EventLog
) -> None:
    """The restart stops the attempt just taken and the agent is idle again under its new session,
    not holding a task that never ends."""
    began: list[str] = []

    async def slow(context: TaskContext) -> str:
        began.append(context.task_id)
        await asyncio.sleep(30)
        return "done"

    agent = Agent("restarter", slow, capabilities=["x"], capacity=2)
    await agent.start(agent_bus)
    first_session = agent.session
    try:
        await bus.append(assign("restarter", "t"), expected=None)
        await bus.append(AgentRestartRequested(agent_id="restarter", session=first_session), expected=None)
        await event_log.wait_for(
            lambda events: (
                sum(isinstance(e, AgentRegistered) and e.agent_id == "restarter" for e in events) == 2
            )
        )
        await agent.wait_idle(10)
    finally:
        await agent.stop()
    assert agent.session != first_session and agent.stats.restarts == 1
    assert agent.in_flight == 0 and event_log.of_type(TaskCompleted) == []
