"""``hive bench assign`` counts the assignments stored during a run without reading them: a
consumer nobody reads says how many are stored since the run's start, at no delivery per task."""

from __future__ import annotations

import time

from services.cli.bench.assign import open_counter, stored_count, wait_for_count
from shared.bus import EventBus
from shared.events import TaskAssigned, TaskSubmitted
from shared.subjects import EVENTS_STREAM, events_of_type


def assigned(task_id: str, agent_id: str) -> TaskAssigned:
    return TaskAssigned(task_id=task_id, agent_id=agent_id, attempt=1)


async def test_the_counter_counts_what_is_stored_on_its_subject_since_the_start_and_delivers_nothing(
    bus: EventBus,
) -> None:
    await bus.append(assigned("before", "a1"), expected=None)  # before the run: not counted
    start_seq = await bus.last_sequence() + 1
    subject = events_of_type("agent", TaskAssigned.event_type())
    counter = await open_counter(bus, subject, start_seq, timeout_s=60)
    assert await stored_count(bus, counter) == 0
    await bus.append(TaskSubmitted(task_id="t1", task_type="x"), expected=0)  # another subject
    await bus.append(assigned("t1", "a1"), expected=None)
    await bus.append(assigned("t2", "a2"), expected=None)
    assert await stored_count(bus, counter) == 2
    await wait_for_count(bus, counter, 2, time.monotonic() + 5)
    info = await bus.js.consumer_info(EVENTS_STREAM, counter)
    assert info.delivered.consumer_seq == 0  # nothing was delivered to anyone


async def test_waiting_for_a_count_not_reached_ends_at_the_deadline(bus: EventBus) -> None:
    start_seq = await bus.last_sequence() + 1
    counter = await open_counter(
        bus, events_of_type("agent", TaskAssigned.event_type()), start_seq, timeout_s=60
    )
    await bus.append(assigned("t1", "a1"), expected=None)
    began = time.monotonic()
    await wait_for_count(bus, counter, 2, began + 0.3)
    assert 0.3 <= time.monotonic() - began < 2
