"""``Deadline`` behaves as ``asyncio.timeout`` around a handler, case by case: what the handler's
end becomes (its value, its error, a timeout, a cancellation), whether the deadline passed, and the
task's count of cancellations afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from shared.agent.deadline import Deadline

Body = Callable[[], Awaitable[str]]
SHORT = 0.01


async def returns() -> str:
    return "value"


async def raises() -> str:
    raise ValueError("bad")


async def raises_its_own_timeout() -> str:
    raise TimeoutError("its own")


async def overruns() -> str:
    await asyncio.sleep(10)
    return "late"


async def overruns_and_swallows() -> str:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        return "swallowed"
    return "late"


async def overruns_and_fails() -> str:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise ValueError("failed while stopping") from None
    return "late"


async def overruns_and_is_cancelled_too() -> str:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # another cancellation arrives (the agent stopping) as the deadline's lands
        await asyncio.sleep(0)
    return "late"


async def cancelled_by_someone_else() -> str:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().call_soon(task.cancel)
    await asyncio.sleep(10)
    return "late"


Outcome = tuple[str, bool, int]


async def with_timeout(body: Body) -> Outcome:
    task = asyncio.current_task()
    assert task is not None
    expired = False
    try:
        async with asyncio.timeout(SHORT) as limit:
            value = await body()
        expired = limit.expired()
        outcome = f"value {value}"
    except asyncio.CancelledError:
        outcome = "cancelled"
        expired = limit.expired()
    except Exception as exc:
        expired = limit.expired()
        outcome = "timeout" if isinstance(exc, TimeoutError) and expired else f"error {exc!r}"
    return outcome, expired, task.cancelling()


async def with_deadline(body: Body) -> Outcome:
    task = asyncio.current_task()
    assert task is not None
    limit = Deadline(SHORT)
    try:
        value = await body()
    except BaseException as exc:
        if limit.close(exc):
            return "timeout", limit.expired, task.cancelling()
        if isinstance(exc, asyncio.CancelledError):
            return "cancelled", limit.expired, task.cancelling()
        return f"error {exc!r}", limit.expired, task.cancelling()
    limit.close(None)
    return f"value {value}", limit.expired, task.cancelling()


@pytest.mark.parametrize(
    "body",
    [
        returns,
        raises,
        raises_its_own_timeout,
        overruns,
        overruns_and_swallows,
        overruns_and_fails,
        overruns_and_is_cancelled_too,
        cancelled_by_someone_else,
    ],
)
async def test_a_deadline_ends_a_handler_as_asyncio_timeout_does(body: Body) -> None:
    old = await asyncio.create_task(with_timeout(body))
    new = await asyncio.create_task(with_deadline(body))
    assert new == old


async def test_a_deadline_that_did_not_pass_leaves_no_timer_behind() -> None:
    loop = asyncio.get_running_loop()

    async def run() -> None:
        limit = Deadline(SHORT)
        limit.close(None)
        await asyncio.sleep(SHORT * 3)  # past the deadline: nothing cancels this task
        assert not limit.expired

    await loop.create_task(run())


def test_a_deadline_needs_a_running_task() -> None:
    with pytest.raises(RuntimeError):
        Deadline(1.0)
