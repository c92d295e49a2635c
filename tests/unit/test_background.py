"""Background loops stop even when one cancellation is swallowed on the way."""

from __future__ import annotations

import asyncio

from shared.background import cancel_and_wait


async def test_a_loop_that_swallows_a_cancellation_is_cancelled_again_until_it_ends() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what a racing asyncio.wait_for may do on Python 3.11

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, patience_s=0.05), timeout=5)
    assert task.cancelled() and swallowed == 1


async def test_nothing_to_stop_and_a_task_that_already_failed_are_fine() -> None:
    await cancel_and_wait(None)

    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken())
    await asyncio.wait({task})
    await cancel_and_wait(task)  # the failure is logged and retrieved, not raised
    assert isinstance(task.exception(), RuntimeError)
