"""When the query model writes its buffer: every 100 ms while reads come, every 5 s (or 5,000 events)
while none do (a task's row is rewritten at each write while it moves on), and at once for a read."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from services.gateway.query.model import (
    FLUSH_EVENTS,
    FLUSH_INTERVAL_S,
    READS_RECENT_S,
    UNREAD_FLUSH_INTERVAL_S,
    QueryModel,
)
from services.gateway.query.store import QueryStore
from services.gateway.query.view import Rows
from services.gateway.view import GATEWAY_VIEW
from shared.events import AgentRegistered, TaskAssigned, TaskCompleted, TaskSubmitted, encode_event
from shared.projection import ProjectionRunner


def _model(**kwargs: Any) -> QueryModel:
    return QueryModel(None, None, home="/nonexistent", **kwargs)  # type: ignore[arg-type]  # no I/O here


async def test_the_buffer_waits_longer_while_no_read_comes_and_the_short_interval_once_one_does() -> None:
    model = _model()
    assert FLUSH_INTERVAL_S < UNREAD_FLUSH_INTERVAL_S
    assert model.flush_wait_s(time.monotonic()) == UNREAD_FLUSH_INTERVAL_S, "no read yet: write seldom"
    await model.flushed_to(0, 1.0)  # a read (the file holds sequence 0 already: it returns at once)
    read_at = time.monotonic()
    assert model.flush_wait_s(read_at) == FLUSH_INTERVAL_S
    assert model.flush_wait_s(read_at + READS_RECENT_S / 2) == FLUSH_INTERVAL_S
    assert model.flush_wait_s(read_at + READS_RECENT_S + 0.1) == UNREAD_FLUSH_INTERVAL_S, "reads stopped"


def test_the_unread_interval_is_never_shorter_than_the_one_while_reads_come() -> None:
    assert _model(flush_interval_s=0.5).flush_wait_s(time.monotonic()) == UNREAD_FLUSH_INTERVAL_S
    assert _model(flush_interval_s=30.0).flush_wait_s(time.monotonic()) == 30.0
    assert _model(unread_flush_interval_s=20.0).flush_wait_s(time.monotonic()) == 20.0


async def test_a_read_while_the_model_waits_its_long_interval_still_finds_everything_applied(
    tmp_path: Path,
) -> None:
    """The long interval only spaces the writes nobody waits for: a read writes the buffer at once."""
    projection = ProjectionRunner(None, GATEWAY_VIEW)  # type: ignore[arg-type]  # fed by hand, no NATS
    model = QueryModel(None, projection, home=str(tmp_path), unread_flush_interval_s=3600.0)  # type: ignore[arg-type]
    model._store = await QueryStore(tmp_path / "query.sqlite").open()
    model.attached = True
    projection.add_listener(model._on_event)
    writer = asyncio.create_task(model._flush_forever())
    try:
        events = [
            AgentRegistered(agent_id="a1", capabilities={"review": 0.9}, capacity=2),
            TaskSubmitted(task_id="t1", task_type="review"),
            TaskAssigned(agent_id="a1", task_id="t1", attempt=1, strategy="adaptive", score=0.5),
            TaskCompleted(task_id="t1", agent_id="a1", attempt=1, result="done", quality=0.9),
        ]
        for seq, event in enumerate(events, start=1):
            assert projection.apply_message(seq, event.subject, encode_event(event)) is None
        assert model.flushed == 0, "nothing written yet: the model waits its long interval"
        await model.flushed_to(projection.seq, 5.0)
        task = await model.store.task("t1")
        assert task is not None and task.status == "completed" and len(task.assignments) == 1
        assert int((await model.store.meta())["seq"]) == len(events)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await model.store.close()


class _CountingStore:
    """Keeps what each write held: the rows, not SQLite (the cadence is the model's, not the file's)."""

    def __init__(self) -> None:
        self.writes: list[Rows] = []

    async def write(self, rows: Rows, **_pacing: Any) -> None:
        self.writes.append(rows)

    async def write_parts(self, parts: AsyncIterator[Rows]) -> int:
        """A write in parts counts as one write of all its rows."""
        whole = Rows(seq=-1, tasks=[], assignments=[], agents=[], workflows=[])
        async for part in parts:
            for mine, theirs in zip(_tables(whole), _tables(part), strict=True):
                mine.extend(theirs)
            whole = dataclasses.replace(whole, seq=part.seq)
        self.writes.append(whole)
        return whole.seq


def _tables(rows: Rows) -> tuple[list[Any], ...]:
    return rows.tasks, rows.assignments, rows.agents, rows.workflows


async def test_under_a_steady_load_nobody_reads_a_task_s_row_is_written_about_once() -> None:
    """``hive bench throughput``'s load on the model's own cadence, in simulated time: tasks living
    1.4 s (400 in flight at 285 per second), no read. Writing every second rewrote almost every
    task's row (its submission in one write, its end in the next: 2 rows per task); every 5 s
    (5,000 events at most) about one task in four spans two writes."""
    projection = ProjectionRunner(None, GATEWAY_VIEW)  # type: ignore[arg-type]  # fed by hand, no NATS
    model = QueryModel(None, projection, home="/nonexistent")  # type: ignore[arg-type]  # no file
    store = _CountingStore()
    model._store = store  # type: ignore[assignment]
    model.attached = True
    projection.add_listener(model._on_event)
    rate, lifetime, tasks = 285.0, 1.4, 3_000
    timeline: list[tuple[float, int, Any]] = [(0.0, 0, AgentRegistered(agent_id="a1", capacity=10_000))]
    for i in range(tasks):
        at, task_id = 0.01 + i / rate, f"t{i}"
        timeline.append((at, 1, TaskSubmitted(task_id=task_id, task_type="review")))
        timeline.append((at + 0.05, 2, TaskAssigned(agent_id="a1", task_id=task_id, attempt=1, score=0.5)))
        ended = TaskCompleted(task_id=task_id, agent_id="a1", attempt=1, quality=0.9)
        timeline.append((at + lifetime, 3, ended))
    timeline.sort(key=lambda item: (item[0], item[1]))
    due = model.flush_wait_s(0.0)
    for seq, (at, _order, event) in enumerate(timeline, start=1):
        while at >= due:  # the interval passed with nothing kicking the writer: it writes then
            await model._flush()
            due += model.flush_wait_s(due)
        assert projection.apply_message(seq, event.subject, encode_event(event)) is None
        if model._kick.is_set():  # the buffer filled: the writer writes at once
            model._kick.clear()
            await model._flush()
            due = at + model.flush_wait_s(at)
    await model._flush()
    written: dict[str, int] = {}
    last_status: dict[str, str] = {}
    for rows in store.writes:
        for row in rows.tasks:
            written[row[0]] = written.get(row[0], 0) + 1
            last_status[row[0]] = row[5]
    assert set(last_status.values()) == {"completed"}, "each task's last row is its end"
    assert len(written) == tasks and store.writes[-1].seq == len(timeline), "every task written"
    assert all(len(rows.tasks) <= FLUSH_EVENTS for rows in store.writes)
    per_task = sum(written.values()) / tasks
    assert per_task < 1.4, f"{per_task:.2f} rows written per task"  # 1.27; 2.05 with 1 s, 2,000
