"""The query model's pure part: what it keeps in memory, and which rows each event changes.

The query model answers for every task, workflow and agent from SQLite. In memory it keeps only
what can still change: the agents, the tasks that have not ended and the workflows that have not
ended (plus a short window of ended ones, whose steps may still see a late task end). A task that
has ended never changes again (the fleet projection ignores whatever comes after its terminal
event), so once written it needs no memory.

``apply_query`` folds an event into that state with the very apply functions of the fleet and
workflow projections (behind the same ``admits`` as the gateway's view), so a row is what a fresh
fold of the whole log says, and notes in ``Changes`` which rows the event touched (noting a row too
many costs one rewrite, never a wrong row). That fold runs only while the model catches up from its
file; once it follows the gateway's projection, that projection has folded the same event into the
same fleet and workflows already, and ``note_applied`` only notes the rows from there (no second
fold). ``rows_of`` turns the changes into the tuples the store writes in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shared.domain.fleet import (
    TERMINAL,
    WAITING,
    AgentView,
    AssignmentRecord,
    FleetState,
    TaskView,
    admits,
    apply_fleet,
)
from shared.domain.workflows import WorkflowsState, WorkflowView, apply_workflows, percent_done
from shared.events import AgentEvent, TaskCancelled, TaskCompleted, TaskEvent, TaskFailed, WorkflowEvent
from shared.recorded import Recorded

ENDED_WORKFLOWS_KEPT = 200
"""Ended workflows kept in memory: a step's task may still end just after its workflow did."""


def _fleet() -> FleetState:
    return FleetState(max_finished=0)


def _workflows() -> WorkflowsState:
    return WorkflowsState(max_finished=ENDED_WORKFLOWS_KEPT)


class QueryState(msgspec.Struct, kw_only=True):
    """Agents, tasks not ended and workflows not ended (ended tasks leave at once)."""

    fleet: FleetState = msgspec.field(default_factory=_fleet)
    workflows: WorkflowsState = msgspec.field(default_factory=_workflows)


@dataclass
class Changes:
    """The rows touched since the last write: the write buffer (objects, encoded when written)."""

    tasks: dict[int, TaskView] = field(default_factory=dict)
    """By the sequence of the submission: a task id submitted again after its task ended (and left
    memory) is another row, which the store refuses (the first submission wins)."""
    assignments: list[tuple[int, str, AssignmentRecord]] = field(default_factory=list)
    """(sequence of the task's submission, task id, the new routing decision)."""
    agents: dict[str, AgentView] = field(default_factory=dict)
    workflows: dict[int, WorkflowView] = field(default_factory=dict)
    """By the sequence of the submission, as tasks."""
    events: int = 0
    """Events applied into this buffer."""


def _task_id_of(event: object) -> str | None:
    if isinstance(event, TaskEvent):
        return event.task_id
    found = getattr(event, "task_id", None)  # agent.task_assigned, agent.task_cancel_requested
    return found if isinstance(found, str) else None


def apply_query(state: QueryState, changes: Changes, recorded: Recorded) -> None:
    """Apply one event to the state and note the rows it changed in `changes`."""
    event = recorded.event
    fleet = state.fleet
    workflows = state.workflows
    task_id = _task_id_of(event)
    task = fleet.tasks.get(task_id) if task_id is not None else None
    holder = task.agent_id if task is not None else None
    decisions_before = len(task.assignments) if task is not None else 0
    step_before = workflows.task_steps.get(task_id) if task_id is not None else None

    changes.events += 1
    if not admits(fleet, recorded):  # as the gateway's view: a report from no holder changes nothing
        return
    apply_fleet(fleet, recorded)  # an ended task leaves fleet.tasks, but `task` is the same object
    apply_workflows(workflows, recorded)

    step = None
    if task_id is not None:
        task = task if task is not None else fleet.tasks.get(task_id)
        if task is not None:
            changes.tasks[task.submitted_seq] = task
            for record in task.assignments[decisions_before:]:
                changes.assignments.append((task.submitted_seq, task_id, record))
            for agent_id in (holder, task.agent_id):
                _note_agent(fleet, changes, agent_id)
        step = step_before or workflows.task_steps.get(task_id)
    _note_step_agent_workflow(fleet, workflows, changes, event, step)


_ENDINGS = (TaskCompleted, TaskFailed, TaskCancelled)
"""The events that end a task (``apply_fleet``'s ``_finish``): nothing else changes an ended task."""


