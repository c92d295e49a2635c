"""The router's projection takes each stored message as bytes as soon as it is read, and ends where
the message objects led.

The router reads its projection one message at a time (no linger: it must see a release at once).
``ProjectionRunner`` hands ``follow_raw`` a handler of (sequence, subject, payload), which Hive's
client feeds straight from the wire (``shared.pull.consume_stored``): no message object, queue or
task switch per message. Runners reading the same log, poison included, some of it stored while
they read, the old way (every message an object, its sequence read off it) and this way, end with
the same snapshot bytes, counters and dead letters, each dead letter written before the next
message is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

import shared.projection
from services.cli.bench.history import History, history_chunks, write_straight
from services.recovery.view import RECOVERY_VIEW
from services.router.reads import Decodings
from shared.bus import EVENTS_STREAM, EventBus
from shared.domain.routing.view import ROUTER_VIEW
from shared.events import TaskSubmitted
from shared.natsclient import stream_seq
from shared.projection import ProjectionRunner
from shared.projection_spec import ProjectionSpec
from shared.pull import consume_forever, consume_stored
from shared.settings import Settings
from shared.subjects import ALL_EVENTS
from tests.integration.test_read_path import POISON

EMPTY_HEADERS_SUBJECT = "hive.evt.task.bare.submitted"
EMPTY_HEADERS = b'{"type": "task.submitted", "id": "bare-1", "ts": 1.0, "task_id": "bare", "task_type": "x"}'
"""Stored with an empty header block (``NATS/1.0`` and nothing else): Hive's client builds a message
object for it (``deliver_now`` declines it), which must still be applied in its turn."""


async def publish_with_empty_headers(bus: EventBus) -> int:
    """Store EMPTY_HEADERS with a header block of no header (nats-py sends none for an empty dict)."""
    header = b"NATS/1.0\r\n\r\n"
    inbox = bus.nc.new_inbox()
    answered: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def answer(msg: Msg) -> None:
        if not answered.done():
            answered.set_result(msg)

    sub = await bus.nc.subscribe(inbox, cb=answer)
    try:
        command = f"HPUB {EMPTY_HEADERS_SUBJECT} {inbox} {len(header)} {len(header) + len(EMPTY_HEADERS)}\r\n"
        await bus.nc._send_command(command.encode() + header + EMPTY_HEADERS + b"\r\n")
        await bus.nc.flush()
        ack = await asyncio.wait_for(answered, 5)
    finally:
        await sub.unsubscribe()
    return int(json.loads(ack.data)["seq"])


class MessageObjects(ProjectionRunner[Any]):
    """Reads as before ``consume_stored``: every stored message built and handed over as an object."""

    async def _pump(self) -> None:
        await self.bus.follow_raw(
            self._on_msg,
            self._stopping,
            subject_filter=self.filters or ALL_EVENTS,
            start_seq=self.seq + 1,
            label="old lane",
        )


Letters = list[tuple[str, bytes, str, int | None, int]]


async def _reader(
    settings: Settings, runner_type: type[ProjectionRunner[Any]], spec: ProjectionSpec[Any]
) -> tuple[EventBus, ProjectionRunner[Any], Letters, list[str]]:
    bus = await EventBus.connect(settings.nats_url, "routerlane")
    letters: Letters = []
    built: list[str] = []
    build = bus.nc._build_message

    def counting(sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> Any:
        built.append(subject.decode())
        return build(sid, subject, reply, data, headers)

    runner = runner_type(bus, spec, linger_s=0.0)

    async def dead_letter(subject: str, data: bytes, reason: str, stream_seq: int | None = None) -> None:
        # A slow dead letter: what is read meanwhile waits its turn behind it.
        for _ in range(3):
            await asyncio.sleep(0)
        letters.append((subject, data, reason, stream_seq, runner.seq))

    bus.nc._build_message = counting  # type: ignore[method-assign]
    bus.dead_letter = dead_letter  # type: ignore[method-assign]
    if spec is ROUTER_VIEW:
        runner.decode = Decodings().for_view  # as the router reads
    await runner.start()
    return bus, runner, letters, built


@pytest.mark.parametrize("spec", [ROUTER_VIEW, RECOVERY_VIEW], ids=lambda spec: spec.name)
async def test_a_view_read_as_bytes_one_at_a_time_ends_as_one_read_as_message_objects(
    bus: EventBus, settings: Settings, spec: ProjectionSpec[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each read through its filters from the start: the lane, not a catch-up in bursts, is tested.
    monkeypatch.setattr(shared.projection, "CATCH_UP_ALONE_AFTER", 10**9)
    chunks = list(history_chunks(History(tasks=300)))
    await write_straight(bus, chunks[:5])
    for subject, data, headers in POISON:
        await bus.js.publish(subject, data, headers=headers)
    bare = await publish_with_empty_headers(bus)
    await write_straight(bus, chunks[5:10])
    readers = [await _reader(settings, kind, spec) for kind in (MessageObjects, ProjectionRunner)]
    try:
        last = await write_straight(bus, chunks[10:])  # read as they are stored, too
        for subject, data, headers in POISON:
            await bus.js.publish(subject, data, headers=headers)
        last = await bus.last_sequence()
        # First the last message the view reads (a poison), then the end of the log, which the
        # router's view does not read (a progress report): a runner that waits for it asks the
        # server and takes it as reached (``_reach``), which is no message applied. Read through
        # its filters, a view of a log whose agents' notices share a subject (version 3) may take
        # longer than that wait to reach its last poison, and would be said to reach the end while
        # that poison's dead letter is still being written.
        read = max([await bus.last_sequence_of(f) for f in spec.reads] if spec.reads else [last])
        await asyncio.gather(*(runner.wait_for(read, timeout=60) for _, runner, _, _ in readers))
        await asyncio.gather(*(runner.wait_for(last, timeout=60) for _, runner, _, _ in readers))
        (_, old, old_letters, old_built), (_, new, new_letters, new_built) = readers
        assert new.encode_snapshot() == old.encode_snapshot()
        assert (new.delivered, new.ignored, new.seq) == (old.delivered, old.ignored, old.seq)
        assert new.delivered == last if spec.reads is None else new.delivered > 900
        assert new_letters == old_letters and len(new_letters) >= 2 * (len(POISON) - 1)
        for _subject, _data, _reason, seq, applied_to in new_letters:
            assert applied_to == seq  # nothing after it applied before its dead letter was written
        assert sum(1 for subject in old_built if subject.startswith("hive.evt.")) == old.delivered
        built_stored = [subject for subject in new_built if subject.startswith("hive.evt.")]
        assert built_stored == [EMPTY_HEADERS_SUBJECT]
        assert bare < last
    finally:
        for reader_bus, runner, _, _ in readers:
            await runner.stop(snapshot=False)
            await reader_bus.close()


async def _open(bus: EventBus, opened: list[str], seen: list[int]) -> str:
    name = f"lane-reader-{len(opened)}"
    await bus.js.add_consumer(
        EVENTS_STREAM,
        ConsumerConfig(
            name=name,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=(seen[-1] + 1) if seen else 1,
            filter_subject=ALL_EVENTS,
            mem_storage=True,
        ),
    )
    opened.append(name)
    return name


async def test_reading_one_at_a_time_as_bytes_takes_all_in_order_and_goes_on_when_the_consumer_is_deleted(
    bus: EventBus,
) -> None:
    """Pull requests renewed past half a batch, a lost consumer opened again where it left off, a
    handler that raises logged and passed, and no message object built for a stored message."""
    opened: list[str] = []
    lost: list[Exception] = []
    seen: list[int] = []
    objects: list[int] = []
    arrived = asyncio.Event()
    stopping = asyncio.Event()

    async def handle(msg: Msg) -> None:
        objects.append(stream_seq(msg))

    def handle_stored(seq: int, subject: str, data: bytes) -> None:
        if seen and seq <= seen[-1]:
            return
        seen.append(seq)
        arrived.set()
        if seq == 3:
            raise RuntimeError("a handler's bug")

    async def open_consumer() -> str:
        return await _open(bus, opened, seen)

    await bus.nc.publish("hive.evt.task.forged.submitted", b"{}", headers={"Status": "404"})
    for index in range(9):
        await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)
    last = await bus.last_sequence()
    consuming = asyncio.create_task(
        consume_forever(
            bus.nc,
            EVENTS_STREAM,
            open_consumer,
            handle,
            stopping,
            on_lost=lost.append,
            batch=4,
            handle_stored=handle_stored,
        )
    )
    try:
        while len(seen) < last:  # more than two batches' worth
            await asyncio.wait_for(arrived.wait(), 5)
            arrived.clear()
        assert seen == list(range(1, last + 1))
        await bus.js.delete_consumer(EVENTS_STREAM, opened[0])
        later = await bus.append(TaskSubmitted(task_id="later", task_type="x"), expected=0)
        while later.seq not in seen:
            await asyncio.wait_for(arrived.wait(), 10)
            arrived.clear()
    finally:
        stopping.set()
        await asyncio.wait_for(consuming, 10)
    assert seen == list(range(1, later.seq + 1))  # nothing skipped, nothing twice
    assert objects == []
    assert len(opened) >= 2 and lost


async def test_what_a_stored_message_leaves_to_await_holds_the_next_ones_and_is_finished_on_stop(
    bus: EventBus,
) -> None:
    opened: list[str] = []
    seen: list[int] = []
    stopping = asyncio.Event()
    held = asyncio.Event()
    release = asyncio.Event()
    finished: list[int] = []

    async def hold(seq: int) -> None:
        held.set()
        await release.wait()
        finished.append(seq)

    def handle_stored(seq: int, subject: str, data: bytes) -> Awaitable[None] | None:
        seen.append(seq)
        return hold(seq) if seq == 2 else None

    async def unused(msg: Msg) -> None:
        raise AssertionError("no message object")

    for index in range(5):
        await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)
    name = await _open(bus, opened, [])
    consuming = asyncio.create_task(
        consume_stored(bus.nc, EVENTS_STREAM, name, unused, handle_stored, stopping)
    )
    try:
        await asyncio.wait_for(held.wait(), 5)
        await bus.append(TaskSubmitted(task_id="meanwhile", task_type="x"), expected=0)
        await bus.nc.flush()
        assert seen == [1, 2]  # the rest wait behind the one in hand
        stopping.set()
        release.set()
        await asyncio.wait_for(consuming, 10)
    finally:
        stopping.set()
        release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(consuming, 10)
    assert finished == [2] and seen == [1, 2]  # finished on stop; those waiting dropped


async def test_on_another_client_each_stored_message_comes_as_an_object(
    bus: EventBus, settings: Settings
) -> None:
    plain = await nats.connect(settings.nats_url)
    stopping = asyncio.Event()
    objects: list[int] = []
    arrived = asyncio.Event()

    async def handle(msg: Msg) -> None:
        objects.append(stream_seq(msg))
        arrived.set()

    def handle_stored(seq: int, subject: str, data: bytes) -> None:
        raise AssertionError("nats-py's own client hands over objects")

    try:
        await bus.append(TaskSubmitted(task_id="t0", task_type="x"), expected=0)
        name = await _open(bus, [], [])
        consuming = asyncio.create_task(
            consume_stored(plain, EVENTS_STREAM, name, handle, handle_stored, stopping)
        )
        await asyncio.wait_for(arrived.wait(), 5)
        stopping.set()
        await asyncio.wait_for(consuming, 10)
    finally:
        stopping.set()
        await plain.close()
    assert objects == [1]
