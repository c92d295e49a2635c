"""The bus and projections against a real nats-server: concurrency, de-duplication, snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import time
from pathlib import Path

import msgspec
import nats.errors
import nats.js.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.router.service import RouterService
from shared.bus import AppendResult, ConcurrencyConflict, DeadLetter, EventBus
from shared.domain.message_ids import assign_msg_id
from shared.domain.routing.view import ROUTER_VIEW
from shared.embedded import EmbeddedNats
from shared.events import AgentRegistered, TaskAssigned, TaskCompleted, TaskSubmitted
from shared.natsclient import stream_seq
from shared.projection import ProjectionRunner, rebuild
from shared.projection_spec import ProjectionSpec
from shared.pull import consume_forever
from shared.recorded import Recorded
from shared.settings import Settings
from shared.snapshots import SnapshotStore
from shared.subjects import (
    ALL_EVENTS,
    DLQ_STREAM,
    EVENTS_STREAM,
    aggregate_filter,
    dlq_subject,
    type_filters,
)
from tests.conftest import EventLog, running, watching_logs


async def test_a_stale_append_is_refused_and_a_fresh_one_accepted(bus: EventBus) -> None:
    first = await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
    with pytest.raises(ConcurrencyConflict):
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
    done = await bus.append(TaskCompleted(task_id="t", agent_id="a", attempt=1), expected=first.seq)
    assert done.seq > first.seq
    assert await bus.aggregate_version("task", "t") == done.seq
    assert await bus.aggregate_version("task", "nobody") == 0


async def test_the_same_message_id_is_stored_once(bus: EventBus) -> None:
    event = AgentRegistered(agent_id="a")
    one = await bus.append(event, expected=None)
    two = await bus.append(event, expected=None)
    assert two.duplicate and two.seq == one.seq
    events, last = await bus.read_aggregate("agent", "a")
    assert len(events) == 1 and last == one.seq


async def test_one_attempt_assigned_at_once_to_two_agents_is_stored_once(bus: EventBus) -> None:
    """Two router instances deciding the same attempt for different agents: the message id, one per
    attempt, lets the first through and the second is a duplicate (no forgery: same task, same
    notice), though the two are stored on different agents' subjects."""
    first = TaskAssigned(agent_id="a", task_id="t1", attempt=1)
    second = TaskAssigned(agent_id="b", task_id="t1", attempt=1)
    stored = await bus.append(first, expected=None, msg_id=assign_msg_id("t1", 1))
    again = await bus.append(second, expected=None, msg_id=assign_msg_id("t1", 1))
    assert again.duplicate and again.seq == stored.seq
    other = await bus.append(TaskAssigned(agent_id="b", task_id="t2", attempt=1), expected=None)
    assert other.seq == stored.seq + 1, "nothing stored between them"


async def test_appends_in_flight_at_once_each_get_their_own_answer(bus: EventBus) -> None:
    """Appends share one reply subscription: each gets the server's answer to its own message,
    refusals and duplicates included."""
    first = await bus.append(TaskSubmitted(task_id="stale", task_type="x"), expected=0)
    again = AgentRegistered(agent_id="twice")
    await bus.append(again, expected=None)
    events = [TaskSubmitted(task_id=f"t{index}", task_type="x") for index in range(60)]
    outcomes = await asyncio.gather(
        *(bus.append(event, expected=0) for event in events),
        bus.append(TaskSubmitted(task_id="stale", task_type="x"), expected=0),
        bus.append(again, expected=None),
        return_exceptions=True,
    )
    *stored, stale, duplicate = outcomes
    assert isinstance(stale, ConcurrencyConflict) and stale.expected == 0
    assert isinstance(duplicate, AppendResult) and duplicate.duplicate
    assert len({result.seq for result in stored if isinstance(result, AppendResult)}) == len(events)
    for event, result in zip(events, stored, strict=True):
        assert isinstance(result, AppendResult) and not result.duplicate and result.seq > first.seq
        assert await bus.subject_at(result.seq) == event.subject
    assert not bus._acks, "every answered append is forgotten"


