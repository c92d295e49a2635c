"""The query model's pure part: rows written batch by batch are those of a fresh fold of the whole log,
also after a restart from the rows and when noted from the gateway's projection instead of a fold of
the model's own; cursors, filters and the schema id."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway.query import schema
from services.gateway.query.filters import (
    BadCursor,
    Page,
    TaskFilter,
    WorkflowFilter,
    decode_cursor,
    encode_cursor,
)
from services.gateway.query.store import task_query, workflow_query
from services.gateway.query.view import (
    Changes,
    QueryState,
    Rows,
    Specs,
    agent_from_row,
    agent_row,
    apply_query,
    assignment_row,
    note_applied,
    restored,
    rows_of,
    task_from_row,
    task_row,
    workflow_from_row,
    workflow_row,
)
from services.gateway.schemas import TaskSummary
from services.gateway.tasks import TASK_SUMMARY_FIELDS
from services.gateway.view import GATEWAY_VIEW, GatewayState
from services.gateway.workflow_schemas import WorkflowSummary
from services.gateway.workflows import WORKFLOW_SUMMARY_FIELDS
from shared.domain.fleet import TERMINAL, FleetState, admits, apply_fleet
from shared.domain.workflows import WorkflowsState, apply_workflows, step_task_id
from shared.events import (
    AgentRegistered,
    TaskAssigned,
    TaskCompleted,
    TaskRequeued,
    TaskSubmitted,
    WorkflowStarted,
    WorkflowStep,
    WorkflowStepDispatched,
    WorkflowSubmitted,
)
from shared.recorded import Recorded
from tests.varied_history import recorded, varied_events

LOG = recorded(varied_events(300, seed=3))
SHORT_LOG = recorded(varied_events(60, seed=5))


class FakeStore:
    """The tables as the SQL statements keep them (upserts keyed by the submission's sequence; a second
    submission of an existing task id changes nothing), without SQLite."""

    def __init__(self) -> None:
        self.tasks: dict[int, tuple[Any, ...]] = {}
        self.attempts: dict[int, tuple[Any, ...]] = {}
        self.agents: dict[str, tuple[Any, ...]] = {}
        self.workflows: dict[int, tuple[Any, ...]] = {}
        self.seq = 0

    def write(self, rows: Rows) -> None:
        for row in rows.tasks:
            if row[1] in self.tasks or all(other[0] != row[0] for other in self.tasks.values()):
                self.tasks[row[1]] = row
        for row in rows.assignments:
            self.attempts.setdefault(row[1], row)
        for row in rows.agents:
            self.agents[row[0]] = row
        for row in rows.workflows:
            if row[1] in self.workflows or all(other[0] != row[0] for other in self.workflows.values()):
                self.workflows[row[1]] = row
        self.seq = rows.seq

    def restore(self) -> QueryState:
        live = []
        for seq, row in self.tasks.items():
            if row[5] not in TERMINAL:
                records = [a[8] for s, a in sorted(self.attempts.items()) if a[0] == seq]
                live.append(task_from_row(row[17], records))
        return restored(
            [agent_from_row(row[2]) for row in self.agents.values()],
            live,
            [workflow_from_row(row[13]) for row in self.workflows.values()],
        )


def expected_rows(log: list[Recorded]) -> FakeStore:
    """A fresh fold of the whole log, nothing forgotten, as rows (a report from an agent not holding
    the task changes nothing, as in the gateway's view)."""
    fleet = FleetState(max_finished=10**9)
    workflows = WorkflowsState(max_finished=10**9)
    for item in log:
        if not admits(fleet, item):
            continue
        apply_fleet(fleet, item)
        apply_workflows(workflows, item)
    store = FakeStore()
    store.tasks = {task.submitted_seq: task_row(task) for task in fleet.tasks.values()}
    store.attempts = {
        record.seq: assignment_row(task.submitted_seq, task.task_id, record)
        for task in fleet.tasks.values()
        for record in task.assignments
    }
    store.agents = {agent.agent_id: agent_row(agent) for agent in fleet.agents.values()}
    store.workflows = {w.submitted_seq: workflow_row(w) for w in workflows.workflows.values()}
    return store


def fold_in_batches(
    log: list[Recorded], every: int, store: FakeStore, state: QueryState, *, check: bool = False
) -> QueryState:
    changes = Changes()
    for index, item in enumerate(log):
        apply_query(state, changes, item)
        if changes.events >= every:
            store.write(rows_of(changes, item.seq))
            changes = Changes()
            if check:
                assert_same_rows(store, expected_rows(log[: index + 1]))
    store.write(rows_of(changes, log[-1].seq))
    return state


def follow_in_batches(
    log: list[Recorded], every: int, store: FakeStore, view: GatewayState, specs: Specs | None = None
) -> GatewayState:
    """As the model once it follows the gateway's projection: the projection folds, the model notes."""
    changes = Changes()
    for item in log:
        view = GATEWAY_VIEW.apply(view, item)
        note_applied(view.fleet, view.workflows, changes, item)
        if changes.events >= every:
            store.write(rows_of(changes, item.seq, specs))
            changes = Changes()
    store.write(rows_of(changes, log[-1].seq, specs))
    return view


def projection_at(log: list[Recorded]) -> GatewayState:
    view = GATEWAY_VIEW.initial()
    for item in log:
        view = GATEWAY_VIEW.apply(view, item)
    return view


def assert_same_rows(found: FakeStore, expected: FakeStore) -> None:
    assert found.tasks == expected.tasks
    assert found.attempts == expected.attempts
    assert found.agents == expected.agents
    assert found.workflows == expected.workflows


@settings(max_examples=20, deadline=None)
@given(every=st.one_of(st.integers(min_value=1, max_value=400), st.just(len(LOG))))
def test_rows_written_batch_by_batch_are_those_of_a_fresh_fold_of_the_whole_log(every: int) -> None:
    store = FakeStore()
    state = fold_in_batches(LOG, every, store, QueryState())
    assert_same_rows(store, expected_rows(LOG))
    assert store.seq == LOG[-1].seq
    statuses = {row[5] for row in store.tasks.values()}
    assert {"completed", "failed", "cancelled", "running", "pending"} <= statuses
    assert all(not task.terminal for task in state.fleet.tasks.values()), "ended tasks leave memory"


@settings(max_examples=8, deadline=None)
@given(every=st.integers(min_value=1, max_value=40))
def test_after_every_write_the_rows_are_those_of_a_fresh_fold_up_to_the_sequence_written(every: int) -> None:
    fold_in_batches(SHORT_LOG, every, FakeStore(), QueryState(), check=True)


@settings(max_examples=20, deadline=None)
@given(every=st.integers(min_value=1, max_value=400), split=st.integers(min_value=1, max_value=len(LOG) - 1))
def test_a_model_restored_from_its_rows_goes_on_as_if_never_stopped(every: int, split: int) -> None:
    store = FakeStore()
    fold_in_batches(LOG[:split], every, store, QueryState())
    fold_in_batches(LOG[split:], every, store, store.restore())
    assert_same_rows(store, expected_rows(LOG))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=10**6),
    every=st.integers(min_value=1, max_value=300),
    split=st.floats(min_value=0.0, max_value=1.0),
)
def test_rows_noted_from_the_gateways_projection_are_those_of_a_fresh_fold_of_the_whole_log(
    seed: int, every: int, split: float
) -> None:
    """The model folds the log itself up to where the projection stands, then only notes what the
    projection applied (whose fleet keeps ended tasks, and whose workflows keep more ended ones):
    the same rows as the fold of its own it no longer does."""
    log = recorded(varied_events(150, seed=seed))
    cut = round(split * len(log))
    store = FakeStore()
    if cut:
        fold_in_batches(log[:cut], every, store, QueryState())
    if cut < len(log):
        follow_in_batches(log[cut:], every, store, projection_at(log[:cut]))
    assert_same_rows(store, expected_rows(log))
    own = FakeStore()
    fold_in_batches(log, every, own, QueryState())
    assert_same_rows(store, own)


