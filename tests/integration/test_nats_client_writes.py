"""The NATS client Hive uses leaves with one socket write what the tasks it woke add at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.msg import Msg

from shared.embedded import EmbeddedNats
from shared.natsclient import HiveNatsClient


async def test_a_command_added_by_a_task_woken_with_the_first_leaves_in_the_same_write(
    nats_server: EmbeddedNats,
) -> None:
    client = HiveNatsClient()
    await client.connect(nats_server.url)
    received: list[bytes] = []
    both = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        received.append(msg.data)
        if len(received) == 2:
            both.set()

    try:
        await client.subscribe("writes.*", cb=on_message)
        await client.flush()
        transport: Any = client._transport
        writes: list[int] = []
        real_writelines = transport.writelines

        def counting(commands: list[bytes]) -> None:
            writes.append(len(commands))
            real_writelines(commands)

        transport.writelines = counting

        async def answer_then_follow_up() -> None:
            await client.publish("writes.first", b"1")
            await asyncio.sleep(0)  # as a task woken once more does (the next append of a chain)
            await client.publish("writes.second", b"2")

        await answer_then_follow_up()
        await asyncio.wait_for(both.wait(), 5.0)
        assert received == [b"1", b"2"]
        assert writes == [2], "both commands in one write"
    finally:
        await client.close()


async def connected_with_queue_watch(server: EmbeddedNats) -> tuple[HiveNatsClient, list[int], Any]:
    """A client whose flusher wake-ups are counted (each command put on its queue)."""
    client = HiveNatsClient()
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    await client.connect(server.url, error_cb=on_error)
    await client.flush()
    queue: Any = client._flush_queue
    wakes: list[int] = []
    real_put_nowait = queue.put_nowait

    def counting(item: Any) -> None:
        wakes.append(1)
        real_put_nowait(item)

    queue.put_nowait = counting
    client.errors = errors  # type: ignore[attr-defined]
    return client, wakes, queue


async def test_a_publish_is_written_without_waking_the_flusher(nats_server: EmbeddedNats) -> None:
    client, wakes, _ = await connected_with_queue_watch(nats_server)
    try:
        sub = await client.subscribe("direct.*")
        await client.publish("direct.one", b"1")
        await client.publish("direct.two", b"2")
        assert [(await sub.next_msg(timeout=5.0)).data for _ in range(2)] == [b"1", b"2"]
        assert wakes == [], "written by a callback of the loop, not by the flusher task"
        flusher: Any = client._flusher_task
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await client.publish("direct.three", b"3")  # written all the same with no flusher left
        assert (await sub.next_msg(timeout=5.0)).data == b"3"
    finally:
        await client.close()


async def test_the_flusher_writes_when_the_socket_has_a_backlog(nats_server: EmbeddedNats) -> None:
    client, wakes, _ = await connected_with_queue_watch(nats_server)
    try:
        sub = await client.subscribe("backlog.*")
        await client.publish("backlog.zero", b"0")
        assert (await sub.next_msg(timeout=5.0)).data == b"0"
        assert wakes == [], "no backlog: written by a callback of the loop"
        transport: Any = client._transport
        socket_transport = transport._io_writer.transport
        real_size = socket_transport.get_write_buffer_size
        try:
            socket_transport.get_write_buffer_size = lambda: 1  # as if a write were waiting
            await client.publish("backlog.one", b"1")
            msg = await sub.next_msg(timeout=5.0)
        finally:
            socket_transport.get_write_buffer_size = real_size
        assert msg.data == b"1"
        assert wakes, "the flusher, which waits for the backlog to drain, wrote it"
    finally:
        await client.close()


async def test_a_failed_write_is_reported_and_the_connection_made_again(nats_server: EmbeddedNats) -> None:
    client, wakes, _ = await connected_with_queue_watch(nats_server)
    reconnected = asyncio.Event()
    client._reconnected_cb = _set_event(reconnected)
    try:
        transport: Any = client._transport
        real_writelines = transport.writelines

        def failing(commands: list[bytes]) -> None:
            transport.writelines = real_writelines  # once
            raise ConnectionResetError("written to a dead socket")

        transport.writelines = failing
        await client.publish("failing.one", b"1")
        await asyncio.wait_for(reconnected.wait(), 10.0)
        errors: list[Exception] = client.errors  # type: ignore[attr-defined]
        assert any(isinstance(exc, ConnectionResetError) for exc in errors)
        assert wakes == [], "reported from the direct write, not by the flusher"
        sub = await client.subscribe("failing.*")
        await client.publish("failing.two", b"2")
        assert (await sub.next_msg(timeout=5.0)).data == b"2"
    finally:
        await client.close()


def _set_event(event: asyncio.Event) -> Any:
    async def callback() -> None:
        event.set()

    return callback


async def test_flush_vouches_for_a_subscription_made_just_before_it(nats_server: EmbeddedNats) -> None:
    """The PING whose PONG ``flush`` waits for leaves behind the SUB still pending, never ahead
    of it: once ``flush`` returns the server knows the subscription, and a message another
    connection publishes at once reaches it (a service's health subscription, before it says
    it is ready)."""
    client = HiveNatsClient()
    other = HiveNatsClient()
    await client.connect(nats_server.url)
    await other.connect(nats_server.url)
    try:
        transport: Any = client._transport
        written: list[bytes] = []
        real_write, real_writelines = transport.write, transport.writelines

        def recording_write(data: bytes) -> None:
            written.append(bytes(data))
            real_write(data)

        def recording_writelines(commands: list[bytes]) -> None:
            written.extend(bytes(command) for command in commands)
            real_writelines(commands)

        transport.write, transport.writelines = recording_write, recording_writelines
        sub = await client.subscribe("ready.probe")
        await client.flush()
        stream = b"".join(written)
        assert b"SUB ready.probe" in stream and b"PING\r\n" in stream
        assert stream.index(b"SUB ready.probe") < stream.index(b"PING\r\n"), stream
        await other.publish("ready.probe", b"hello")
        await other.flush()
        msg = await sub.next_msg(timeout=5.0)
        assert msg.data == b"hello"
    finally:
        await other.close()
        await client.close()


async def test_a_flush_while_commands_are_pending_keeps_their_order_and_counts(
    nats_server: EmbeddedNats,
) -> None:
    """What was pending leaves with the PING, in order, and nothing is counted twice."""
    client = HiveNatsClient()
    await client.connect(nats_server.url)
    try:
        sub = await client.subscribe("order.*")
        await client.flush()
        for n in range(5):
            await client.publish(f"order.{n}", str(n).encode())
        await client.flush()
        assert client._pending == [] and client._pending_data_size == 0
        got = [(await sub.next_msg(timeout=5.0)).data for _ in range(5)]
        assert got == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        await client.close()


async def test_a_ping_whose_write_fails_leaves_what_was_pending_in_order(nats_server: EmbeddedNats) -> None:
    client = HiveNatsClient()
    await client.connect(nats_server.url)
    transport: Any = client._transport
    real_writelines = transport.writelines
    try:
        client._pending = [b"PUB a 1\r\nx\r\n", b"PUB b 1\r\ny\r\n"]
        client._pending_data_size = 24

        def broken(commands: list[bytes]) -> None:
            raise OSError("socket gone")

        transport.writelines = broken
        pongs = list(client._pongs)
        with pytest.raises(OSError, match="socket gone"):  # the caller's, as with nats-py's own PING
            await client._send_ping()
        assert client._pending == [b"PUB a 1\r\nx\r\n", b"PUB b 1\r\ny\r\n"]
        assert client._pending_data_size == 24
        assert client._pongs == pongs, "no PONG awaited for a PING that never left"
    finally:
        transport.writelines = real_writelines
        client._pending, client._pending_data_size = [], 0
        await client.close()
