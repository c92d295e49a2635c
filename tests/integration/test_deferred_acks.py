"""Acknowledgements nobody waits on leave with the connection's next write, not in one of their own,
and an append's reply is handed over in the read loop: against a real nats-server."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from services.router.service import RouterService
from shared import natsclient
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.embedded import EmbeddedNats
from shared.events import TaskCompleted, TaskSubmitted
from shared.natsclient import DEFERRED_WRITE_S, HiveNatsClient, ack_soon, progress_soon
from shared.recorded import Recorded, decode_recorded
from shared.settings import Settings
from shared.subjects import EVENTS_STREAM, events_of_type
from shared.work import Ticket, WorkConsumer, WorkSpec
from tests.conftest import EventLog, running


def count_writes(client: HiveNatsClient) -> list[list[bytes]]:
    """Every socket write of `client` from now on, as the commands it carried."""
    transport: Any = client._transport
    writes: list[list[bytes]] = []
    real_writelines = transport.writelines

    def counting(commands: list[bytes]) -> None:
        writes.append(list(commands))
        real_writelines(commands)

    transport.writelines = counting
    return writes


async def connected(server: EmbeddedNats) -> tuple[HiveNatsClient, list[bytes], asyncio.Event]:
    client = HiveNatsClient()
    await client.connect(server.url)
    received: list[bytes] = []
    arrived = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        received.append(msg.data)
        arrived.set()

    await client.subscribe("soon.*", cb=on_message)
    await client.flush()
    return client, received, arrived


async def test_a_message_published_soon_leaves_with_the_next_write(nats_server: EmbeddedNats) -> None:
    client, received, arrived = await connected(nats_server)
    try:
        writes = count_writes(client)
        client.publish_soon("soon.ack", b"a")
        for _ in range(5):
            await asyncio.sleep(0)  # turns of the loop: the flusher is not woken for it
        assert writes == []
        await client.publish("soon.append", b"n")
        while len(received) < 2:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5.0)
        assert received == [b"a", b"n"], "in the order published"
        assert len(writes) == 1 and len(writes[0]) == 2, "both in one write"
        assert client.stats["out_msgs"] == 2
    finally:
        await client.close()


async def test_a_message_published_soon_leaves_alone_when_nothing_else_is_written(
    nats_server: EmbeddedNats,
) -> None:
    client, received, arrived = await connected(nats_server)
    try:
        writes = count_writes(client)
        loop = asyncio.get_running_loop()
        published = loop.time()
        client.publish_soon("soon.ack", b"a")
        client.publish_soon("soon.ack", b"b")  # one timer for both
        await asyncio.wait_for(arrived.wait(), 5.0)
        while len(received) < 2:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5.0)
        assert received == [b"a", b"b"]
        assert loop.time() - published >= DEFERRED_WRITE_S * 0.9
        assert len(writes) == 1 and len(writes[0]) == 2
    finally:
        await client.close()


async def test_what_is_published_soon_goes_out_on_close(nats_server: EmbeddedNats) -> None:
    client, _, _ = await connected(nats_server)
    # Hive's client, not nats-py's: nats-py writes flush's PING ahead of the SUB still pending, so
    # its PONG may come before the server knows the subscription, which then misses the message
    # (about one run in fifty on a busy machine).
    listener = HiveNatsClient()
    await listener.connect(nats_server.url)
    try:
        sub = await listener.subscribe("soon.*")
        await listener.flush()
        client.publish_soon("soon.last", b"z")
        await client.close()
        msg = await sub.next_msg(timeout=5.0)
        assert msg.data == b"z"
    finally:
        await listener.close()


async def test_publishing_soon_refuses_what_publish_refuses(nats_server: EmbeddedNats) -> None:
    client, _, _ = await connected(nats_server)
    try:
        with pytest.raises(nats.errors.BadSubjectError):
            client.publish_soon("")
        with pytest.raises(nats.errors.MaxPayloadError):
            client.publish_soon("soon.big", b"x" * (client.max_payload + 1))
        assert client.stats["out_msgs"] == 0 and client._pending_data_size == 0
    finally:
        await client.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        client.publish_soon("soon.closed")


async def delivered(bus: EventBus, durable: str) -> Msg:
    """One TaskSubmitted delivered (not acknowledged) by a durable pull consumer of its own."""
    await bus.append(TaskSubmitted(task_id="t1", task_type="x"), expected=0)
    await bus.js.add_consumer(
        EVENTS_STREAM,
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            filter_subject=events_of_type("task", TaskSubmitted.event_type()),
            ack_wait=30.0,
        ),
    )
    sub = await bus.js.pull_subscribe_bind(durable, EVENTS_STREAM)
    [msg] = await sub.fetch(1, timeout=5.0)
    return msg


async def ack_pending(bus: EventBus, durable: str) -> int:
    for _ in range(500):  # the server applies an acknowledgement on its own time
        info = await bus.js.consumer_info(EVENTS_STREAM, durable)
        if not info.num_ack_pending:
            break
        await asyncio.sleep(0.01)
    return int(info.num_ack_pending)


async def test_a_delivery_acknowledged_soon_is_acknowledged_once(bus: EventBus) -> None:
    msg = await delivered(bus, "soon")
    assert ack_soon(msg) is True
    with pytest.raises(nats.errors.MsgAlreadyAckdError):
        ack_soon(msg)
    assert await ack_pending(bus, "soon") == 0


async def test_a_delivery_told_in_progress_soon_sends_nats_pys_bytes_with_its_next_write(
    bus: EventBus,
) -> None:
    msg = await delivered(bus, "progress")
    client = bus.nc
    assert isinstance(client, HiveNatsClient)
    await client.flush()
    writes = count_writes(client)
    await msg.in_progress()  # nats-py's own way, for the bytes
    await client.flush()
    theirs = [command for write in writes for command in write if b"+WPI" in command]
    writes.clear()
    assert progress_soon(msg) is True
    for _ in range(5):
        await asyncio.sleep(0)  # turns of the loop: no write of its own
    assert writes == []
    await client.flush()
    ours = [command for write in writes for command in write if b"+WPI" in command]
    assert len(theirs) == 1 and ours == theirs
    assert not msg._ackd and ack_soon(msg) is True  # still in hand: acknowledged once, later
    assert await ack_pending(bus, "progress") == 0
    with pytest.raises(nats.errors.NotJSMessageError):
        progress_soon(Msg(_client=client, subject="x", reply="", data=b""))


async def test_acknowledging_soon_on_another_client_does_nothing(nats_server: EmbeddedNats) -> None:
    plain = await nats.connect(nats_server.url)
    other = EventBus(plain, "plain")
    try:
        await other.ensure_streams()
        msg = await delivered(other, "plain")
        assert ack_soon(msg) is False
        assert progress_soon(msg) is False
        assert not msg._ackd
        ticket = Ticket(msg, decode_recorded(1, msg.subject, msg.data))  # type: ignore[arg-type]
        assert ticket.ack_soon() is False and not ticket.settled
        await ticket.ack()
        assert await ack_pending(other, "plain") == 0
    finally:
        await plain.close()


async def test_a_ticket_acknowledged_soon_is_settled_once(bus: EventBus) -> None:
    msg = await delivered(bus, "ticket")
    settled: list[Ticket] = []
    ticket = Ticket(msg, decode_recorded(1, msg.subject, msg.data), settled.append)  # type: ignore[arg-type]
    assert ticket.ack_soon() is True
    assert ticket.ack_soon() is True  # settled already: nothing happens
    await ticket.retry()
    assert settled == [ticket] and ticket.settled
    assert await ack_pending(bus, "ticket") == 0
    info = await bus.js.consumer_info(EVENTS_STREAM, "ticket")
    assert info.num_redelivered == 0


async def test_an_append_is_answered_in_the_read_loop(settings: Settings, bus: EventBus) -> None:
    client = bus.nc
    assert isinstance(client, HiveNatsClient)
    first = await bus.append(TaskSubmitted(task_id="a1", task_type="x"), expected=0)
    answering = [sid for sid, handler in client.direct_handlers.items() if handler == bus._answer]
    assert len(answering) == 1, "the replies' subscription hands each over directly"
    results = await asyncio.gather(
        *(bus.append(TaskSubmitted(task_id=f"b{index}", task_type="x"), expected=0) for index in range(20))
    )
    assert sorted(result.seq for result in results) == list(range(first.seq + 1, first.seq + 21))


async def test_the_router_acknowledges_each_claim_with_its_next_append(
    settings: Settings, bus: EventBus, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(natsclient, "DEFERRED_WRITE_S", 30.0)  # only another write takes them out

    async def done(context: TaskContext) -> TaskOutcome:
        return TaskOutcome(result="done", quality=0.9)

    agent = Agent("only", done, capabilities={"review": 0.9}, capacity=1)
    async with running(RouterService, settings) as router:
        client = router.bus.nc
        assert isinstance(client, HiveNatsClient)
        writes = count_writes(client)
        await agent.start(bus)
        submitted: set[int] = set()
        for index in range(3):  # one at a time: each claim is settled before the next arrives
            stored = await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="review"), expected=0)
            submitted.add(stored.seq)
            await event_log.wait_for(
                lambda events, n=index + 1: sum(isinstance(e, TaskCompleted) for e in events) >= n
            )

        def acks_a_claim(command: bytes) -> bool:  # PUB $JS.ACK.<stream>.<consumer>.<n>.<seq>...
            tokens = command.split(b" ")[1].split(b".")
            return command.startswith(b"PUB $JS.ACK.") and int(tokens[5]) in submitted

        claim_acks = [write for write in writes if any(acks_a_claim(command) for command in write)]
        assert len(claim_acks) == 2, "the first two claims' acknowledgements, the last one still waits"
        for write in claim_acks:
            assert any(command.startswith(b"HPUB hive.evt.") for command in write), write
        await agent.stop()
    assert await ack_pending(bus, "router") == 0, "stopping wrote the last one"


async def test_a_handled_work_event_is_acknowledged_with_the_next_write(
    settings: Settings, bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(natsclient, "DEFERRED_WRITE_S", 30.0)  # only another write takes it out
    handled: list[int] = []
    arrived = asyncio.Event()

    async def handle(recorded: Recorded) -> None:
        handled.append(recorded.seq)
        arrived.set()

    worker = await EventBus.connect(settings.nats_url, "work")
    spec = WorkSpec(
        durable="handled", filters=[events_of_type("task", TaskSubmitted.event_type())], handler=handle
    )
    consumer = WorkConsumer(worker, spec)
    await consumer.start()
    try:
        client = worker.nc
        assert isinstance(client, HiveNatsClient)
        writes = count_writes(client)
        stored = await bus.append(TaskSubmitted(task_id="w1", task_type="x"), expected=0)
        await asyncio.wait_for(arrived.wait(), 5.0)
        for _ in range(5):
            await asyncio.sleep(0)  # turns of the loop: the flusher is not woken for it
        assert handled == [stored.seq] and spec.handled == 1
        assert not any(command.startswith(b"PUB $JS.ACK.") for write in writes for command in write)
        await client.publish("elsewhere", b"")
        assert await ack_pending(bus, "handled") == 0
        [write] = [write for write in writes if any(c.startswith(b"PUB $JS.ACK.") for c in write)]
        assert any(command.startswith(b"PUB elsewhere ") for command in write)
    finally:
        await consumer.stop()
        await worker.close()