@settings(max_examples=10, deadline=None)
@given(every=st.integers(min_value=1, max_value=40))
def test_rows_noted_from_the_projection_after_every_write_are_those_of_a_fresh_fold_up_to_it(
    every: int,
) -> None:
    store = FakeStore()
    changes = Changes()
    view = GATEWAY_VIEW.initial()
    for index, item in enumerate(SHORT_LOG):
        view = GATEWAY_VIEW.apply(view, item)
        note_applied(view.fleet, view.workflows, changes, item)
        if changes.events >= every:
            store.write(rows_of(changes, item.seq))
            changes = Changes()
            assert_same_rows(store, expected_rows(SHORT_LOG[: index + 1]))


def test_a_submission_is_encoded_once_for_all_the_writes_of_its_task_and_forgotten_when_it_ends() -> None:
    specs: Specs = {}
    cached, plain = FakeStore(), FakeStore()
    view = follow_in_batches(LOG, 7, cached, GATEWAY_VIEW.initial(), specs)
    follow_in_batches(LOG, 7, plain, GATEWAY_VIEW.initial())
    assert_same_rows(cached, plain)
    live = {task.submitted_seq for task in view.fleet.tasks.values() if not task.terminal}
    assert specs and set(specs) <= live


def test_a_late_report_from_an_agent_that_no_longer_holds_a_step_s_task_leaves_the_step_as_it_was() -> None:
    """The gateway's view refuses it (``admits``): so do the rows, whichever way they are made."""
    task = step_task_id("wf", "only")
    log = recorded(
        [
            *(AgentRegistered(agent_id=agent, capabilities={"review": 0.9}) for agent in ("a", "b")),
            WorkflowSubmitted(workflow_id="wf", steps=[WorkflowStep(step_id="only", task_type="review")]),
            WorkflowStarted(workflow_id="wf", running=1),
            WorkflowStepDispatched(workflow_id="wf", step_id="only", task_id=task),
            TaskSubmitted(task_id=task, task_type="review", workflow_id="wf", step_id="only"),
            TaskAssigned(agent_id="a", task_id=task, attempt=1),
            TaskRequeued(task_id=task, attempt=2, reason="agent_unresponsive"),
            TaskAssigned(agent_id="b", task_id=task, attempt=2),
            TaskCompleted(task_id=task, agent_id="a", attempt=1, result="stale", quality=0.1),
        ]
    )
    own, followed = FakeStore(), FakeStore()
    fold_in_batches(log, 3, own, QueryState())
    follow_in_batches(log, 3, followed, GATEWAY_VIEW.initial())
    for store in (own, followed):
        [row] = store.workflows.values()
        step = workflow_from_row(row[13]).steps["only"]
        assert (step.status, step.result) == ("dispatched", None)
    assert_same_rows(own, followed)


