"""Commands: read an aggregate's version, decide, append against it; on a conflict, catch up and decide again.

The one place the optimistic-concurrency loop is written. A writer reads the last sequence of what
it guards, decides on what it knows, and appends with that sequence as the expected one; the server
refuses the append if anybody wrote in between (``ConcurrencyConflict``). The writer then catches
up and decides again, since what it decided may no longer hold, at most ``COMMAND_ATTEMPTS`` times:
then it gives up with ``KeepsChanging``, naming what kept changing.

``command`` is the usual shape (one aggregate, one event); ``retry_on_conflict`` is the loop
itself, for a decision that appends to several aggregates in one go or reads its own versions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from shared.bus import AppendResult, ConcurrencyConflict, EventBus
from shared.errors import HiveError
from shared.events import Event

COMMAND_ATTEMPTS: Final = 20
"""Decisions refused in a row before a command gives up. Every refusal means another writer
appended to the same aggregate meanwhile; twenty in a row means it is too busy to win now."""

T = TypeVar("T")


class KeepsChanging(HiveError, RuntimeError):
    """Every attempt of a command was refused: another writer kept appending to what it guards."""

    def __init__(self, what: str, attempts: int) -> None:
        super().__init__(
            f"{what} kept changing: {attempts} decisions in a row were refused because another "
            "writer appended first"
        )
        self.what = what
        self.attempts = attempts


class Versions(Protocol):
    """Where a command reads versions and catches up: a service's projection (``ProjectionRunner``)."""

    async def expected_version(self, aggregate: str, aggregate_id: str) -> int: ...

    async def catch_up(self, timeout: float = ...) -> int: ...


@dataclass(frozen=True)
class Change:
    """What a decision appends: the event and, when several writers must agree on it, its message id
    (``shared/domain/message_ids.py``). Subclass it to hand the caller more of the decision."""

    event: Event
    msg_id: str | None = None


C = TypeVar("C", bound=Change)


async def retry_on_conflict(
    attempt: Callable[[], Awaitable[T]],
    catch_up: Callable[[], Awaitable[object]] | None,
    *,
    what: str,
    attempts: int = COMMAND_ATTEMPTS,
    on_conflict: Callable[[], None] | None = None,
) -> T:
    """Run `attempt` (read, decide, append) until no append of it is refused, catching up in between.

    `catch_up` is None when `attempt` reads afresh by itself. `on_conflict` counts refusals. After
    `attempts` refusals in a row: ``KeepsChanging(what)``.
    """
    for _ in range(attempts):
        try:
            return await attempt()
        except ConcurrencyConflict:
            if on_conflict is not None:
                on_conflict()
            if catch_up is not None:
                await catch_up()
    raise KeepsChanging(what, attempts)


async def command(
    bus: EventBus,
    view: Versions,
    aggregate: str,
    aggregate_id: str,
    decide: Callable[[int], Awaitable[C | None]],
    *,
    attempts: int = COMMAND_ATTEMPTS,
) -> tuple[C, AppendResult] | None:
    """Append what `decide` makes of the aggregate at its current version, against that version.

    `decide(version)` reads what it needs (the view; the log for what the view no longer keeps) and
    returns the change, None when there is nothing to do, or raises to refuse; it does not append.
    Returns the change appended and where, or None. Gives up with ``KeepsChanging``.
    """

    async def once() -> tuple[C, AppendResult] | None:
        version = await view.expected_version(aggregate, aggregate_id)
        change = await decide(version)
        if change is None:
            return None
        return change, await bus.append(change.event, expected=version, msg_id=change.msg_id)

    return await retry_on_conflict(
        once, view.catch_up, what=f"{aggregate} {aggregate_id!r}", attempts=attempts
    )
