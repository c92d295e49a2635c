"""The workflow service's projection: the workflows, the fleet (task results, agent capacity) and
the schedules it fires."""

from __future__ import annotations

import msgspec

from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.schedules import SchedulesState, apply_schedules
from shared.domain.workflows import WorkflowsState, apply_workflows
from shared.events import (
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskRequeued,
    TaskSubmitted,
)
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded
from shared.subjects import aggregate_filter, type_filters


class WorkflowServiceState(msgspec.Struct, kw_only=True):
    flows: WorkflowsState = msgspec.field(default_factory=WorkflowsState)
    fleet: FleetState = msgspec.field(default_factory=FleetState)
    schedules: SchedulesState = msgspec.field(default_factory=SchedulesState)


def apply_workflow_service(state: WorkflowServiceState, recorded: Recorded) -> WorkflowServiceState:
    if not admits(state.fleet, recorded):
        return state
    apply_workflows(state.flows, recorded)
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
breakers."""

WORKFLOW_VIEW: ProjectionSpec[WorkflowServiceState] = ProjectionSpec(
    name="workflow",
    state_type=WorkflowServiceState,
    initial=WorkflowServiceState,
    apply=apply_workflow_service,
    reads=WORKFLOW_READS,
)
