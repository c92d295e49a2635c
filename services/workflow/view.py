"""The workflow service's projection: the workflows, the fleet (task results, agent capacity) and
the schedules it fires."""

from __future__ import annotations

import msgspec

from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.schedules import SchedulesState, apply_schedules
from shared.domain.workflows import WorkflowsState, apply_workflows
from shared.events import (
    EVENT_TYPES,
    ScheduleEvent,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskEvent,
    TaskFailed,
    TaskNotice,
    TaskQueued,
    TaskRequeued,
    TaskSubmitted,
)
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded
from shared.subjects import EVENTS_PREFIX, NOTICE_TYPES, aggregate_filter, type_filters


class WorkflowServiceState(msgspec.Struct, kw_only=True):
    flows: WorkflowsState = msgspec.field(default_factory=WorkflowsState)
    fleet: FleetState = msgspec.field(default_factory=FleetState)
    schedules: SchedulesState = msgspec.field(default_factory=SchedulesState)


def apply_workflow_service(state: WorkflowServiceState, recorded: Recorded) -> WorkflowServiceState:
    """The fleet inside keeps the agents and only the tasks of dispatched steps (a schedule's task
    is followed until submitted, by the schedules alone): no decision reads any other task."""
    if not admits(state.fleet, recorded):
        return state
    apply_workflows(state.flows, recorded)
    event = recorded.event
    if not isinstance(event, TaskEvent | TaskNotice) or event.task_id in state.flows.task_steps:
        apply_fleet(state.fleet, recorded)
    apply_schedules(state.schedules, recorded)
    return state


WORKFLOW_READS: tuple[str, ...] = (
    aggregate_filter("workflow"),
    aggregate_filter("system"),
    aggregate_filter("agent"),
    *(
        subject_filter
        for event_type in (
            TaskSubmitted,
            TaskQueued,
            TaskRequeued,
            TaskFailed,
            TaskCancelled,
            TaskCompleted,
            TaskAttemptFailed,
        )
        for subject_filter in type_filters("task", event_type.event_type())
    ),
)
"""Workflows and schedules whole, agents, and of the tasks what changes their state: not a task's
start or progress (a step waits for its task's end; a completion from ``assigned`` is one) nor
breakers. The agents' notices (one assignment per task, whatever its workflow) are read too, not
only their five-token lifecycle: a step's task completes only from the agent its assignment named
(``shared.domain.fleet.admits``), and a cancelled step's task is stopped by a word to that agent
(``holder_of``)."""

_AGENT_PREFIX = f"{EVENTS_PREFIX}.agent."

SCHEDULE_TYPES: frozenset[str] = frozenset(
    cls.event_type() for cls in EVENT_TYPES.values() if issubclass(cls, ScheduleEvent)
)
"""The system events the view applies: the schedules'."""


def ignores_workflow_service(state: WorkflowServiceState, subject: str) -> bool:
    """What this view skips undecoded: events about a task that is neither a dispatched step's
    (``task_steps``, known from the step's dispatch, stored before its task's submission) nor a
    schedule's target awaiting its submission (which the schedules note), and system events other
    than the schedules'.

    Most tasks belong to no workflow: their submission, assignment and end change nothing a
    workflow decision reads (a step's task, its holder for a cancellation, its end; the agents'
    capacity comes from their own events). A notice on five tokens (versions 1 and 3) names its
    task only in its body: ``ignores_stored_workflow_service`` looks there."""
    tokens = subject.split(".")
    if len(tokens) < 5:
        return False
    aggregate = tokens[2]
    if aggregate == "task":
        task_id = tokens[3]
    elif aggregate == "agent" and len(tokens) == 6:
        task_id = tokens[5]
    elif aggregate == "system":
        return tokens[4] not in SCHEDULE_TYPES
    else:
        return False
    return task_id not in state.flows.task_steps and task_id not in state.schedules.targets


_TASK_FIELD = b'"task_id":"'


def ignores_stored_workflow_service(state: WorkflowServiceState, subject: str, data: bytes) -> bool:
    """``ignores_workflow_service`` for a notice on its agent's five-token subject: the task it is
    about read from its bytes (``task_id`` is encoded before any free-form field, and an id needs
    no escaping), not decoded. Every assignment comes to this view; few are a step's."""
    if not subject.startswith(_AGENT_PREFIX) or subject.count(".") != 4:
        return False
    if subject[subject.rindex(".") + 1 :] not in NOTICE_TYPES:
        return False
    start = data.find(_TASK_FIELD)
    if start < 0:
        return False
    start += len(_TASK_FIELD)
    end = data.find(b'"', start)
    if end < 0:
        return False
    task_id = data[start:end].decode(errors="replace")
    return task_id not in state.flows.task_steps and task_id not in state.schedules.targets


WORKFLOW_VIEW: ProjectionSpec[WorkflowServiceState] = ProjectionSpec(
    name="workflow",
    state_type=WorkflowServiceState,
    initial=WorkflowServiceState,
    apply=apply_workflow_service,
    revision=1,
    reads=WORKFLOW_READS,
    ignores=ignores_workflow_service,
    ignores_stored=ignores_stored_workflow_service,
)
"""Revision 1: the fleet inside keeps only the tasks of dispatched steps, and tasks of no workflow
are skipped undecoded (``ignores``)."""