async def test_stored_after_says_when_the_next_event_was_stored_or_that_none_is(bus: EventBus) -> None:
    """What a view that applied up to a sequence has not seen began at that time (server clock)."""
    first = await bus.append(TaskSubmitted(task_id="s1", task_type="x"), expected=0)
    before = time.time()
    second = await bus.append(TaskSubmitted(task_id="s2", task_type="x"), expected=0)
    after = time.time()
    assert await bus.stored_after(second.seq) is None
    stored = await bus.stored_after(first.seq)
    assert stored is not None and before - 0.5 <= stored <= after + 0.5  # one host, one clock
    earlier = await bus.stored_after(first.seq - 1)
    assert earlier is not None and earlier <= stored  # the log is in the order it was stored


async def test_a_direct_get_the_server_refuses_is_an_error_not_an_absence(bus: EventBus) -> None:
    """A 404 is "no such message" (None); any other answer without the header asked for (here the
    server's error for a request naming no sequence) raises, naming what was asked."""
    await bus.append(TaskSubmitted(task_id="d1", task_type="x"), expected=0)
    with pytest.raises(RuntimeError, match="direct get of sequence 0 failed"):
        await bus.subject_at(0)


async def test_a_publish_no_stream_stores_or_nobody_answers_fails_as_with_nats_py(bus: EventBus) -> None:
    """The errors of nats-py's ``JetStreamContext.publish``: no stream (NoStreamResponseError, which
    an agent waits on while Hive starts), no answer in time (TimeoutError); nothing is left waiting."""
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await bus._request_ack("nowhere.stored", b"{}", {}, 5.0)
    silent = await bus.nc.subscribe("limbo.silent")  # receives, never answers
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await bus._request_ack("limbo.silent", b"{}", {}, 0.2)
    finally:
        await silent.unsubscribe()
    assert not bus._acks


async def test_reading_a_range_returns_the_events_in_order(bus: EventBus) -> None:
    for index in range(10):
        await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)
    seen = [item.seq async for item in bus.read(start_seq=3, stop_seq=7)]
    assert seen == [3, 4, 5, 6, 7]


COUNTS = ProjectionSpec(
    name="counts",
    state_type=dict[str, int],
    initial=dict,
    apply=lambda state, recorded: {
        **state,
        recorded.event.type_name(): state.get(recorded.event.type_name(), 0) + 1,
    },
    reads=(aggregate_filter("agent"), *type_filters("task", TaskCompleted.event_type())),
)
"""Reads agents whole and task completions only."""


async def test_a_projection_reading_some_events_gets_only_those_and_still_knows_where_it_stands(
    bus: EventBus,
) -> None:
    runner = ProjectionRunner(bus, COUNTS)
    await runner.start()
    try:
        await bus.append(AgentRegistered(agent_id="a"), expected=0)
        submitted = await bus.append(TaskSubmitted(task_id="t1", task_type="x"), expected=0)
        assigned = await bus.append(TaskAssigned(agent_id="a", task_id="t1", attempt=1), expected=None)
        completed = await bus.append(
            TaskCompleted(task_id="t1", agent_id="a", attempt=1), expected=submitted.seq
        )
        unread = await bus.append(TaskSubmitted(task_id="t2", task_type="x"), expected=0)
        await runner.wait_for(unread.seq, timeout=5)  # one it does not read: the server says so
        assert runner.seq >= unread.seq
        assert runner.state == {"agent.registered": 1, "agent.task_assigned": 1, "task.completed": 1}
        assert runner.delivered == 3, "the submissions were never handed over"
        assert runner.version("agent", "a") == assigned.seq, "an aggregate read whole: known"
        assert runner.version("task", "t1") is None, "one read in part: only the server knows"
        assert runner.seen_version("task", "t1") == completed.seq
        assert await runner.expected_version("task", "t2") == unread.seq
        # The server's version of an aggregate it reads in part vouches for a decision only when
        # the view has reached it: else the decision may have missed something, and is refused.
        runner.seq = completed.seq  # as if it had not seen the end of the log yet
        with pytest.raises(ConcurrencyConflict):
            await runner.expected_version("task", "t2")
        later = await bus.append(TaskSubmitted(task_id="t3", task_type="x"), expected=0)
        assert await runner.catch_up(timeout=5) == later.seq and runner.seq == later.seq
        rebuilt, _ = await rebuild(bus, COUNTS)
        assert rebuilt == runner.state, "a rebuild folds what the projection reads, no more"
    finally:
        await runner.stop(snapshot=False)


