"""A task's story: every event about one task, in log order, however its notices were stored.

A task's own events (reports included) are one subject filter (``hive.evt.task.<id>.>``), which
the server's subject index answers. Its assignments and cancel requests are the agents' (version
3: ``hive.evt.agent.<agent>.<notice>``, the task only in the body), so they are found by time: the
notices stored within the task's life window (its first own event to its last), read through one
consumer over the notice subjects, each checked for the task's id in its bytes before it is decoded.
A cancel request stored after the task's last own event (the task was cancelled, then its holder
told) is on the last holder's subject: read from there. Notices stored as version 2 (a sixth token
naming the task) are found by subject, as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection

from shared.bus import EventBus
from shared.events import TaskAssigned, TaskCancelRequested, TaskNotice
from shared.recorded import Recorded, decode_recorded
from shared.subjects import NOTICE_TYPES, aggregate_subjects, notice_subject, notices_v2_of

CANCEL_REQUESTED = TaskCancelRequested.event_type()


def names_task(task_id: str) -> bytes:
    """The bytes every encoded notice about `task_id` holds (ids need no escaping in JSON)."""
    return b'"task_id":"' + task_id.encode() + b'"'


def _about(recorded: Recorded, task_id: str) -> bool:
    return isinstance(recorded.event, TaskNotice) and recorded.event.task_id == task_id


async def _notices(
    bus: EventBus, task_id: str, subject_filter: str | list[str], start_seq: int, stop_seq: int
) -> list[Recorded]:
    """The notices about `task_id` stored on `subject_filter` between the two sequences, those
    whose bytes do not name the task skipped undecoded."""
    if not subject_filter or stop_seq < start_seq:
        return []
    needle = names_task(task_id)
    found = []
    reading = bus.read_stored(subject_filter=subject_filter, start_seq=start_seq, stop_seq=stop_seq)
    async with contextlib.aclosing(reading):
        async for seq, subject, data in reading:
            if needle not in data:
                continue
            item = decode_recorded(seq, subject, data)
            if isinstance(item, Recorded) and _about(item, task_id):
                found.append(item)
    return found


async def task_story(
    bus: EventBus,
    task_id: str,
    *,
    start_seq: int = 1,
    stop_seq: int | None = None,
    own: bool = True,
    notices: Collection[str] = NOTICE_TYPES,
) -> list[Recorded]:
    """Every decodable event about `task_id` stored from `start_seq` to `stop_seq` (default: the
    end), in log order: its own (unless not `own`) and the notices of the types in `notices`."""
    if stop_seq is None:
        stop_seq = await bus.last_sequence()
    kinds = sorted(set(notices) & NOTICE_TYPES)
    first = last = 0
    mine: list[Recorded] = []
    reading = bus.read_stored(subject_filter=aggregate_subjects("task", task_id), stop_seq=stop_seq)
    async with contextlib.aclosing(reading):
        async for seq, subject, data in reading:
            first, last = first or seq, seq
            item = decode_recorded(seq, subject, data)
            if own and seq >= start_seq and isinstance(item, Recorded):
                mine.append(item)
    told: list[Recorded] = []
    if kinds:
        told = await _notices(bus, task_id, notices_v2_of(task_id), 1, stop_seq)  # (by the index)
    if kinds and first:
        # The assignments are read for the last holder even if only cancel requests are asked for.
        window = sorted(NOTICE_TYPES) if CANCEL_REQUESTED in kinds else kinds
        told += await _notices(bus, task_id, [notice_subject("*", kind) for kind in window], first, last)
        assigned = {
            r.seq: r.event.agent_id for r in told if isinstance(r.event, TaskAssigned) and r.seq <= last
        }
        if CANCEL_REQUESTED in kinds and assigned:
            holder = assigned[max(assigned)]
            after = max(last + 1, start_seq)
            told += await _notices(bus, task_id, notice_subject(holder, CANCEL_REQUESTED), after, stop_seq)
    told = [recorded for recorded in told if recorded.event.event_type() in kinds]
    merged = {recorded.seq: recorded for recorded in (*mine, *told) if recorded.seq >= start_seq}
    return [merged[seq] for seq in sorted(merged)]
