"""Requests made through the log whose answer is another event of the same scope.

The gateway appends the request (expected 0: a scope is asked once) and waits a while for the
service that acts on it to append its answer; without an answer in time the caller says the
request is recorded and where the answer will appear.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Generic, Protocol, TypeVar

from shared.bus import AppendResult, EventBus
from shared.events import Event
from shared.projection import ProjectionRunner
from shared.recorded import Recorded


class Scoped(Protocol):
    @property
    def scope(self) -> str: ...


A = TypeVar("A", bound=Scoped)


class Replies(Generic[A]):
    def __init__(self, answer_type: type[A]) -> None:
        self.answer_type = answer_type
        self._waiters: dict[str, asyncio.Future[A]] = {}

    def on_event(self, recorded: Recorded) -> None:
        """Hand an answer to whoever waits for its scope."""
        event = recorded.event
        if isinstance(event, self.answer_type):
            waiter = self._waiters.get(event.scope)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)

    async def ask(
        self, bus: EventBus, view: ProjectionRunner[Any], request: Event, scope: str, wait_s: float
    ) -> tuple[AppendResult, A | None]:
        """Append `request`, then wait up to `wait_s` for the answer (None if none came), which
        `view` hands over as it applies it (read at once meanwhile, not in bursts).

        A scope asked before raises ``ConcurrencyConflict``: the caller words the 409.
        """
        waiter: asyncio.Future[A] = asyncio.get_running_loop().create_future()
        self._waiters[scope] = waiter
        try:
            result = await bus.append(request, expected=0)
            answer: A | None = None
            async with view.urgent():
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(waiter, wait_s)
        finally:
            self._waiters.pop(scope, None)
        return result, answer
