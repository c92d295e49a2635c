"""The NATS client Hive uses leaves with one socket write what the tasks it woke add at once."""

from __future__ import annotations

import asyncio
from typing import Any

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
