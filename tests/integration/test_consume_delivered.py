"""A consumer that acknowledges, read as bytes in the read loop (``shared.pull.consume_delivered``, an
agent's inbox): each delivery is handed over with its reply subject and no message object; what
waits behind a delivery in hand when the reader stops is handed back at once (not after
``ack_wait``); a handler that raises is logged and the next delivery goes on; on another client the
deliveries come as message objects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.bus import EventBus
from shared.events import TaskSubmitted
from shared.natsclient import ack_tokens
from shared.pull import consume_delivered
from shared.settings import Settings
from shared.subjects import ALL_EVENTS, EVENTS_STREAM

ACK_WAIT_S = 30.0
"""Longer than any test waits: a delivery that comes again sooner was handed back."""


async def acked_consumer(bus: EventBus, name: str) -> str:
    await bus.js.add_consumer(
        EVENTS_STREAM,
        ConsumerConfig(
            name=name,
            durable_name=name,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=ALL_EVENTS,
            mem_storage=True,
        ),
    )
    return name


async def submit(bus: EventBus, count: int) -> None:
    for index in range(count):
        await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)


async def unused(msg: Msg) -> None:
    raise AssertionError("no message object on Hive's client")


async def test_deliveries_come_as_bytes_with_their_reply_subject_and_are_acknowledged_by_the_handler(
    bus: EventBus,
) -> None:
    name = await acked_consumer(bus, "delivered-acked")
    await submit(bus, 5)
    stopping = asyncio.Event()
    seen: list[tuple[int, int]] = []
    done = asyncio.Event()

    def handle(reply: str, subject: str, data: bytes) -> None:
        tokens = ack_tokens(reply)
        seen.append((int(tokens[5]), int(tokens[6])))  # stream sequence, delivery number
        assert subject.startswith("hive.evt.task.") and data.startswith(b"{")
        bus.nc.publish_soon(reply)  # type: ignore[attr-defined]
        if len(seen) == 5:
            done.set()
        if len(seen) == 2:
            raise RuntimeError("a handler's failure is logged, the next delivery goes on")

    reading = asyncio.create_task(consume_delivered(bus.nc, EVENTS_STREAM, name, unused, handle, stopping))
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        stopping.set()
        await asyncio.wait_for(reading, 10)
    await bus.nc.flush()
    info = await bus.js.consumer_info(EVENTS_STREAM, name)
    assert seen == [(seq, seq) for seq in range(1, 6)]
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_deliveries_waiting_behind_one_in_hand_are_handed_back_at_once_when_the_reader_stops(
    bus: EventBus,
) -> None:
    """The one in hand is finished (and acknowledged by its handler); those read meanwhile were never
    handed over: the server gets a negative acknowledgement for each and delivers them again at once
    to the next reader, as ``consume`` does on stop."""
    name = await acked_consumer(bus, "delivered-back")
    await submit(bus, 4)
    stopping = asyncio.Event()
    held = asyncio.Event()
    release = asyncio.Event()
    first: list[int] = []

    async def hold(reply: str) -> None:
        held.set()
        await release.wait()
        bus.nc.publish_soon(reply)  # type: ignore[attr-defined]

    def handle(reply: str, subject: str, data: bytes) -> Awaitable[None] | None:
        first.append(int(ack_tokens(reply)[5]))
        return hold(reply)  # the first holds the rest

    reading = asyncio.create_task(consume_delivered(bus.nc, EVENTS_STREAM, name, unused, handle, stopping))
    try:
        await asyncio.wait_for(held.wait(), 5)
        await bus.nc.flush()  # the other three were read meanwhile, and wait
        stopping.set()
        release.set()
        await asyncio.wait_for(reading, 10)
    finally:
        stopping.set()
        release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(reading, 10)
    assert first == [1]

    again: list[tuple[int, int]] = []
    all_back = asyncio.Event()
    stopping = asyncio.Event()

    def take(reply: str, subject: str, data: bytes) -> None:
        tokens = ack_tokens(reply)
        again.append((int(tokens[5]), int(tokens[4])))  # stream sequence, times delivered
        bus.nc.publish_soon(reply)  # type: ignore[attr-defined]
        if len(again) == 3:
            all_back.set()

    reading = asyncio.create_task(consume_delivered(bus.nc, EVENTS_STREAM, name, unused, take, stopping))
    try:
        await asyncio.wait_for(all_back.wait(), 10)  # well before ACK_WAIT_S
    finally:
        stopping.set()
        await asyncio.wait_for(reading, 10)
    assert sorted(again) == [(2, 2), (3, 2), (4, 2)]  # delivered again, in any order


async def test_on_another_client_each_delivery_comes_as_an_object(bus: EventBus, settings: Settings) -> None:
    name = await acked_consumer(bus, "delivered-plain")
    await submit(bus, 1)
    plain = await nats.connect(settings.nats_url)
    stopping = asyncio.Event()
    objects: list[str] = []
    arrived = asyncio.Event()

    async def handle(msg: Msg) -> None:
        objects.append(msg.subject)
        await msg.ack()
        arrived.set()

    def handle_delivered(reply: str, subject: str, data: bytes) -> None:
        raise AssertionError("nats-py's own client hands over objects")

    try:
        reading = asyncio.create_task(
            consume_delivered(plain, EVENTS_STREAM, name, handle, handle_delivered, stopping)
        )
        await asyncio.wait_for(arrived.wait(), 5)
        stopping.set()
        await asyncio.wait_for(reading, 10)
    finally:
        stopping.set()
        await plain.close()
    assert objects == ["hive.evt.task.t0.submitted"]


@pytest.fixture(autouse=True)
def _quiet_handler_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL")
