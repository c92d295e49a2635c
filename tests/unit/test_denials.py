"""Denials: a refused publish ends its append at once, and nothing else is mistaken for one."""

from __future__ import annotations

import asyncio
import re

import pytest

from shared.denials import Denials, PermissionDenied


class Publish:
    """A publish whose acknowledgement never comes; `waiting` is set once it waits for it."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()

    async def __call__(self) -> int:
        self.waiting.set()
        await asyncio.Event().wait()
        return 0


async def test_a_refusal_of_the_subject_ends_the_waiting_append_with_permission_denied() -> None:
    denials, publish = Denials(), Publish()
    append = asyncio.create_task(denials.guard("agent-a", "hive.evt.task.t.requeued", publish()))
    await publish.waiting.wait()
    denials.report("hive.evt.task.t.other")
    assert not append.done()
    denials.report("HIVE.EVT.TASK.T.REQUEUED")  # the server's error is in lower case: matched either way
    message = re.escape("'agent-a' may not publish to 'hive.evt.task.t.requeued'")
    with pytest.raises(PermissionDenied, match=message):
        await append
    assert list(denials.refused) == ["hive.evt.task.t.other", "hive.evt.task.t.requeued"]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    denials, publish = Denials(), Publish()
    append = asyncio.create_task(denials.guard("router", "hive.evt.task.t.queued", publish()))
    await publish.waiting.wait()
    append.cancel()
    with pytest.raises(asyncio.CancelledError):
        await append
    denials.report("hive.evt.task.t.queued")  # nobody waits any more: nothing to cancel


async def test_an_acknowledged_append_returns_its_result_and_leaves_nothing_behind() -> None:
    denials = Denials()

    async def acknowledged() -> int:
        return 7

    assert await denials.guard("router", "hive.evt.task.t.queued", acknowledged()) == 7
    denials.report("hive.evt.task.t.queued")  # a later refusal of the subject touches no finished append
    with pytest.raises(TimeoutError):
        await denials.refusal("hive.evt.task.t.failed", timeout=0.01)
    await denials.refusal("hive.evt.task.t.queued", timeout=0.01)
