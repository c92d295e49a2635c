"""The workflow service's projection: which workflows exist and how they ended."""

from __future__ import annotations

import msgspec

from shared.bus import Recorded
from shared.events import WorkflowCancelled, WorkflowCompleted, WorkflowFailed, WorkflowSubmitted
from shared.projection import ProjectionSpec


class WorkflowsState(msgspec.Struct, kw_only=True):
    status: dict[str, str] = {}


def apply_workflows(state: WorkflowsState, recorded: Recorded) -> WorkflowsState:
    event = recorded.event
    match event:
        case WorkflowSubmitted():
            state.status.setdefault(event.workflow_id, "running")
        case WorkflowCompleted():
            state.status[event.workflow_id] = "completed"
        case WorkflowFailed():
            state.status[event.workflow_id] = "failed"
        case WorkflowCancelled():
            state.status[event.workflow_id] = "cancelled"
        case _:
            pass
    return state


WORKFLOW_VIEW: ProjectionSpec[WorkflowsState] = ProjectionSpec(
    name="workflow",
    schema="workflow-1",
    state_type=WorkflowsState,
    initial=WorkflowsState,
    apply=apply_workflows,
)