def note_applied(fleet: FleetState, workflows: WorkflowsState, changes: Changes, recorded: Recorded) -> None:
    """Note in `changes` the rows `recorded` changed, in a fleet and workflows that have applied it
    already (the gateway's projection, whose fleet keeps ended tasks a while): the rows
    ``apply_query`` notes, without folding the event a second time.

    Works from the state after the event alone: a new routing decision is the task's last record
    with the event's sequence; the agent that held the task before the event is the one of its
    last record (a task gets an agent only with a new record, and loses it with none), so noting
    that agent and the current one notes every agent whose load the event changed. An ended task
    changes only with the event that ends it: later events about it are not noted.
    """
    event = recorded.event
    changes.events += 1
    task_id = _task_id_of(event)
    if task_id is not None:
        task = fleet.tasks.get(task_id)
        if task is not None and (task.status not in TERMINAL or isinstance(event, _ENDINGS)):
            changes.tasks[task.submitted_seq] = task
            decisions = task.assignments
            if decisions:
                last = decisions[-1]
                if last.seq == recorded.seq:
                    changes.assignments.append((task.submitted_seq, task_id, last))
                _note_agent(fleet, changes, last.agent_id)
                if task.agent_id != last.agent_id:
                    _note_agent(fleet, changes, task.agent_id)
    step = workflows.task_steps.get(task_id) if task_id is not None else None
    _note_step_agent_workflow(fleet, workflows, changes, event, step)


def _note_step_agent_workflow(
    fleet: FleetState,
    workflows: WorkflowsState,
    changes: Changes,
    event: object,
    step: tuple[str, str] | None,
) -> None:
    """The rows both ways of noting share: the workflow of the task's step, the agent an agent
    event is about, the workflow a workflow event is about."""
    if step is not None:
        _note_workflow(workflows, changes, step[0])
    if isinstance(event, AgentEvent):
        _note_agent(fleet, changes, event.agent_id)
    if isinstance(event, WorkflowEvent):
        _note_workflow(workflows, changes, event.workflow_id)


def _note_agent(fleet: FleetState, changes: Changes, agent_id: str | None) -> None:
    agent = fleet.agents.get(agent_id) if agent_id else None
    if agent is not None:
        changes.agents[agent.agent_id] = agent


def _note_workflow(workflows: WorkflowsState, changes: Changes, workflow_id: str) -> None:
    workflow = workflows.workflows.get(workflow_id)
    if workflow is not None:
        changes.workflows[workflow.submitted_seq] = workflow


# --- rows -------------------------------------------------------------------------------------------

_json = msgspec.json.Encoder()

TaskRow = tuple[Any, ...]
"""task_id, seq, task_type, name, priority, status, attempt, agent_id, workflow_id, step_id,
submitted_ts, assigned_ts, started_ts, finished_ts, quality, failure_type, queued_reason, view."""
AssignmentRow = tuple[Any, ...]
"""task_seq, seq, task_id, attempt, agent_id, ts, strategy, score, record."""
AgentRow = tuple[Any, ...]
"""agent_id, status, view."""
WorkflowRow = tuple[Any, ...]
"""workflow_id, seq, name, status, reason, execution_mode, optimization_goal, template, tasks,
percent, submitted_ts, started_ts, finished_ts, view."""


@dataclass(frozen=True)
class Rows:
    """What one write stores, encoded: consistent with `seq`, whatever happens after."""

    seq: int
    tasks: list[TaskRow]
    assignments: list[AssignmentRow]
    agents: list[AgentRow]
    workflows: list[WorkflowRow]


SPECS_KEPT = 10_000
"""Encoded submissions kept for the tasks written and not ended (about 1 KB each): a task's row is
written again as it moves on, and its submission never changes."""

Specs = dict[int, msgspec.Raw]
"""A task's submission as its row holds it (encoded JSON), by the sequence of the submission."""


def task_row(task: TaskView, specs: Specs | None = None) -> TaskRow:
    """The task's searchable columns, and the whole view but its routing decisions (kept as rows).

    With `specs`, the submission is encoded once for all the writes of the task (the same bytes
    spliced in, ``msgspec.Raw``) and forgotten with its last write, when the task has ended.
    """
    spec = task.spec
    decisions = task.assignments
    encoded: Any = spec
    if specs is not None:
        seq = task.submitted_seq
        encoded = specs.pop(seq, None) if task.status in TERMINAL else specs.get(seq)
        if encoded is None:
            encoded = msgspec.Raw(_json.encode(spec))
            if task.status not in TERMINAL and len(specs) < SPECS_KEPT:
                specs[seq] = encoded
    task.assignments = []
    task.spec = encoded
    try:
        view = _json.encode(task).decode()
    finally:
        task.spec = spec
        task.assignments = decisions
    return (
        spec.task_id,
        task.submitted_seq,
        spec.task_type,
        spec.name,
        spec.priority,
        task.status,
        task.attempt,
        task.agent_id,
        spec.workflow_id,
        spec.step_id,
        task.submitted_ts,
        task.assigned_ts,
        task.started_ts,
        task.finished_ts,
        task.quality,
        task.failure_type,
        task.queued_reason,
        view,
    )


def assignment_row(task_seq: int, task_id: str, record: AssignmentRecord) -> AssignmentRow:
    return (
        task_seq,
        record.seq,
        task_id,
        record.attempt,
        record.agent_id,
        record.ts,
        record.strategy,
        record.score,
        _json.encode(record).decode(),
    )


