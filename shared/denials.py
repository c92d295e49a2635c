"""Refused publishes on one NATS connection, told to whoever waits for them.

A publish the server's permissions refuse gets no acknowledgement, only an asynchronous error
naming the subject (``-ERR 'Permissions Violation for Publish to "<subject>"'``). Without this an
append would wait for its timeout and report a timeout instead of the reason.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable
from typing import Any, TypeVar

from shared.errors import HiveError

T = TypeVar("T")


class PermissionDenied(HiveError):
    """The server refused this connection's user a publish: its permissions do not allow the subject."""

    def __init__(self, user: str, subject: str) -> None:
        super().__init__(
            f"NATS user {user!r} may not publish to {subject!r}: nothing was stored "
            "(each Hive user may publish only what its role decides; see the README, Security)"
        )
        self.user = user
        self.subject = subject


class _Waiter:
    """An append waiting for its acknowledgement, or a caller waiting to hear of a refusal."""

    __slots__ = ("future", "refused", "task")

    def __init__(self, task: asyncio.Task[Any] | None = None) -> None:
        self.task = task
        self.future: asyncio.Future[None] | None = None
        self.refused = False


class Denials:
    """Publishes the server refused on one connection, told to the appends waiting for their ack."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[_Waiter]] = {}
        self.refused: collections.deque[str] = collections.deque(maxlen=100)
        """The last subjects refused (as the server spells them: lower case)."""

    def report(self, subject: str) -> None:
        key = subject.lower()
        self.refused.append(key)
        for waiter in self._waiting.pop(key, []):
            waiter.refused = True
            if waiter.task is not None:
                waiter.task.cancel()
            elif waiter.future is not None and not waiter.future.done():
                waiter.future.set_result(None)

    def _add(self, key: str, waiter: _Waiter) -> None:
        self._waiting.setdefault(key, []).append(waiter)

    def _remove(self, key: str, waiter: _Waiter) -> None:
        waiters = self._waiting.get(key)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiting[key]

    async def refusal(self, subject: str, timeout: float) -> None:
        """Return once the server has refused `subject` on this connection; TimeoutError if not."""
        key = subject.lower()
        if key in self.refused:
            return
        waiter = _Waiter()
        waiter.future = asyncio.get_running_loop().create_future()
        self._add(key, waiter)
        try:
            await asyncio.wait_for(waiter.future, timeout)
        finally:
            self._remove(key, waiter)

    async def guard(self, user: str, subject: str, publish: Awaitable[T]) -> T:
        """Await `publish`; raise PermissionDenied as soon as the server refuses `subject`.

        The refusal cancels the waiting task (cheaper than a task per append); the cancellation is
        taken back and turned into PermissionDenied.
        """
        key = subject.lower()
        task = asyncio.current_task()
        waiter = _Waiter(task)
        self._add(key, waiter)
        try:
            return await publish
        except asyncio.CancelledError:
            if waiter.refused and task is not None and task.uncancel() == 0:
                raise PermissionDenied(user, subject) from None
            raise
        finally:
            self._remove(key, waiter)
