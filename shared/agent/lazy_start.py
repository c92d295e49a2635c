"""The lazy ``task.started`` of one attempt (``shared/domain/starts.py`` says why and the bounds).

Work that ends within ``START_REPORT_AFTER_S`` of its assignment appends no start: its completion
(or failure) implies it. Work still running then, or reporting progress first, appends it once,
before anything else it reports. One timer handle per attempt, no task until the timer fires: the
common short task costs a ``call_later`` and its cancel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class StartReport:
    """``task.started`` of one attempt, appended at most once.

    Args:
        append: Appends the start; returns False if fencing refused it (the attempt is superseded).
        reported: The start was appended already (an old assignment: reported before running).
    """

    def __init__(self, append: Callable[[], Awaitable[bool]], *, reported: bool = False) -> None:
        self._append = append
        self._timer: asyncio.TimerHandle | None = None
        self._report: asyncio.Future[bool] | None = None
        if reported:
            self._report = asyncio.get_running_loop().create_future()
            self._report.set_result(True)
        self.finishing = False
        """The handler returned: a refused start no longer needs to stop it (its report will say)."""

    def after(self, delay: float, on_refused: Callable[[], None]) -> None:
        """Report the start in `delay` s unless the attempt ended or reported it before; call
        `on_refused` if fencing then refuses it (the work must stop)."""
        if self._report is not None:
            return

        def fire() -> None:
            self._timer = None
            report = self.now()

            def done(future: asyncio.Future[bool]) -> None:
                if not future.cancelled() and future.exception() is None and not future.result():
                    on_refused()

            report.add_done_callback(done)

        self._timer = asyncio.get_running_loop().call_later(delay, fire)

    def now(self) -> asyncio.Future[bool]:
        """Report the start now, if not yet under way: what a progress report waits for first."""
        self.cancel()
        if self._report is None:
            self._report = asyncio.ensure_future(self._append())
        return self._report

    async def settle(self) -> bool:
        """Before the attempt's last report: a start not yet begun is never sent (the outcome
        implies it); one under way is awaited, so it lands first. False: it was refused."""
        self.cancel()
        if self._report is None:
            return True
        return await asyncio.shield(self._report)

    def never_sent(self) -> bool:
        """``settle`` with no coroutine when there is nothing to await: drop a start still waiting
        for its time; True if it was never sent (the outcome implies it), False if one is under way
        (then ``settle``)."""
        self.cancel()
        return self._report is None

    def cancel(self) -> None:
        """Drop a start still waiting for its time (the attempt ended, or was taken away)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def reported(self) -> bool:
        """Whether the start was appended (or is being appended)."""
        return self._report is not None
