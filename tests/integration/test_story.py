"""A task's story read from a real log (``shared/story.py``): its own events, the notices within its
life (version 3: the task only in their body), a cancel request to its last holder after its end,
and notices stored as version 2 (six tokens) or 1, found where they were stored."""

from __future__ import annotations

from typing import Any

import msgspec

from services.router.rerun import assignments_of
from shared.bus import EventBus
from shared.events import (
    AgentRegistered,
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskStarted,
    TaskSubmitted,
    encode_event,
)
from shared.recorded import Recorded
from shared.replay import TimelineFilter, timeline
from shared.story import task_story
from shared.subjects import notice_subject_v2


async def append(bus: EventBus, event: Event) -> int:
    return (await bus.append(event, expected=None)).seq


async def stored_as(bus: EventBus, subject: str, event: Event, version: int) -> int:
    """`event` stored as version `version` on `subject`, as an older Hive would have."""
    raw: dict[str, Any] = msgspec.json.decode(encode_event(event))
    raw["v"] = version
    ack = await bus.js.publish(subject, msgspec.json.encode(raw))
    return ack.seq


def told(story: list[Recorded]) -> list[tuple[str, str]]:
    return [(r.event.type_name(), getattr(r.event, "agent_id", "")) for r in story]


async def test_a_story_holds_the_tasks_notices_among_every_other_tasks_and_a_cancel_request_after_its_end(
    bus: EventBus,
) -> None:
    for agent in ("a1", "a2"):
        await append(bus, AgentRegistered(agent_id=agent, capabilities={"x": 1.0}))
    await append(bus, TaskAssigned(agent_id="a1", task_id="before", attempt=1))  # before its life
    await append(bus, TaskSubmitted(task_id="t1", task_type="x"))
    await append(bus, TaskAssigned(agent_id="a1", task_id="other", attempt=1))
    await append(bus, TaskAssigned(agent_id="a2", task_id="t1", attempt=1))
    await append(bus, TaskCancelRequested(agent_id="a1", task_id="other", attempt=1))
    await append(bus, TaskStarted(task_id="t1", agent_id="a2", attempt=1))
    await append(bus, TaskCancelled(task_id="t1"))
    after = await append(bus, TaskCancelRequested(agent_id="a2", task_id="t1", attempt=1))
    await append(bus, TaskCancelRequested(agent_id="a1", task_id="t1", attempt=1))  # not its holder
    await append(bus, TaskAssigned(agent_id="a2", task_id="later", attempt=1))

    story = await task_story(bus, "t1")
    assert told(story) == [
        ("task.submitted", ""),
        ("agent.task_assigned", "a2"),
        ("task.started", "a2"),
        ("task.cancelled", ""),
        ("agent.task_cancel_requested", "a2"),
    ]
    assert [r.seq for r in story] == sorted(r.seq for r in story)
    assert story[-1].seq == after and story[1].subject == "hive.evt.agent.a2.task_assigned"

    # Only cancel requests: the holder is still found through the assignment.
    only_cancels = await task_story(bus, "t1", own=False, notices={"task_cancel_requested"})
    assert told(only_cancels) == [("agent.task_cancel_requested", "a2")]
    # A page after the assignment: the rest of the story, nothing before it.
    page = await task_story(bus, "t1", start_seq=story[1].seq + 1)
    assert [r.seq for r in page] == [r.seq for r in story[2:]]
    # Up to a sequence: the cancel request after it is left out.
    assert [r.seq for r in await task_story(bus, "t1", stop_seq=after - 1)] == [r.seq for r in story[:-1]]
    assert [r.seq for r in await assignments_of(bus, "t1")] == [story[1].seq]
    assert await task_story(bus, "unknown") == []
    # What ``hive replay`` and the gateway read: the same story, filtered by type.
    replayed = [
        r
        async for r in timeline(
            bus, TimelineFilter(aggregate="task", aggregate_id="t1", types=frozenset({"agent.task_assigned"}))
        )
    ]
    assert [r.seq for r in replayed] == [story[1].seq]


async def test_a_story_stored_with_version_2_notices_on_six_tokens_reads_as_it_did(bus: EventBus) -> None:
    """An old log: the notices name their task in a sixth token (version 2), or sit on five
    tokens (version 1); a body whose version contradicts its subject is refused."""
    await append(bus, AgentRegistered(agent_id="a1", capabilities={"x": 1.0}))
    await append(bus, TaskSubmitted(task_id="t2", task_type="x"))
    assigned = TaskAssigned(agent_id="a1", task_id="t2", attempt=1)
    v2 = await stored_as(bus, notice_subject_v2("a1", "task_assigned", "t2"), assigned, 2)
    wrong_five = await stored_as(bus, "hive.evt.agent.a1.task_assigned", assigned, 2)
    wrong_six = await stored_as(bus, notice_subject_v2("a1", "task_assigned", "t2"), assigned, 3)
    await append(bus, TaskCompleted(task_id="t2", agent_id="a1", attempt=1, result="ok"))
    cancel = TaskCancelRequested(agent_id="a1", task_id="t2", attempt=1)
    late_v2 = await stored_as(bus, notice_subject_v2("a1", "task_cancel_requested", "t2"), cancel, 2)
    v1 = await stored_as(bus, "hive.evt.agent.a1.task_cancel_requested", cancel, 1)

    story = await task_story(bus, "t2")
    seqs = [r.seq for r in story]
    assert v2 in seqs and late_v2 in seqs and v1 in seqs
    assert wrong_five not in seqs and wrong_six not in seqs
    assert told(story) == [
        ("task.submitted", ""),
        ("agent.task_assigned", "a1"),
        ("task.completed", "a1"),
        ("agent.task_cancel_requested", "a1"),
        ("agent.task_cancel_requested", "a1"),
    ]
    assert all(r.event.v == 3 for r in story if isinstance(r.event, TaskAssigned | TaskCancelRequested))
    assert [r.seq for r in await assignments_of(bus, "t2")] == [v2]