async def test_a_projection_waits_for_a_sequence_and_ignores_redelivery(bus: EventBus) -> None:
    runner = ProjectionRunner(bus, ROUTER_VIEW)
    await runner.start()
    try:
        result = await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await runner.wait_for(result.seq, timeout=5)
        assert "t" in runner.state.fleet.tasks
        before = msgspec.msgpack.encode(runner.state)
        event = TaskSubmitted(task_id="t", task_type="y")
        runner.apply_message(result.seq, event.subject, msgspec.json.encode(event))
        assert msgspec.msgpack.encode(runner.state) == before
        with pytest.raises(asyncio.TimeoutError):
            await runner.wait_for(result.seq + 100, timeout=0.2)
    finally:
        await runner.stop(snapshot=False)


async def test_a_restarted_service_rebuilds_from_snapshot_plus_log_equal_to_a_fresh_rebuild(
    settings: Settings, bus: EventBus
) -> None:
    for index in range(30):
        await bus.append(TaskSubmitted(task_id=f"early{index}", task_type="x"), expected=0)
    async with running(RouterService, settings) as router:
        await router.view.catch_up()
    store = await SnapshotStore(f"{settings.snapshot_dir}/router.sqlite").open()
    saved = await store.load(ROUTER_VIEW.name, ROUTER_VIEW.schema)
    await store.close()
    assert saved is not None and saved[0] >= 30
    await bus.append(AgentRegistered(agent_id="late", capabilities={"x": 1.0}, capacity=3), expected=None)
    for index in range(5):
        await bus.append(TaskSubmitted(task_id=f"late{index}", task_type="x"), expected=0)
    async with running(RouterService, settings) as router:
        assert router.view.loaded_from_snapshot == saved[0]
        await router.view.catch_up()
    # Stopped: its view no longer moves while the log is read again from the start.
    fresh, fresh_seq = await rebuild(bus, ROUTER_VIEW, stop_seq=router.view.seq)
    assert fresh_seq == router.view.seq > saved[0]
    assert msgspec.msgpack.encode(router.view.state) == msgspec.msgpack.encode(fresh)


