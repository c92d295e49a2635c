"""An append answered as a duplicate under a shared message id: the same decision by a rival (ours
is dropped) or a forgery that took the key (ours is stored under its own id), judged from the
stored body (``EventBus.recorded_at``), not its subject: notices to one agent share its subject."""

from __future__ import annotations

import pytest

from shared.bus import EventBus
from shared.domain.message_ids import assign_msg_id, notice_msg_id
from shared.events import TaskAssigned, TaskCancelRequested, TaskSubmitted
from shared.recorded import Recorded, Undecodable


async def test_recorded_at_is_the_stored_event_decoded_or_none(bus: EventBus) -> None:
    event = TaskAssigned(agent_id="a1", task_id="t1", attempt=1)
    stored = await bus.append(event, expected=None)
    read = await bus.recorded_at(stored.seq)
    assert isinstance(read, Recorded) and read.event == event and read.subject == event.subject
    assert await bus.recorded_at(stored.seq + 100) is None
    await bus.js.publish("hive.evt.agent.a1.task_assigned.t9", b"{}")
    assert isinstance(await bus.recorded_at(stored.seq + 1), Undecodable)
    with pytest.raises(RuntimeError, match="sequence 0"):
        await bus.recorded_at(0)


async def test_the_same_assignment_by_a_rival_router_to_another_agent_is_a_duplicate(bus: EventBus) -> None:
    first = await bus.append(
        TaskAssigned(agent_id="a1", task_id="t1", attempt=1), expected=None, msg_id=assign_msg_id("t1", 1)
    )
    rival = await bus.append(
        TaskAssigned(agent_id="a2", task_id="t1", attempt=1), expected=None, msg_id=assign_msg_id("t1", 1)
    )
    assert rival.duplicate and rival.seq == first.seq
    assert await bus.last_sequence() == first.seq, "the rival's assignment is not stored"


@pytest.mark.parametrize(
    "forged",
    [
        TaskAssigned(agent_id="a1", task_id="t2", attempt=1),  # another task, on the same subject
        TaskAssigned(agent_id="a1", task_id="t1", attempt=2),  # another attempt
        TaskCancelRequested(agent_id="a1", task_id="t1", attempt=1),  # another type
        TaskSubmitted(task_id="t1", task_type="x"),  # another aggregate
    ],
)
async def test_anything_else_under_an_assignments_key_is_a_forgery_and_ours_is_stored(
    bus: EventBus, forged: TaskAssigned | TaskCancelRequested | TaskSubmitted
) -> None:
    taken = await bus.append(forged, expected=None, msg_id=assign_msg_id("t1", 1))
    ours = TaskAssigned(agent_id="a1", task_id="t1", attempt=1)
    stored = await bus.append(ours, expected=None, msg_id=assign_msg_id("t1", 1))
    assert not stored.duplicate and stored.seq > taken.seq
    read = await bus.recorded_at(stored.seq)
    assert isinstance(read, Recorded) and read.event == ours


async def test_a_body_that_is_no_event_under_a_cancel_requests_key_is_a_forgery(bus: EventBus) -> None:
    ours = TaskCancelRequested(agent_id="a1", task_id="t1", attempt=1)
    ack = await bus.js.publish(ours.subject, b"{}", headers={"Nats-Msg-Id": notice_msg_id("t1", 1)})
    stored = await bus.append(ours, expected=None, msg_id=notice_msg_id("t1", 1))
    assert not stored.duplicate and stored.seq > ack.seq
    again = await bus.append(ours, expected=None, msg_id=notice_msg_id("t1", 1))
    assert again.duplicate and again.seq == stored.seq, "sent again, it is kept once (under its own id)"