def test_a_second_submission_of_an_ended_task_changes_nothing() -> None:
    resubmitted = [
        item
        for item in LOG
        if isinstance(item.event, TaskSubmitted)
        and any(
            isinstance(o.event, TaskSubmitted) and o.event.task_id == item.event.task_id and o.seq < item.seq
            for o in LOG
        )
    ]
    assert len(resubmitted) == 1
    task_id = resubmitted[0].event.task_id  # type: ignore[union-attr]
    store = FakeStore()
    fold_in_batches(LOG, 50, store, QueryState())
    [row] = [row for row in store.tasks.values() if row[0] == task_id]
    assert row[5] == "completed" and row[2] != "other"


def test_memory_keeps_agents_and_work_not_ended_only() -> None:
    state = fold_in_batches(LOG, 100, FakeStore(), QueryState())
    fleet = expected_rows(LOG)
    live = {row[0] for row in fleet.tasks.values() if row[5] not in TERMINAL}
    assert set(state.fleet.tasks) - live <= {"task-00000"}  # the resubmitted one waits in memory
    assert live <= set(state.fleet.tasks)
    assert len(state.fleet.agents) == 6


def test_a_cursor_comes_back_as_the_sequence_it_was_made_of() -> None:
    cursor = encode_cursor("tasks", 4211)
    assert decode_cursor("tasks", cursor) == 4211
    for bad in ("", "nope", "@@@", encode_cursor("workflows", 5)):
        with pytest.raises(BadCursor):
            decode_cursor("tasks", bad)


def test_filters_become_indexed_clauses_and_one_row_more_than_the_page() -> None:
    sql, params = task_query(
        TaskFilter(status="completed", agent_id="a", submitted_after=10.0, submitted_before=20.0),
        Page(limit=100, before_seq=500),
    )
    assert sql.endswith(
        "WHERE status = ? AND agent_id = ? AND submitted_ts >= ? AND submitted_ts < ? AND seq < ? "
        "ORDER BY seq DESC LIMIT ?"
    )
    assert params == ["completed", "a", 10.0, 20.0, 500, 101]
    sql, params = task_query(TaskFilter(), Page(limit=5))
    assert "WHERE" not in sql and params == [6]
    sql, params = workflow_query(WorkflowFilter(status="running", name="release"), Page(limit=2))
    assert "status = ? AND name = ?" in sql and params == ["running", "release", 3]


def test_the_schema_id_follows_the_tables_and_the_stored_views() -> None:
    assert schema.query_schema_id() == schema.SCHEMA_ID
    assert (
        schema.query_schema_id(tables=schema.TABLES + "\nCREATE INDEX x ON tasks (name);") != schema.SCHEMA_ID
    )
    assert schema.query_schema_id(revision=schema.REVISION + 1) != schema.SCHEMA_ID


def test_a_listed_task_takes_the_columns_in_the_order_the_store_reads_them() -> None:
    assert TaskSummary.__struct_fields__ == TASK_SUMMARY_FIELDS
    assert set(WORKFLOW_SUMMARY_FIELDS) <= set(WorkflowSummary.__struct_fields__)