async def test_garbage_on_an_event_subject_goes_to_the_dead_letter_queue_and_the_service_goes_on(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async with running(RouterService, settings) as router:
        await bus.js.publish("hive.evt.task.bad.submitted", b"\x00not json at all")
        await bus.js.publish(
            "hive.evt.task.worse.submitted", b'{"type": "task.submitted", "task_id": "worse"}'
        )
        letters: list[DeadLetter] = []
        sub = await bus.js.subscribe(dlq_subject("router"), stream=DLQ_STREAM)
        while len(letters) < 2:
            msg = await sub.next_msg(timeout=10)
            letters.append(msgspec.json.decode(msg.data, type=DeadLetter))
        reasons = {letter.subject: letter.reason for letter in letters}
        assert "not a JSON object" in reasons["hive.evt.task.bad.submitted"]
        assert "task_type" in reasons["hive.evt.task.worse.submitted"]
        assert letters[0].data.endswith("not json at all")
        await bus.append(AgentRegistered(agent_id="a", capabilities={"x": 1.0}), expected=None)
        await bus.append(TaskSubmitted(task_id="good", task_type="x"), expected=0)
        await event_log.wait_for(
            lambda evs: any(isinstance(e, TaskAssigned) and e.task_id == "good" for e in evs)
        )
        await router.view.catch_up()
        assert router.view.state.fleet.tasks["good"].status == "assigned"


def test_recorded_is_what_projections_apply() -> None:
    event = TaskSubmitted(task_id="t", task_type="x")
    assert Recorded(1, event.subject, event).event is event


async def test_losing_the_server_is_a_warning_and_closing_on_purpose_is_not(
    settings: Settings, nats_server: EmbeddedNats
) -> None:
    with watching_logs("nats_disconnected") as watch:
        closed = await EventBus.connect(settings.nats_url, "closed-on-purpose")
        await closed.close()
        lost = await EventBus.connect(settings.nats_url, "lost-its-server")
        await asyncio.to_thread(nats_server.stop)
        await asyncio.wait_for(watch.arrived.wait(), timeout=5)
        await lost.close()
    assert [entry.get("service") for entry in watch.named("nats_disconnected")] == ["lost-its-server"]


async def test_consuming_goes_on_with_a_new_consumer_when_the_one_in_use_is_deleted(bus: EventBus) -> None:
    opened: list[str] = []
    lost: list[Exception] = []
    seen: list[int] = []
    arrived = asyncio.Event()
    stopping = asyncio.Event()

    async def open_consumer() -> str:
        name = f"test-reader-{len(opened)}"
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

    async def handle(msg: Msg) -> None:
        seen.append(stream_seq(msg))
        arrived.set()

    consuming = asyncio.create_task(
        consume_forever(bus.nc, EVENTS_STREAM, open_consumer, handle, stopping, on_lost=lost.append)
    )
    try:
        first = await bus.append(TaskSubmitted(task_id="t1", task_type="x"), expected=0)
        await asyncio.wait_for(arrived.wait(), 5)
        await bus.js.delete_consumer(EVENTS_STREAM, opened[0])
        arrived.clear()
        second = await bus.append(TaskSubmitted(task_id="t2", task_type="x"), expected=0)
        while second.seq not in seen:
            await asyncio.wait_for(arrived.wait(), 10)
            arrived.clear()
    finally:
        stopping.set()
        await asyncio.wait_for(consuming, 10)
    assert seen == [first.seq, second.seq]  # nothing skipped, nothing twice
    assert len(opened) >= 2 and lost


OPEN_STORE = """
import asyncio, sys
from shared.snapshots import SnapshotStore

async def main() -> None:
    store = await SnapshotStore(sys.argv[1]).open()
    await store.close()

asyncio.run(main())
"""


async def test_instances_of_one_service_open_their_shared_snapshot_file_at_once(tmp_path: Path) -> None:
    """Instances of one service share its snapshot file; starting together, each puts it in WAL mode
    while others open it (without retrying, about one start in fifteen died of "database is locked")."""
    for round_ in range(4):
        path = str(tmp_path / f"round{round_}" / "router.sqlite")
        starts = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", OPEN_STORE, path, stderr=asyncio.subprocess.PIPE
            )
            for _ in range(6)
        ]
        for start in starts:
            _out, err = await start.communicate()
            assert start.returncode == 0, err.decode()[-500:]


async def test_snapshots_are_private_to_their_owner_and_older_ones_are_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "snapshots"
    folder.mkdir(mode=0o755)
    older = folder / "old.sqlite"
    older.write_bytes(b"")
    older.chmod(0o644)
    previous = os.umask(0o022)
    try:
        stores = [await SnapshotStore(str(folder / name)).open() for name in ("old.sqlite", "new.sqlite")]
        for store in stores:
            await store.save("view", "schema", 1, b"payloads and results")
        files = sorted(folder.iterdir())  # while open: the -wal and -shm files too
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
        for store in stores:
            await store.close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {"old.sqlite", "new.sqlite", "new.sqlite-wal", "new.sqlite-shm"} <= set(modes)
    assert modes == {name: 0o600 for name in modes}


class Tally(msgspec.Struct):
    applied: list[str] = []


def tally_apply(state: Tally, recorded: Recorded) -> Tally:
    event = recorded.event
    if isinstance(event, TaskSubmitted) and event.task_id == "breaks-apply":
        raise KeyError("no such thing")
    if isinstance(event, TaskSubmitted):
        state.applied.append(event.task_id)
    return state


