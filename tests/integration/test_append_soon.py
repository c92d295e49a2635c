"""Appends started without a task (``EventBus.append_soon``) and the router's decisions appended
that way: the same results and errors as ``append``, no task per decision."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import nats.errors
import pytest

from services.router.service import RouterService
from shared.agent.sdk import Agent, TaskContext
from shared.bus import AppendResult, ConcurrencyConflict, EventBus
from shared.domain.message_ids import assign_msg_id
from shared.events import AgentRegistered, TaskAssigned, TaskCompleted, TaskSubmitted
from shared.settings import Settings
from tests.conftest import EventLog, running


async def test_append_soon_answers_as_append_does(bus: EventBus) -> None:
    """Stored, refused as stale, a duplicate, a forged duplicate stored under the event's own id:
    each as ``append`` answers it; nothing is left waiting."""
    await bus.append(AgentRegistered(agent_id="warm"), expected=None)  # opens the replies
    first = await bus.append_soon(TaskSubmitted(task_id="s1", task_type="x"), expected=0)
    assert not first.duplicate and first.seq > 0
    with pytest.raises(ConcurrencyConflict) as refused:
        await bus.append_soon(TaskSubmitted(task_id="s1", task_type="x"), expected=0)
    assert refused.value.expected == 0 and "task.s1" in refused.value.subject_filter
    again = AgentRegistered(agent_id="twice")
    stored = await bus.append(again, expected=None)
    assert await bus.append_soon(again, expected=None) == AppendResult(stored.seq, True)
    # Someone else's message under an assignment's message id: ours is stored under its own id.
    await bus.append(
        TaskSubmitted(task_id="forger", task_type="x"), expected=None, msg_id=assign_msg_id("t9", 1)
    )
    own = await bus.append_soon(
        TaskAssigned(agent_id="a", task_id="t9", attempt=1), expected=None, msg_id=assign_msg_id("t9", 1)
    )
    assert not own.duplicate
    assert await bus.subject_at(own.seq) == TaskAssigned(agent_id="a", task_id="t9", attempt=1).subject
    assert bus.last_appended == own.seq
    assert not bus._acks and not bus._checks


async def test_appends_started_at_once_each_get_their_own_answer(bus: EventBus) -> None:
    await bus.append(AgentRegistered(agent_id="warm"), expected=None)
    events = [TaskSubmitted(task_id=f"t{index}", task_type="x") for index in range(50)]
    results = await asyncio.gather(*(bus.append_soon(event, expected=0) for event in events))
    assert len({result.seq for result in results}) == len(events)
    for event, result in zip(events, results, strict=True):
        assert await bus.subject_at(result.seq) == event.subject
    assert not bus._acks


async def test_append_soon_unanswered_in_time_fails_with_nats_py_s_timeout(bus: EventBus) -> None:
    await bus.append(AgentRegistered(agent_id="warm"), expected=None)
    with pytest.raises(nats.errors.TimeoutError):  # the timer fires before the message is written
        await bus.append_soon(AgentRegistered(agent_id="late"), expected=None, timeout=0.0)
    assert not bus._acks


async def test_append_soon_is_answered_without_a_message_object_and_append_with_one(bus: EventBus) -> None:
    """Hive's client hands an ``append_soon``'s reply over as bytes (``_answer_stored``); an
    ``append`` waits for a message object, and a reply that comes after its append timed out is
    dropped without a word."""
    await bus.append(AgentRegistered(agent_id="warm"), expected=None)  # opens the replies
    prefix = bus._ack_prefix
    assert prefix is not None
    built: list[str] = []
    real_build = bus.nc._build_message

    def counting(sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> Any:
        built.append(subject.decode())
        return real_build(sid, subject, reply, data, headers)

    bus.nc._build_message = counting  # type: ignore[method-assign]
    soon = await bus.append_soon(TaskSubmitted(task_id="b1", task_type="x"), expected=0)
    awaited = await bus.append(TaskSubmitted(task_id="b2", task_type="x"), expected=0)
    with pytest.raises(nats.errors.TimeoutError):
        await bus.append_soon(TaskSubmitted(task_id="b3", task_type="x"), expected=0, timeout=0.0)
    await bus.nc.flush()  # the late reply has come meanwhile
    replies = [subject for subject in built if subject.startswith(prefix)]
    assert len(replies) == 1 and soon.seq < awaited.seq
    assert not bus._acks
    stored = await bus.read_aggregate("task", "b3")
    assert len(stored[0]) == 1  # stored all the same: only its answer came too late


async def test_append_soon_before_the_replies_are_opened_is_an_append_in_a_task(bus: EventBus) -> None:
    assert bus._ack_prefix is None
    answer = bus.append_soon(AgentRegistered(agent_id="first"), expected=None)
    assert isinstance(answer, asyncio.Task)
    assert not (await answer).duplicate
    assert bus._ack_prefix is not None


async def test_append_soon_of_an_invalid_event_fails_on_its_future(bus: EventBus) -> None:
    await bus.append(AgentRegistered(agent_id="warm"), expected=None)
    with pytest.raises(ValueError):
        await bus.append_soon(AgentRegistered(agent_id="bad id"), expected=None)
    assert not bus._acks


async def quick(context: TaskContext) -> str:
    await asyncio.sleep(0.001)
    return "done"


async def test_the_router_appends_its_assignments_without_a_task_each(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    """A task per append cost as much as the append itself: plain assignments are appended from
    callbacks, chained per agent, and every task is still assigned once within capacity."""
    appends: list[str] = []
    loop = asyncio.get_running_loop()

    def counting(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        name = getattr(coro, "__qualname__", "")
        if name.startswith("RouterService._append") or name.startswith("EventBus.append"):
            appends.append(name)
        return asyncio.Task(coro, loop=loop, **kwargs)

    agents = [Agent(f"ag{index}", quick, capabilities=["review"], capacity=2) for index in range(3)]
    async with running(RouterService, settings, instance="r1") as router:
        for agent in agents:
            await agent.start(bus)
        await event_log.wait_for(
            lambda evs: sum(isinstance(e, AgentRegistered) for e in evs) >= 3, timeout=10
        )
        await bus.append(TaskSubmitted(task_id="warm", task_type="review"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs), timeout=10)
        loop.set_task_factory(counting)
        try:
            for index in range(60):
                await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="review"), expected=0)
            await event_log.wait_for(
                lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) >= 61, timeout=60
            )
        finally:
            loop.set_task_factory(None)
        for agent in agents:
            await agent.stop()
        assert router.assignments == 61
    assigned = event_log.of_type(TaskAssigned)
    assert len(assigned) == 61 and len({a.task_id for a in assigned}) == 61
    assert all(agent.stats.max_concurrent <= 2 for agent in agents)
    assert appends == [], f"{len(appends)} tasks started to append 60 assignments"
