"""A handler's deadline: what ``asyncio.timeout`` does around it, for less.

Every attempt runs its handler under the task's timeout. ``asyncio.timeout`` builds a ``Timeout``
object and enters and leaves it through two coroutines around one timer handle: 5-7% of the agents'
process under ``hive bench assign`` (py-spy), for a deadline that almost never passes. ``Deadline``
keeps the timer handle alone and mirrors Python 3.11's ``Timeout`` exactly: when the deadline
passes, the task is cancelled; when the handler then ends with that cancellation and nobody else
cancelled the task meanwhile, it is a timeout; whatever else happens, the cancellation the deadline
made is taken back (``uncancel``), so the task's own count of cancellations stays right.
"""

from __future__ import annotations

import asyncio


class Deadline:
    """Cancel the current task in `delay` seconds unless ``close`` comes first."""

    __slots__ = ("_cancelling", "_handle", "_task", "expired")

    def __init__(self, delay: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.expired = False
        """The deadline passed (the task was cancelled for it)."""
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._handle = None
        self.expired = True
        self._task.cancel()

    def close(self, exc: BaseException | None) -> bool:
        """The handler ended (with `exc`, or None): stop the timer; True when `exc` is the
        cancellation the deadline made and nothing else (``asyncio.timeout`` raises TimeoutError)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self.expired:
            return False
        return self._task.uncancel() <= self._cancelling and type(exc) is asyncio.CancelledError


__all__ = ["Deadline"]
