"""Stopping a service's background loops so that they really stop.

On Python 3.11 ``asyncio.wait_for`` (which nats-py's requests use) can swallow a cancellation that
arrives just as the awaited future completes; a loop that then carries on is never cancelled again,
and whoever awaits it waits for ever (seen in recovery's tick loop, suspected in the balancer's).
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.logging import get_logger

log = get_logger("hive.background")

PATIENCE_S = 1.0
"""How long a cancelled loop gets before it is cancelled again."""


async def cancel_and_wait(task: asyncio.Task[Any] | None, *, patience_s: float = PATIENCE_S) -> None:
    """Cancel `task` and wait until it has ended, cancelling again each `patience_s` it goes on."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=patience_s)
        if not task.done():
            log.warning("background_task_ignored_cancellation", task=task.get_name())
    if not task.cancelled() and task.exception() is not None:
        log.error("background_task_failed", task=task.get_name(), error=repr(task.exception()))
