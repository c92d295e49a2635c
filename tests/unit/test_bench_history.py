"""The bench's written history: a task's progress reports come from its holder, between its start
and its end, all on one subject (what makes a consumer with several filters costly to catch up)."""

from __future__ import annotations

import random

from services.cli.bench.history import History, finished_task, history_chunks, registrations
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.events import TaskAssigned, TaskCompleted, TaskProgress, TaskStarted, TaskSubmitted
from shared.recorded import Recorded


def test_a_finished_task_reports_its_progress_from_its_holder_between_its_start_and_its_end() -> None:
    history = History(tasks=3, progress=2)
    events = finished_task(history, 1, random.Random(1))
    assert [type(e) for e in events] == [
        TaskSubmitted,
        TaskAssigned,
        TaskStarted,
        TaskProgress,
        TaskProgress,
        TaskCompleted,
    ]
    reports = [e for e in events if isinstance(e, TaskProgress)]
    assert len({r.subject for r in reports}) == 1, "several messages on one subject"
    assert [r.percent for r in reports] == sorted(r.percent for r in reports)
    assert all(0 < r.percent < 100 for r in reports)
    assert events[2].ts < reports[0].ts and reports[-1].ts < events[-1].ts
    fleet = FleetState()
    for seq, event in enumerate([*registrations(history), *events], start=1):
        recorded = Recorded(seq, event.subject, event)  # type: ignore[arg-type]
        assert admits(fleet, recorded), "reported by the agent holding the attempt"
        apply_fleet(fleet, recorded)
    task = fleet.tasks[events[0].task_id]  # type: ignore[attr-defined]
    assert task.terminal and task.status == "completed"


def test_without_progress_a_finished_task_is_its_four_events() -> None:
    events = finished_task(History(tasks=1), 0, random.Random(1))
    assert [type(e) for e in events] == [TaskSubmitted, TaskAssigned, TaskStarted, TaskCompleted]


def test_no_chunk_holds_two_events_of_one_task_with_progress_reports() -> None:
    history = History(tasks=30, progress=3)
    chunks = list(history_chunks(history, block=8))
    for chunk in chunks[1:]:  # after the registrations
        task_ids = [e.task_id for e in chunk]  # type: ignore[attr-defined]
        assert len(task_ids) == len(set(task_ids))
    assert sum(len(chunk) for chunk in chunks[1:]) == 30 * 7
