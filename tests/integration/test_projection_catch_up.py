"""A projection with filters far behind catches up through one filter, then reads filtered: the
same state and versions as a filtered read, nothing missed or applied twice across the switch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import msgspec
import nats.errors
import pytest

import shared.projection
from services.cli.bench.history import History, history_chunks, write_straight
from services.workflow.view import WORKFLOW_VIEW
from shared.bus import EventBus
from shared.domain.routing.view import ROUTER_VIEW
from shared.events import (
    AgentRegistered,
    TaskAssigned,
    TaskCompleted,
    TaskProgress,
    TaskStarted,
    TaskSubmitted,
    WorkflowStarted,
    WorkflowStep,
    WorkflowStepDispatched,
    WorkflowSubmitted,
)
from shared.projection import ProjectionRunner
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded
from shared.subjects import ALL_EVENTS, EVENTS_STREAM, aggregate_filter, type_filters
from tests.conftest import watching_logs


@pytest.fixture(autouse=True)
def _far_behind_sooner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Logs of a few thousand messages, not tens of thousands: far behind after 500."""
    monkeypatch.setattr(shared.projection, "CATCH_UP_ALONE_AFTER", 500)


async def _workflows(bus: EventBus, count: int, prefix: str) -> None:
    """Workflows whose one step runs to its end, with progress, beside the plain tasks."""
    await bus.append(AgentRegistered(agent_id="wa", capabilities={"x": 1.0}, session="s"), expected=None)
    for n in range(count):
        flow, task = f"{prefix}{n}", f"{prefix}{n}-a"
        steps = [WorkflowStep(step_id="a", task_type="x"), WorkflowStep(step_id="b", task_type="x")]
        await bus.append(WorkflowSubmitted(workflow_id=flow, steps=steps), expected=0)
        await bus.append(WorkflowStarted(workflow_id=flow), expected=None)
        await bus.append(WorkflowStepDispatched(workflow_id=flow, step_id="a", task_id=task), expected=None)
        await bus.append(
            TaskSubmitted(task_id=task, task_type="x", workflow_id=flow, step_id="a"), expected=0
        )
        await bus.append(TaskAssigned(agent_id="wa", task_id=task, attempt=1, session="s"), expected=None)
        await bus.append(TaskStarted(task_id=task, agent_id="wa", attempt=1), expected=None)
        for percent in (30.0, 60.0):
            await bus.append(
                TaskProgress(task_id=task, agent_id="wa", attempt=1, percent=percent), expected=None
            )
        await bus.append(TaskCompleted(task_id=task, agent_id="wa", attempt=1, result=n), expected=None)


async def _applied(runner: ProjectionRunner[Any]) -> tuple[bytes, list[tuple[str, int]]]:
    await runner.catch_up(timeout=60)
    return msgspec.msgpack.encode(runner.state), list(runner.versions.items())


