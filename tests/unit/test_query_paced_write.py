"""A large write of the query model goes in slices, the core given away between them, and stores
exactly what one write at once stored; a read waiting for the file, catching up and stopping are
not kept waiting by the pauses."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.query.model import QueryModel
from services.gateway.query.store import QueryStore
from services.gateway.query.view import Rows, rows_of
from services.gateway.view import GATEWAY_VIEW
from shared.events import (
    AgentRegistered,
    Event,
    TaskAssigned,
    TaskCompleted,
    TaskStarted,
    TaskSubmitted,
    encode_event,
)
from shared.projection import ProjectionRunner


def _events(tasks: int, ended: int) -> list[Event]:
    """Two agents, `tasks` tasks submitted and assigned, the first `ended` of them completed."""
    events: list[Event] = [
        AgentRegistered(agent_id="a0", capabilities={"bench": 0.9}, capacity=10_000),
        AgentRegistered(agent_id="a1", capabilities={"bench": 0.8}, capacity=10_000),
    ]
    for index in range(tasks):
        task_id, agent_id = f"t{index}", f"a{index % 2}"
        events.append(TaskSubmitted(task_id=task_id, task_type="bench"))
        events.append(TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1, score=0.5))
        if index < ended:
            events.append(TaskStarted(task_id=task_id, agent_id=agent_id, attempt=1))
            events.append(TaskCompleted(task_id=task_id, agent_id=agent_id, attempt=1, quality=0.9))
    return events


def _following(tmp_path: Path, **kwargs: Any) -> tuple[ProjectionRunner[Any], QueryModel]:
    """A model following a projection fed by hand (no NATS), as once caught up."""
    projection = ProjectionRunner(None, GATEWAY_VIEW)  # type: ignore[arg-type]  # fed by hand
    model = QueryModel(None, projection, home=str(tmp_path), **kwargs)  # type: ignore[arg-type]
    model.attached = True
    projection.add_listener(model._on_event)
    return projection, model


def _feed(projection: ProjectionRunner[Any], events: list[Event], first_seq: int = 1) -> int:
    seq = first_seq - 1
    for seq, event in enumerate(events, start=first_seq):
        assert projection.apply_message(seq, event.subject, encode_event(event)) is None
    return seq


def _rows(tasks: int, ended: int) -> Rows:
    projection = ProjectionRunner(None, GATEWAY_VIEW)  # type: ignore[arg-type]  # fed by hand
    model = QueryModel(None, projection, home="/nonexistent")  # type: ignore[arg-type]  # no file
    model.attached = True
    projection.add_listener(model._on_event)
    seq = _feed(projection, _events(tasks, ended))
    return rows_of(model.changes, seq, model.specs)


def _content(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        return {
            table: sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in ("meta", "tasks", "attempts", "agents", "workflows")
        }


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tasks=st.integers(0, 60), ended=st.integers(0, 60), slice_rows=st.integers(1, 70), earlier=st.booleans()
)
def test_a_write_in_slices_stores_what_one_write_at_once_stored(
    tmp_path_factory: pytest.TempPathFactory, tasks: int, ended: int, slice_rows: int, earlier: bool
) -> None:
    """Same file, byte for byte in every table, whatever the slice size; `between` is awaited once
    between two slices, never before the first nor after the last."""
    folder = tmp_path_factory.mktemp("paced")
    first, rows = _rows(tasks // 2, ended // 2), _rows(tasks, min(ended, tasks))

    async def write(path: Path, **options: Any) -> int:
        pauses = 0

        async def between() -> None:
            nonlocal pauses
            pauses += 1

        store = await QueryStore(path).open()
        try:
            if earlier:  # rows of the same tasks at an earlier step: the slices update them
                await store.write(first)
            await store.write(rows, between=between, **options)
        finally:
            await store.close()
        return pauses

    async def both() -> tuple[int, int]:
        return (
            await write(folder / "at_once.sqlite", slice_rows=1_000_000),
            await write(folder / "sliced.sqlite", slice_rows=slice_rows),
        )

    at_once, sliced = asyncio.run(both())
    assert _content(folder / "sliced.sqlite") == _content(folder / "at_once.sqlite")
    assert at_once == max(0, sum(1 for table in _tables(rows) if table) - 1)
    assert sliced == max(0, sum(-(-len(table) // slice_rows) for table in _tables(rows)) - 1)


def _tables(rows: Rows) -> list[list[Any]]:
    return [rows.tasks, rows.assignments, rows.agents, rows.workflows]


async def test_a_write_that_fails_between_two_slices_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    store = await QueryStore(tmp_path / "query.sqlite").open()
    try:
        await store.write(_rows(3, 0))
        before = _content(tmp_path / "query.sqlite")

        async def failing() -> None:
            raise OSError("disk gone")

        with pytest.raises(OSError, match="disk gone"):
            await store.write(_rows(40, 20), slice_rows=10, between=failing)
        assert _content(tmp_path / "query.sqlite") == before
        await store.write(_rows(40, 20), slice_rows=10)  # the connection is usable again
        assert int((await store.meta())["seq"]) == _rows(40, 20).seq
    finally:
        await store.close()


async def test_a_write_nobody_waits_for_gives_the_core_away_between_its_slices(tmp_path: Path) -> None:
    """Following, no read waiting: a pause between every two slices (the old write went at once)."""
    projection, model = _following(tmp_path)
    model._store = await QueryStore(tmp_path / "query.sqlite").open()
    model.write_pause_s = 0.02
    try:
        seq = _feed(projection, _events(600, 300))
        slices = -(-600 // 250) + -(-600 // 250) + 1  # tasks, their decisions, the two agents
        started = time.perf_counter()
        await model._flush()
        took = time.perf_counter() - started
        assert model.flushed == seq
        assert took >= (slices - 1) * model.write_pause_s * 0.9, f"{took:.3f} s: written at once"
    finally:
        await model.store.close()


async def test_a_read_that_comes_during_a_paced_write_is_not_kept_waiting_by_the_pauses(
    tmp_path: Path,
) -> None:
    """The read kicks the writer: the pause ends, the rest of the write goes at once, and the next
    write (what the read waits for) follows at once."""
    projection, model = _following(tmp_path, unread_flush_interval_s=3600.0, flush_events=1_000)
    model._store = await QueryStore(tmp_path / "query.sqlite").open()
    model.write_pause_s = 0.5  # 1,200 tasks: 10 pauses, 5 s, were they all kept
    writer = asyncio.create_task(model._flush_forever())
    try:
        seq = _feed(projection, _events(1_200, 0))  # the buffer filled: the writer is kicked
        await asyncio.sleep(0.1)
        assert model.flushed == 0, "the write is under way, paced"
        late = _feed(projection, [TaskSubmitted(task_id="late", task_type="bench")], seq + 1)
        started = time.perf_counter()
        await model.flushed_to(late, timeout=3.0)
        assert time.perf_counter() - started < 1.5
        task = await model.store.task("late")
        assert task is not None and model.flushed >= late
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await model.store.close()


async def test_catching_up_and_stopping_write_at_once(tmp_path: Path) -> None:
    _projection, model = _following(tmp_path)
    model.write_pause_s = 30.0
    model.attached = False  # catching up: its batches are written at once
    await asyncio.wait_for(model._between_slices(), 1.0)
    model.attached = True
    model._stopping = True  # ``stop``'s last write
    await asyncio.wait_for(model._between_slices(), 1.0)
    model._stopping = False
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(model._between_slices(), 0.05)
    model._kick.set()  # a read waits (or the buffer filled): no more pauses in this write
    await asyncio.wait_for(model._between_slices(), 1.0)


async def test_a_paced_write_cancelled_midway_is_written_whole_by_the_next(tmp_path: Path) -> None:
    """``stop`` cancels the writer in a pause: the transaction rolls back, the buffer is kept, and the
    last write stores everything."""
    projection, model = _following(tmp_path)
    model._store = await QueryStore(tmp_path / "query.sqlite").open()
    model.write_pause_s = 30.0
    try:
        seq = _feed(projection, _events(600, 100))
        writer = asyncio.create_task(model._flush())
        await asyncio.sleep(0.2)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        assert model.flushed == 0
        model._stopping = True
        await asyncio.wait_for(model._flush(), 10.0)
        assert model.flushed == seq and int((await model.store.meta())["seq"]) == seq
        assert (await model.store.counts())["tasks"] == 600
    finally:
        await model.store.close()


def _more_events(tasks: int, ended: int, more: int) -> list[Event]:
    """What comes while a write of `_events(tasks, ended)` goes: the running tasks end, new tasks
    come and are assigned, and an agent registers again (its row changes)."""
    events: list[Event] = []
    for index in range(ended, tasks):
        task_id, agent_id = f"t{index}", f"a{index % 2}"
        events.append(TaskStarted(task_id=task_id, agent_id=agent_id, attempt=1))
        events.append(TaskCompleted(task_id=task_id, agent_id=agent_id, attempt=1, quality=0.7))
    for index in range(tasks, tasks + more):
        task_id, agent_id = f"t{index}", f"a{index % 2}"
        events.append(TaskSubmitted(task_id=task_id, task_type="bench"))
        events.append(TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1, score=0.5))
    events.insert(len(events) // 2, AgentRegistered(agent_id="a1", capabilities={"bench": 0.5}, capacity=9))
    return events


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tasks=st.integers(1, 60),
    ended=st.integers(0, 60),
    more=st.integers(0, 60),
    slice_rows=st.integers(1, 40),
    per_pause=st.integers(1, 12),
)
def test_a_write_encoded_in_slices_while_events_come_stores_the_state_at_its_sequence(
    tmp_path_factory: pytest.TempPathFactory,
    tasks: int,
    ended: int,
    more: int,
    slice_rows: int,
    per_pause: int,
) -> None:
    """Events apply between the slices (the objects change under the write): the file holds, with
    the sequence it says, exactly what one write at once of the state at that sequence holds."""
    folder = tmp_path_factory.mktemp("moving")
    ended = min(ended, tasks)
    first, later = _events(tasks, ended), _more_events(tasks, ended, more)

    async def sliced() -> int:
        projection, model = _following(folder)
        model._store = await QueryStore(folder / "sliced.sqlite").open()
        model.slice_rows = slice_rows
        seq = _feed(projection, first)
        coming = iter(enumerate(later, start=seq + 1))

        async def between() -> None:  # a few events apply before each slice is encoded
            for _ in range(per_pause):
                found = next(coming, None)
                if found is not None:
                    assert (
                        projection.apply_message(found[0], found[1].subject, encode_event(found[1])) is None
                    )

        model._between_slices = between  # type: ignore[method-assign]
        try:
            await model._flush()
            assert int((await model.store.meta())["seq"]) == model.flushed
            return model.flushed
        finally:
            await model.store.close()

    async def at_once(seq: int) -> None:
        projection = ProjectionRunner(None, GATEWAY_VIEW)  # type: ignore[arg-type]  # fed by hand
        model = QueryModel(None, projection, home=str(folder))  # type: ignore[arg-type]
        model.attached = True
        projection.add_listener(model._on_event)
        _feed(projection, (first + later)[:seq])
        store = await QueryStore(folder / "at_once.sqlite").open()
        try:
            await store.write(rows_of(model.changes, seq, model.specs))
        finally:
            await store.close()

    async def both() -> int:
        seq = await sliced()
        await at_once(seq)
        return seq

    seq = asyncio.run(both())
    assert seq >= len(first)
    assert _content(folder / "sliced.sqlite") == _content(folder / "at_once.sqlite")


async def test_a_write_in_parts_cancelled_between_two_parts_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """``stop`` cancels the writer in a pause: the transaction rolls back, and the buffers it took
    (what it was writing and what came meanwhile) are kept for the next write, which stores them."""
    projection, model = _following(tmp_path)
    path = tmp_path / "query.sqlite"
    model._store = await QueryStore(path).open()
    model.slice_rows = 10
    before = _content(path)
    pauses = 0
    held = asyncio.Event()

    async def between() -> None:
        nonlocal pauses
        pauses += 1
        if pauses == 2:  # tasks come while the write goes: more than a slice, taken in a 2nd round
            late: list[Event] = [
                TaskSubmitted(task_id=f"late{index}", task_type="bench") for index in range(15)
            ]
            _feed(projection, late, model.position + 1)
        if pauses == 12:  # held in the 2nd round (9 parts in the 1st): what it took is in flight
            held.set()
            await asyncio.sleep(30)

    model._between_slices = between  # type: ignore[method-assign]
    try:
        seq = _feed(projection, _events(40, 10))
        writer = asyncio.create_task(model._flush())
        await asyncio.wait_for(held.wait(), 10.0)
        assert not model.changes.tasks, "the tasks that came are taken by the write"
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        assert _content(path) == before and model.flushed == 0
        model._between_slices = _no_pause  # type: ignore[method-assign]
        await model._flush()
        assert model.flushed == seq + 15 and int((await model.store.meta())["seq"]) == seq + 15
        assert (await model.store.counts())["tasks"] == 55
        assert (await model.store.counts())["attempts"] == 40
    finally:
        await model.store.close()


async def _no_pause() -> None:
    return None


async def test_a_pause_lasts_in_proportion_to_the_slice_before_it(tmp_path: Path) -> None:
    """Three times the slice's wall time, at least ``write_pause_s`` and at most 50 ms: a slow slice
    (a busy machine, a large slice) gives the core away for longer."""
    _projection, model = _following(tmp_path)
    model.write_pause_s = 0.001
    model._slice_began = time.monotonic() - 0.012  # a slice of 12 ms: a 36 ms pause
    started = time.monotonic()
    await model._between_slices()
    took = time.monotonic() - started
    assert took >= 0.03, f"{took * 1e3:.1f} ms"
    assert model._slice_began >= started + took - 0.001  # the next slice is timed from the pause's end
    model._slice_began = time.monotonic() - 10.0  # capped
    started = time.monotonic()
    await asyncio.wait_for(model._between_slices(), 1.0)
    assert time.monotonic() - started >= 0.045
