"""Stored messages' headers are read when asked for, and never taken for the server's status."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from shared.bus import EventBus
from shared.embedded import EmbeddedNats
from shared.events import TaskSubmitted, encode_event
from shared.natsclient import HiveNatsClient, LazyHeaders, StatusHeaders, inline_status, read_headers_lazily
from shared.pull import consume
from shared.recorded import Recorded


@pytest.fixture
async def client(nats_server: EmbeddedNats) -> AsyncIterator[HiveNatsClient]:
    """Hive's client, with a stream ``HDRS`` (``hdrs.>``) and its pull consumer ``reader``."""
    client = HiveNatsClient()
    await client.connect(nats_server.url)
    try:
        js = client.jetstream()
        await js.add_stream(StreamConfig(name="HDRS", subjects=["hdrs.>"]))
        await js.add_consumer("HDRS", ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT))
        yield client
    finally:
        await client.close()


async def test_a_stored_message_with_a_status_header_is_handled_not_taken_for_a_heartbeat(
    client: HiveNatsClient,
) -> None:
    js = client.jetstream()
    forged = {"Status": "100", "Nats-Pending-Messages": "5", "Description": "Idle Heartbeat"}
    await js.publish("hdrs.forged", b"forged", headers=forged)
    await js.publish("hdrs.plain", b"plain", headers={"Nats-Msg-Id": "plain-1"})
    await js.publish("hdrs.bare", b"bare")
    handled: list[Msg] = []
    stopping = asyncio.Event()

    async def handle(msg: Msg) -> None:
        handled.append(msg)
        await msg.ack()
        if len(handled) == 3:
            stopping.set()

    reader = asyncio.create_task(consume(client, "HDRS", "reader", handle, stopping, heartbeat_s=0.2))
    try:
        await asyncio.wait_for(stopping.wait(), 5.0)
    finally:
        stopping.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader, 5.0)
    assert [msg.data for msg in handled] == [b"forged", b"plain", b"bare"]
    forged_msg, plain_msg, bare_msg = handled
    assert isinstance(forged_msg.headers, LazyHeaders)
    assert inline_status(forged_msg.headers) is None
    assert dict(forged_msg.headers) == forged
    assert plain_msg.headers == {"Nats-Msg-Id": "plain-1"}
    assert bare_msg.headers is None


async def test_a_status_on_a_lazily_read_subscription_is_parsed_at_once(client: HiveNatsClient) -> None:
    answer: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        if not answer.done():
            answer.set_result(msg)

    sub = await client.subscribe("answers.empty", cb=on_message)
    read_headers_lazily(client, sub)
    body = b'{"batch": 1, "no_wait": true}'
    await client.publish("$JS.API.CONSUMER.MSG.NEXT.HDRS.reader", body, reply="answers.empty")
    status = await asyncio.wait_for(answer, 5.0)
    assert isinstance(status.headers, StatusHeaders), "a status is parsed on arrival"
    assert inline_status(status.headers) == "404"


async def test_an_event_stored_with_a_status_header_is_read_back_as_an_event(bus: EventBus) -> None:
    """Direct gets and log reads tell the server's status from a header the publisher chose."""
    before = TaskSubmitted(task_id="forged-1", task_type="review")
    await bus.append(before, expected=0)
    forged = TaskSubmitted(task_id="forged-1", task_type="review")
    ack = await bus.js.publish(forged.subject, encode_event(forged), headers={"Status": "404"})
    events, version = await bus.read_aggregate("task", "forged-1")
    assert [item.event.id for item in events] == [before.id, forged.id]
    assert version == ack.seq
    assert await bus.aggregate_version("task", "forged-1") == ack.seq
    assert await bus.subject_at(ack.seq) == forged.subject
    last = await bus.last_on(forged.subject)
    assert isinstance(last, Recorded) and last.event.id == forged.id