@pytest.mark.parametrize("spec", [ROUTER_VIEW, WORKFLOW_VIEW], ids=["router", "workflow"])
async def test_catching_up_through_one_filter_leaves_what_a_filtered_read_leaves(
    bus: EventBus, spec: ProjectionSpec[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    await _workflows(bus, 5, "before")
    await write_straight(bus, history_chunks(History(tasks=300, progress=2)))
    await _workflows(bus, 5, "after")
    assert await bus.last_sequence() > shared.projection.CATCH_UP_ALONE_AFTER
    monkeypatch.setattr(shared.projection, "CATCH_UP_ALONE_AFTER", 10**9)
    filtered = ProjectionRunner(bus, spec)
    await filtered.start()
    alone = ProjectionRunner(bus, spec)
    try:
        read_filtered = await _applied(filtered)
        monkeypatch.setattr(shared.projection, "CATCH_UP_ALONE_AFTER", 500)
        await alone.start()
        assert await _applied(alone) == read_filtered
        assert filtered.unread == 0 and alone.unread > 0, "only the one far behind read through one"
        assert alone.delivered == await bus.last_sequence() > filtered.delivered
        # After the switch it reads filtered: what the filters leave out is not handed over.
        unread = alone.unread
        await _workflows(bus, 2, "later")
        assert await _applied(alone) == await _applied(filtered)
        assert alone.unread == unread and alone.delivered - unread == filtered.delivered
    finally:
        await filtered.stop(snapshot=False)
        await alone.stop(snapshot=False)


def _seqs(state: list[int], recorded: Recorded) -> list[int]:
    state.append(recorded.seq)
    return state


SEQS: ProjectionSpec[list[int]] = ProjectionSpec(
    name="test-seqs",
    state_type=list[int],
    initial=list,
    apply=_seqs,
    reads=(aggregate_filter("agent"), *type_filters("task", "completed")),
)
"""Every sequence it reads, in the order applied: agents whole, of the tasks their ends."""


async def _matching(bus: EventBus) -> list[int]:
    return [
        item.seq
        for item in [entry async for entry in bus.read()]
        if item.subject.startswith("hive.evt.agent.") or item.subject.split(".")[4:5] == ["completed"]
    ]


async def test_events_stored_while_it_catches_up_and_while_it_switches_are_each_applied_once(
    bus: EventBus,
) -> None:
    await write_straight(bus, history_chunks(History(tasks=200, progress=2)))
    runner = ProjectionRunner(bus, SEQS)
    follow_raw = bus.follow_raw
    switched: list[object] = []

    async def appended_at_the_switch(*args: Any, **kwargs: Any) -> None:
        if kwargs["subject_filter"] != ALL_EVENTS:  # the filtered consumer, not yet opened
            switched.append(kwargs["start_seq"])
            await write_straight(bus, history_chunks(History(tasks=20, progress=1, prefix="switch")))
        await follow_raw(*args, **kwargs)

    bus.follow_raw = appended_at_the_switch  # type: ignore[method-assign]

    async def meanwhile() -> None:
        # Only events it reads: one skipped at the switch, whichever it is, would show.
        for n in range(40):
            await bus.append(AgentRegistered(agent_id=f"m{n}"), expected=None)
            await bus.append(TaskCompleted(task_id=f"m{n}", agent_id="x", attempt=1), expected=None)

    try:
        await asyncio.gather(runner.start(), meanwhile())
        await runner.catch_up(timeout=60)
        assert switched and runner.unread > 0
        assert runner.state == await _matching(bus), "each once, in order, none missed"
    finally:
        await runner.stop(snapshot=False)


async def test_a_consumer_lost_while_catching_up_is_opened_again_where_it_left_off(bus: EventBus) -> None:
    await write_straight(bus, history_chunks(History(tasks=400, progress=2)))
    runner = ProjectionRunner(bus, SEQS)
    deleting: list[int] = []
    on_stored = runner._on_stored

    async def delete_consumers() -> None:
        for info in await bus.js.consumers_info(EVENTS_STREAM):
            await bus.js.delete_consumer(EVENTS_STREAM, info.name)

    def losing_the_consumer(seq: int, subject: str, data: bytes) -> Awaitable[None] | None:
        """In the middle of the first burst, before the next message is handed over."""
        outcome = on_stored(seq, subject, data)
        if deleting or runner.unread < 300:
            return outcome
        deleting.append(seq)
        assert outcome is None
        return delete_consumers()

    runner._on_stored = losing_the_consumer  # type: ignore[method-assign]
    with watching_logs("consumer_lost") as lost:
        await runner.start()
        try:
            await runner.catch_up(timeout=60)
            assert deleting and lost.named("consumer_lost"), "the consumer was lost on the way"
            assert lost.named("consumer_lost")[0]["label"].endswith("catching up")
            assert runner.state == await _matching(bus)
            assert runner.delivered == await bus.last_sequence(), "each message handed over once"
        finally:
            await runner.stop(snapshot=False)


async def test_a_projection_near_the_end_or_not_told_the_end_reads_filtered_from_the_start(
    bus: EventBus,
) -> None:
    near = ProjectionRunner(bus, SEQS)
    await _workflows(bus, 2, "wf")
    await near.start()
    await write_straight(bus, history_chunks(History(tasks=200, progress=2)))
    expected = await _matching(bus)
    untold = ProjectionRunner(bus, SEQS)
    last_sequence = bus.last_sequence
    asked: list[int] = []

    async def refused_once() -> int:
        asked.append(len(asked))
        if len(asked) == 1:
            raise nats.errors.TimeoutError
        return await last_sequence()

    bus.last_sequence = refused_once  # type: ignore[method-assign]
    with watching_logs("projection_end_unknown") as logs:
        await untold.start()
        try:
            await near.wait_for(expected[-1], timeout=60)
            await untold.wait_for(expected[-1], timeout=60)
            assert near.state == untold.state == expected
            assert near.unread == untold.unread == 0
            assert logs.named("projection_end_unknown")
        finally:
            await near.stop(snapshot=False)
            await untold.stop(snapshot=False)
