"""Timeline filters and time parsing, without NATS."""

from __future__ import annotations

import pytest

from shared.events import AgentRegistered, TaskAssigned, TaskCancelRequested, TaskCompleted, TaskSubmitted
from shared.recorded import Recorded
from shared.replay import ReplayError, TimelineFilter, describe, parse_time


def test_times_are_iso_or_relative_to_now() -> None:
    assert parse_time("10m", now=1000.0) == 400.0
    assert parse_time("1.5h", now=10_000.0) == 10_000.0 - 5400.0
    assert parse_time("1970-01-01T00:01:00", now=0.0) == 60.0
    assert parse_time("1970-01-01T01:01:00+01:00", now=0.0) == 60.0
    with pytest.raises(ReplayError, match="neither an ISO time"):
        parse_time("soon", now=0.0)


def test_the_narrowest_subject_filter_is_asked_of_the_server() -> None:
    assert TimelineFilter().subject_filter() == "hive.evt.>"
    assert TimelineFilter(aggregate="task", aggregate_id="t1").subject_filter() == "hive.evt.task.t1.>"
    assert TimelineFilter(aggregate="task", types=frozenset({"task.requeued"})).subject_filter() == (
        "hive.evt.task.*.requeued"
    )
    # A report type lives on two forms (reports stored before they named their agent): the aggregate.
    assert TimelineFilter(aggregate="task", types=frozenset({"task.completed"})).subject_filter() == (
        "hive.evt.task.>"
    )


def test_filters_match_type_time_and_aggregate() -> None:
    done = TaskCompleted(task_id="t1", agent_id="a", attempt=1, ts=100.0)
    recorded = Recorded(5, done.subject, done)
    assert TimelineFilter(types=frozenset({"completed"})).matches(recorded)
    assert TimelineFilter(types=frozenset({"task.completed"})).matches(recorded)
    assert not TimelineFilter(types=frozenset({"submitted"})).matches(recorded)
    assert not TimelineFilter(since_ts=101.0).matches(recorded)
    assert not TimelineFilter(until_ts=99.0).matches(recorded)
    assert not TimelineFilter(aggregate="agent").matches(recorded)
    line = describe(
        Recorded(7, "hive.evt.task.t9.submitted", TaskSubmitted(task_id="t9", task_type="x", ts=0))
    )
    assert line.split()[0] == "7" and "task.submitted" in line and "t9" in line


def test_one_tasks_story_holds_its_assignments_and_cancel_requests() -> None:
    story = TimelineFilter(aggregate="task", aggregate_id="t1")
    assert story.story() == (True, {"task_assigned", "task_cancel_requested"})
    assigned = TaskAssigned(agent_id="a", task_id="t1", attempt=1)
    assert story.matches(Recorded(3, assigned.subject, assigned))
    other = TaskAssigned(agent_id="a", task_id="t2", attempt=1)
    assert not story.matches(Recorded(4, other.subject, other))
    registered = AgentRegistered(agent_id="a", capabilities={"x": 1.0})
    assert not story.matches(Recorded(1, registered.subject, registered))
    cancel = TaskCancelRequested(agent_id="a", task_id="t1", attempt=1)
    only_assigned = TimelineFilter(aggregate="task", aggregate_id="t1", types=frozenset({"task_assigned"}))
    assert only_assigned.story() == (False, {"task_assigned"})
    assert not only_assigned.matches(Recorded(5, cancel.subject, cancel))
    assert TimelineFilter(aggregate="task", aggregate_id="t1", types=frozenset({"completed"})).story() == (
        True,
        frozenset(),
    )
    agent = TimelineFilter(aggregate="agent", aggregate_id="a")
    assert agent.story() is None and agent.subject_filter() == "hive.evt.agent.a.>"
