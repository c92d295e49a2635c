"""Replaying the event log: filters for a timeline, time travel, and re-running routing decisions.

Everything here reads the log and folds it with the same pure ``apply`` functions the services
use, so what it shows is what the services saw.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from shared.bus import EventBus
from shared.errors import HiveError
from shared.events import AnyEvent, TaskNotice
from shared.recorded import Recorded
from shared.story import task_story
from shared.subjects import (
    ALL_EVENTS,
    EVENTS_PREFIX,
    NOTICE_TYPES,
    aggregate_subjects,
    event_subject,
    is_report,
    type_filters,
)

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ReplayError(HiveError, ValueError):
    """A filter or a point in time that cannot be understood; the message says why."""


def parse_time(value: str, now: float) -> float:
    """ISO 8601 (``2026-11-25T12:00:00``, UTC unless an offset is given) or relative (``10m``)."""
    relative = _RELATIVE.match(value.strip())
    if relative:
        return now - float(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ReplayError(
            f"{value!r} is neither an ISO time (2026-11-25T12:00:00) nor relative (10m)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(frozen=True)
class TimelineFilter:
    aggregate: str | None = None
    aggregate_id: str | None = None
    types: frozenset[str] = field(default_factory=frozenset)
    since_ts: float | None = None
    until_ts: float | None = None
    from_seq: int = 1
    to_seq: int | None = None

    def subject_filter(self) -> str:
        """The narrowest server-side filter; the rest is checked by ``matches``."""
        if self.aggregate is None:
            return ALL_EVENTS
        if self.aggregate_id is not None:
            if len(self.types) == 1:
                (only,) = self.types
                event_type = only.split(".")[-1]
                if not is_report(self.aggregate, event_type):  # a report's subject names its agent too
                    return event_subject(self.aggregate, self.aggregate_id, event_type)
            return aggregate_subjects(self.aggregate, self.aggregate_id)
        if len(self.types) == 1:
            (only,) = self.types
            filters = type_filters(self.aggregate, only.split(".")[-1])
            if len(filters) == 1:  # a report type has two forms (old logs): read the aggregate
                return filters[0]
        return f"{EVENTS_PREFIX}.{self.aggregate}.>"

    def story(self) -> tuple[bool, frozenset[str]] | None:
        """For one task's story (``shared/story.py``): whether its own events are asked for, and
        which notice types; None for any other selection (one server-side filter)."""
        if self.aggregate != "task" or self.aggregate_id is None:
            return None
        notices = frozenset(notice for notice in NOTICE_TYPES if self._asks_for(f"agent.{notice}"))
        own = not self.types or any(
            not name.startswith("agent.") and name.split(".")[-1] not in NOTICE_TYPES for name in self.types
        )
        return own, notices

    def _asks_for(self, type_name: str) -> bool:
        return not self.types or type_name in self.types or type_name.split(".", 1)[1] in self.types

    def _about(self, event: AnyEvent) -> bool:
        if self.aggregate is None:
            return True
        if self.aggregate == event.AGGREGATE:
            return self.aggregate_id is None or event.aggregate_id == self.aggregate_id
        # A task's story includes its assignments and the requests to stop it (on their agents).
        return (
            self.aggregate == "task"
            and self.aggregate_id is not None
            and isinstance(event, TaskNotice)
            and event.task_id == self.aggregate_id
        )

    def matches(self, recorded: Recorded) -> bool:
        event = recorded.event
        if not self._about(event):
            return False
        if self.types and event.type_name() not in self.types and event.event_type() not in self.types:
            return False
        if self.since_ts is not None and event.ts < self.since_ts:
            return False
        return not (self.until_ts is not None and event.ts > self.until_ts)


async def timeline(bus: EventBus, selection: TimelineFilter) -> AsyncIterator[Recorded]:
    """Matching events in log order (one task's story: ``shared/story.py``)."""
    story = selection.story()
    if story is not None:
        assert selection.aggregate_id is not None
        own, notices = story
        told = await task_story(
            bus,
            selection.aggregate_id,
            start_seq=selection.from_seq,
            stop_seq=selection.to_seq,
            own=own,
            notices=notices,
        )
        for recorded in told:
            if selection.matches(recorded):
                yield recorded
        return
    async for item in bus.read(
        subject_filter=selection.subject_filter(), start_seq=selection.from_seq, stop_seq=selection.to_seq
    ):
        if isinstance(item, Recorded) and selection.matches(item):
            yield item


_SKIP_FIELDS = {"type", "id", "ts", "v", "correlation_id", "causation_id"}


def describe(recorded: Recorded) -> str:
    """One readable line: sequence, time, type, aggregate, the fields that matter."""
    event = recorded.event
    when = datetime.fromtimestamp(event.ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    fields = msgspec.to_builtins(event)
    shown = []
    for key, value in fields.items():
        if key in _SKIP_FIELDS or key == f"{event.AGGREGATE}_id" or value in (None, "", [], {}):
            continue
        text = msgspec.json.encode(value).decode() if not isinstance(value, str) else value
        shown.append(f"{key}={text[:80]}")
    return f"{recorded.seq:>8}  {when}  {event.type_name():<28} {event.aggregate_id:<24} {' '.join(shown)}"


def as_json(recorded: Recorded) -> str:
    return msgspec.json.encode(
        {"seq": recorded.seq, "subject": recorded.subject, "event": recorded.event}
    ).decode()


async def seq_at(bus: EventBus, point: str, now: float | None = None) -> int:
    """A stream sequence from ``SEQ`` or a time: the last event at or before that time.

    A time before the first event (or an empty log) is a ReplayError saying so: nothing had
    happened yet, there is no state to show.
    """
    if point.isdigit():
        if int(point) < 1:
            raise ReplayError(f"--at {point}: stream sequences start at 1")
        return int(point)
    cutoff = parse_time(point, time.time() if now is None else now)
    last = 0
    first: Recorded | None = None
    # Closed when left early, so its consumer goes before the connection does.
    async with contextlib.aclosing(bus.read()) as items:
        async for item in items:
            if isinstance(item, Recorded):
                first = first or item
                if item.event.ts > cutoff:
                    break
            last = item.seq
    if first is None:
        raise ReplayError(f"--at {point}: the event log is empty, nothing happened yet")
    if last == 0:
        raise ReplayError(
            f"--at {point} ({_iso(cutoff)}) is before the first event ({_iso(first.event.ts)}, "
            f"sequence {first.seq}): nothing had happened yet"
        )
    return last


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