def agent_row(agent: AgentView) -> AgentRow:
    return (agent.agent_id, agent.status, _json.encode(agent).decode())


def workflow_row(workflow: WorkflowView) -> WorkflowRow:
    return (
        workflow.workflow_id,
        workflow.submitted_seq,
        workflow.name,
        workflow.status,
        workflow.reason,
        workflow.execution_mode,
        workflow.optimization_goal,
        workflow.template,
        len(workflow.steps),
        percent_done(workflow),
        workflow.submitted_ts,
        workflow.started_ts,
        workflow.finished_ts,
        _json.encode(workflow).decode(),
    )


def rows_of(changes: Changes, seq: int, specs: Specs | None = None) -> Rows:
    """Encode the buffer now (the objects keep changing once the next events apply); `specs`: the
    submissions encoded by earlier writes (``task_row``)."""
    return Rows(
        seq=seq,
        tasks=[task_row(task, specs) for task in changes.tasks.values()],
        assignments=[assignment_row(*decision) for decision in changes.assignments],
        agents=[agent_row(agent) for agent in changes.agents.values()],
        workflows=[workflow_row(workflow) for workflow in changes.workflows.values()],
    )


def row_count(changes: Changes) -> int:
    """Rows a write of `changes` stores."""
    return len(changes.tasks) + len(changes.assignments) + len(changes.agents) + len(changes.workflows)


def rows_in_slices(
    changes: Changes, size: int, position: Callable[[], int], specs: Specs | None = None
) -> Iterator[Rows]:
    """The rows of `changes` encoded a slice at a time (at most `size` rows of one table each), as
    the caller asks for the next: each slice is the state of its rows at ``position()`` when it was
    encoded (the objects may change between two slices; the caller writes again, later in the same
    transaction, every row noted as changed meanwhile: ``QueryModel._parts``)."""
    size = max(1, size)
    tables: tuple[tuple[list[Any], Callable[[Any], Any], str], ...] = (
        (list(changes.tasks.values()), lambda task: task_row(task, specs), "tasks"),
        (changes.assignments, lambda decision: assignment_row(*decision), "assignments"),
        (list(changes.agents.values()), agent_row, "agents"),
        (list(changes.workflows.values()), workflow_row, "workflows"),
    )
    for objects, encode, table in tables:
        for start in range(0, len(objects), size):
            part: dict[str, list[Any]] = {"tasks": [], "assignments": [], "agents": [], "workflows": []}
            seq = position()
            part[table] = [encode(item) for item in objects[start : start + size]]
            yield Rows(seq=seq, **part)


# --- reading back ---------------------------------------------------------------------------------

_task_decoder = msgspec.json.Decoder(TaskView)
_record_decoder = msgspec.json.Decoder(AssignmentRecord)
_agent_decoder = msgspec.json.Decoder(AgentView)
_workflow_decoder = msgspec.json.Decoder(WorkflowView)


def task_from_row(view: str, records: Sequence[str]) -> TaskView:
    task = _task_decoder.decode(view)
    task.assignments = [_record_decoder.decode(record) for record in records]
    return task


_records_decoder = msgspec.json.Decoder(list[AssignmentRecord])


def task_from_rows(view: str, records: str) -> TaskView:
    """The task from its row and its decisions' records joined as one JSON array (in any order:
    SQLite does not promise the order of ``group_concat``)."""
    task = _task_decoder.decode(view)
    task.assignments = sorted(_records_decoder.decode(records), key=lambda record: record.seq)
    return task


def agent_from_row(view: str) -> AgentView:
    return _agent_decoder.decode(view)


def workflow_from_row(view: str) -> WorkflowView:
    return _workflow_decoder.decode(view)


def restored(agents: list[AgentView], tasks: list[TaskView], workflows: list[WorkflowView]) -> QueryState:
    """The in-memory state again, from the rows of a model written at some sequence: every agent,
    the tasks not ended (with their decisions) and the workflows not ended or recently ended."""
    state = QueryState()
    fleet = state.fleet
    for agent in agents:
        fleet.agents[agent.agent_id] = agent
    for task in sorted(tasks, key=lambda t: t.submitted_seq):
        fleet.tasks[task.task_id] = task
        if task.status in WAITING:
            fleet.queue.append(task.queue_key)
    fleet.queue.sort()
    kept = state.workflows
    for workflow in sorted(workflows, key=lambda w: w.submitted_seq):
        kept.workflows[workflow.workflow_id] = workflow
        if workflow.done:
            kept.finished.append(workflow.workflow_id)
        elif workflow.status == "waiting":
            kept.waiting.append(workflow.workflow_id)
        else:
            kept.running.append(workflow.workflow_id)
        for step in workflow.steps.values():
            if step.task_id:
                kept.task_steps[step.task_id] = (workflow.workflow_id, step.step_id)
    return state
