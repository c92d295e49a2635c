"""The gateway's event desk: the log as a timeline over HTTP (what ``hive replay`` prints).

A page is read from JetStream with consumers filtered on the server to exactly the subjects asked
for (one aggregate, one id, one event type), starting after a sequence, so its cost is the page's,
not the log's. Filters name an aggregate (``task``), an id within it, an event type
(``task.completed``, or ``completed`` with the aggregate). One task's story includes its
assignments and cancel requests (agent events about it: ``shared/story.py``).
"""

from __future__ import annotations

import contextlib
from typing import Final

import msgspec

from services.gateway.core import GatewayCore
from services.gateway.errors import ApiError
from services.gateway.query.filters import encode_cursor
from services.gateway.schemas import EventOut, EventPage
from shared.events import EVENT_TYPES, TASK_NOTICES
from shared.ids import InvalidIdError, check_id
from shared.recorded import Recorded
from shared.replay import TimelineFilter
from shared.story import task_story

EVENTS: Final = "events"
"""The kind of list an event cursor continues."""
NOTICE_TYPE_NAMES: Final = frozenset(notice.type_name() for notice in TASK_NOTICES)


def timeline_filter(aggregate: str | None, aggregate_id: str | None, type_name: str | None) -> TimelineFilter:
    """The selection asked for, checked: 400 naming the parameter that cannot be served."""
    if aggregate_id is not None:
        if aggregate is None:
            raise ApiError(400, "invalid_field", "invalid field 'id': an id needs its aggregate", "id")
        try:
            check_id(aggregate_id, "id")
        except InvalidIdError as exc:
            raise ApiError(400, "invalid_field", f"invalid field 'id': {exc}", "id") from None
    types: frozenset[str] = frozenset()
    if type_name is not None:
        full = type_name if "." in type_name else f"{aggregate}.{type_name}" if aggregate else ""
        if not full:
            raise ApiError(
                400, "invalid_field", "invalid field 'type': name its aggregate (task.completed)", "type"
            )
        # A task's story also holds its assignments and cancel requests (agent events about it).
        of_task = aggregate == "task" and aggregate_id is not None and full in NOTICE_TYPE_NAMES
        if full not in EVENT_TYPES or (
            aggregate is not None and not full.startswith(f"{aggregate}.") and not of_task
        ):
            raise ApiError(
                400,
                "invalid_field",
                f"invalid field 'type': {type_name!r} is not an event type"
                + (f" of {aggregate}" if aggregate else "")
                + " (e.g. task.completed, agent.task_assigned)",
                "type",
            )
        aggregate = aggregate if of_task else full.split(".", 1)[0]
        types = frozenset({full})
    return TimelineFilter(aggregate=aggregate, aggregate_id=aggregate_id, types=types)


class EventDesk:
    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    async def timeline(self, selection: TimelineFilter, after_seq: int, limit: int) -> EventPage:
        """Up to `limit` matching events after `after_seq`, in log order (one task's story: its own
        events, assignments and cancel requests, ``shared/story.py``)."""
        story = selection.story()
        if story is not None:
            assert selection.aggregate_id is not None
            own, notices = story
            told = await task_story(
                self.core.bus, selection.aggregate_id, start_seq=after_seq + 1, own=own, notices=notices
            )
            found = [recorded for recorded in told if selection.matches(recorded)][: limit + 1]
        else:
            found = []
            reading = self.core.bus.read(
                subject_filter=selection.subject_filter(), start_seq=after_seq + 1, batch=min(limit + 1, 512)
            )
            async with contextlib.aclosing(reading):
                async for item in reading:
                    if isinstance(item, Recorded) and selection.matches(item):
                        found.append(item)
                        if len(found) > limit:
                            break
        more = len(found) > limit
        items = [
            EventOut(
                seq=recorded.seq,
                subject=recorded.subject,
                type=recorded.event.type_name(),
                ts=recorded.event.ts,
                event=msgspec.to_builtins(recorded.event),
            )
            for recorded in found[:limit]
        ]
        return EventPage(items=items, next_cursor=encode_cursor(EVENTS, items[-1].seq) if more else None)