async def test_an_event_a_projection_cannot_apply_is_dead_lettered_once_and_the_projection_goes_on(
    bus: EventBus,
) -> None:
    spec = ProjectionSpec(name="tally", state_type=Tally, initial=Tally, apply=tally_apply)
    letters = await bus.js.subscribe(dlq_subject("test"), stream=DLQ_STREAM)
    runners = [ProjectionRunner(bus, spec), ProjectionRunner(bus, spec)]  # two instances of a service
    for runner in runners:
        await runner.start()
    try:
        await bus.append(TaskSubmitted(task_id="before", task_type="x"), expected=0)
        broken = await bus.append(TaskSubmitted(task_id="breaks-apply", task_type="x"), expected=0)
        await bus.js.publish("hive.evt.task.junk.submitted", b"{not json")
        last = await bus.append(TaskSubmitted(task_id="after", task_type="x"), expected=0)
        for runner in runners:
            await runner.wait_for(last.seq)
            assert runner.state.applied == ["before", "after"]
        first = msgspec.json.decode((await letters.next_msg(timeout=10)).data, type=DeadLetter)
        second = msgspec.json.decode((await letters.next_msg(timeout=10)).data, type=DeadLetter)
    finally:
        for runner in runners:
            await runner.stop(snapshot=False)
    assert first.stream_seq == broken.seq and "could not apply it: KeyError" in first.reason
    assert second.subject == "hive.evt.task.junk.submitted" and "not a JSON object" in second.reason
    stored = await bus.js.stream_info(DLQ_STREAM)
    assert stored.state.messages == 2, "each runner read both; each is kept once"


async def test_reading_in_bursts_takes_everything_in_order_and_goes_on_when_the_consumer_is_deleted(
    bus: EventBus,
) -> None:
    opened: list[str] = []
    lost: list[Exception] = []
    seen: list[int] = []
    arrived = asyncio.Event()
    stopping = asyncio.Event()
    paced = asyncio.Event()

    async def open_consumer() -> str:
        name = f"burst-reader-{len(opened)}"
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

    async def handle(msg: Msg) -> None:
        seen.append(stream_seq(msg))
        arrived.set()

    async def pace() -> None:  # the next burst when the test says so
        await paced.wait()
        paced.clear()

    # A stored message whose headers look like a server status is an event like any other.
    await bus.nc.publish("hive.evt.task.forged.submitted", b"{}", headers={"Status": "404"})
    for index in range(5):
        await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)
    last = await bus.last_sequence()
    consuming = asyncio.create_task(
        consume_forever(
            bus.nc, EVENTS_STREAM, open_consumer, handle, stopping, on_lost=lost.append, batch=4, pace=pace
        )
    )
    try:
        while len(seen) < last:  # more than one burst's worth, read without waiting for the pace
            await asyncio.wait_for(arrived.wait(), 5)
            arrived.clear()
        assert seen == list(range(1, last + 1))
        await bus.js.delete_consumer(EVENTS_STREAM, opened[0])
        later = await bus.append(TaskSubmitted(task_id="later", task_type="x"), expected=0)
        while later.seq not in seen:
            paced.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), 0.5)
            arrived.clear()
    finally:
        stopping.set()
        await asyncio.wait_for(consuming, 10)
    assert seen == list(range(1, later.seq + 1))  # nothing skipped, nothing twice
    assert len(opened) >= 2 and lost


async def test_a_projection_read_in_bursts_answers_whoever_waits_without_waiting_for_the_linger(
    bus: EventBus,
) -> None:
    runner = ProjectionRunner(bus, ROUTER_VIEW, linger_s=30.0)
    await runner.start()
    try:
        await runner.catch_up(timeout=5)
        first = await bus.append(TaskSubmitted(task_id="t1", task_type="x"), expected=0)
        await runner.wait_for(first.seq, timeout=5)  # far sooner than the linger
        assert "t1" in runner.state.fleet.tasks
        applied = asyncio.Event()
        runner.add_listener(lambda recorded: applied.set())
        async with runner.urgent():  # e.g. an HTTP request waiting for an answer a listener sees
            await bus.append(TaskSubmitted(task_id="t2", task_type="x"), expected=0)
            await asyncio.wait_for(applied.wait(), 5)
        assert "t2" in runner.state.fleet.tasks
    finally:
        await runner.stop(snapshot=False)
