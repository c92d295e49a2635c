"""Hive's client reads a real server's stream with its own parser: every message arrives intact."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from shared.embedded import EmbeddedNats
from shared.natsclient import HiveNatsClient, LazyHeaders
from shared.pull import consume
from shared.wire import WireParser

SIZES = [0, 1, 300, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 200_000, 900_000]


def payload(size: int, index: int) -> bytes:
    """`size` bytes that contain the protocol's own words and line ends."""
    pattern = b"\r\nMSG a 1 5\r\nHMSG x 2 3 4\r\nPING\r\n%d" % index
    return (pattern * (size // len(pattern) + 1))[:size]


@pytest.fixture
async def client(nats_server: EmbeddedNats) -> AsyncIterator[HiveNatsClient]:
    client = HiveNatsClient()
    await client.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


async def test_the_client_reads_with_hive_s_parser(client: HiveNatsClient) -> None:
    assert isinstance(client._ps, WireParser)


async def test_plain_messages_with_and_without_headers_and_replies_arrive_intact(
    client: HiveNatsClient,
) -> None:
    sent: list[tuple[bytes, str, dict[str, str] | None]] = []
    for index, size in enumerate(SIZES):
        for headers in (None, {"Nats-Msg-Id": f"m-{index}", "X-Line": "a\tb", "X-Value": "ünïcode"}):
            for reply in ("", f"answer.{index}"):
                sent.append((payload(size, index), reply, headers))
    received: list[Msg] = []
    done = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        received.append(msg)
        if len(received) == len(sent):
            done.set()

    await client.subscribe("wire.>", cb=on_message, pending_bytes_limit=64 * 1024 * 1024)
    for data, reply, headers in sent:
        await client.publish("wire.test", data, reply=reply, headers=headers)
    await asyncio.wait_for(done.wait(), 10.0)
    expected_headers = [h for _, _, h in sent]
    assert [(m.data, m.reply) for m in received] == [(data, reply) for data, reply, _ in sent]
    assert [m.headers for m in received] == expected_headers
    assert client._ps.buf == b"", "nothing left over once every message is read"


async def test_stored_events_with_hive_s_headers_arrive_intact_through_a_pull_reader(
    client: HiveNatsClient,
) -> None:
    js = client.jetstream()
    await js.add_stream(StreamConfig(name="WIRE", subjects=["wired.>"], max_msg_size=1_000_000))
    await js.add_consumer("WIRE", ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT))
    sent: list[tuple[bytes, dict[str, str]]] = []
    for index, size in enumerate(SIZES * 3):
        headers = {
            "Nats-Msg-Id": f"event-{index}",
            "Nats-Expected-Last-Subject-Sequence": "0",
            "Nats-Expected-Last-Subject-Sequence-Subject": f"wired.{index}",
        }
        await js.publish(f"wired.{index}", payload(size, index), headers=headers)
        sent.append((payload(size, index), headers))
    handled: list[Msg] = []
    stopping = asyncio.Event()

    async def handle(msg: Msg) -> None:
        handled.append(msg)
        await msg.ack()
        if len(handled) == len(sent):
            stopping.set()

    reader = asyncio.create_task(
        consume(client, "WIRE", "reader", handle, stopping, batch=8, heartbeat_s=0.5)
    )
    try:
        await asyncio.wait_for(stopping.wait(), 15.0)
    finally:
        stopping.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader, 10.0)
    assert [msg.data for msg in handled] == [data for data, _ in sent]
    assert all(isinstance(msg.headers, LazyHeaders) for msg in handled)
    assert [dict(msg.headers or {}) for msg in handled] == [headers for _, headers in sent]
    assert [msg.metadata.sequence.stream for msg in handled] == list(range(1, len(sent) + 1))
