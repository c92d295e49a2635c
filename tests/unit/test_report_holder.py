"""One rule for reports in every view: they count only from the agent holding the attempt.

Pure: the services' views folded from an event list, no NATS. The subject a report is stored on
names its agent (NATS permissions pin it), and no view takes another agent's word about a task.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from services.balancer.view import BALANCER_VIEW
from services.gateway.view import GATEWAY_VIEW
from services.recovery.view import RECOVERY_VIEW
from services.workflow.view import WORKFLOW_VIEW
from shared.domain.performance_metrics import METRICS_VIEW
from shared.domain.routing.view import ROUTER_VIEW
from shared.events import (
    AgentRegistered,
    AnyEvent,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskProgress,
    TaskStarted,
    TaskSubmitted,
    WorkflowStarted,
    WorkflowStep,
    WorkflowStepDispatched,
    WorkflowSubmitted,
    encode_event,
)
from shared.projection_spec import ProjectionSpec, fold
from shared.recorded import Recorded, Undecodable, decode_recorded

VIEWS = [ROUTER_VIEW, RECOVERY_VIEW, BALANCER_VIEW, WORKFLOW_VIEW, GATEWAY_VIEW, METRICS_VIEW]

HISTORY: list[AnyEvent] = [
    AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=2, ts=1.0),
    AgentRegistered(agent_id="b", capabilities={"x": 1.0}, capacity=2, ts=1.0),
    WorkflowSubmitted(workflow_id="w", steps=[WorkflowStep(step_id="s", task_type="x")], ts=2.0),
    WorkflowStarted(workflow_id="w", running=1, ts=2.0),
    WorkflowStepDispatched(workflow_id="w", step_id="s", task_id="t", ts=2.0),
    TaskSubmitted(task_id="t", task_type="x", workflow_id="w", step_id="s", ts=3.0),
    TaskAssigned(agent_id="b", task_id="t", attempt=1, ts=4.0),
]
"""b holds attempt 1 of t, the one step of workflow w; a holds nothing."""

FORGERIES: list[AnyEvent] = [
    TaskStarted(task_id="t", agent_id="a", attempt=1, ts=5.0),
    TaskProgress(task_id="t", agent_id="a", attempt=1, percent=50.0, ts=5.0),
    *(
        TaskAttemptFailed(task_id="t", agent_id="a", attempt=1, retryable=retryable, error="forged", ts=5.0)
        for retryable in (True, False)
    ),
    TaskCompleted(task_id="t", agent_id="a", attempt=1, quality=1.0, duration_s=1.0, ts=5.0),
]
"""Agent a reporting on b's attempt under its own name, the only name NATS lets it report under."""


def recorded(events: list[AnyEvent], start: int = 1) -> list[Recorded]:
    return [Recorded(seq, event.subject, event) for seq, event in enumerate(events, start=start)]


def snapshot(spec: ProjectionSpec[Any], state: Any) -> bytes:
    return msgspec.msgpack.encode(state)


@pytest.mark.parametrize("spec", VIEWS, ids=lambda spec: spec.name)
def test_another_agents_reports_on_a_held_attempt_change_no_view(spec: ProjectionSpec[Any]) -> None:
    history = recorded(HISTORY)
    state = fold(spec, history)
    before = snapshot(spec, state)
    fold(spec, recorded(FORGERIES, start=len(history) + 1), state)
    assert snapshot(spec, state) == before
    # The holder's own report does change it (so the comparison above could fail).
    done = TaskCompleted(task_id="t", agent_id="b", attempt=1, quality=1.0, duration_s=1.0, ts=6.0)
    fold(spec, recorded([done], start=100), state)
    assert snapshot(spec, state) != before


def test_the_breaker_window_the_fleet_and_learning_still_blame_the_holder_for_its_failure() -> None:
    failure = TaskAttemptFailed(task_id="t", agent_id="b", attempt=1, error="boom", ts=5.0)
    events = recorded([*HISTORY, TaskStarted(task_id="t", agent_id="b", attempt=1, ts=4.5), failure])
    recovery = fold(RECOVERY_VIEW, events)
    assert [o.ok for o in recovery.outcomes.agents["b"].outcomes] == [False]
    assert "a" not in recovery.outcomes.agents
    assert (recovery.fleet.agents["b"].failed, recovery.fleet.agents["a"].failed) == (1, 0)
    router = fold(ROUTER_VIEW, events)
    assert set(router.performance.agents) == {"b"}


def test_a_report_names_its_agent_in_its_subject_and_old_reports_stay_readable() -> None:
    report = TaskCompleted(task_id="t", agent_id="a", attempt=1)
    assert report.v == 2
    assert report.subject == "hive.evt.task.t.completed.a"
    assert decode_recorded(1, report.subject, encode_event(report)) == Recorded(1, report.subject, report)
    # Stored before reports named their agent: version 1 on the five-token subject, read as it was.
    legacy = encode_event(msgspec.structs.replace(report, v=1))
    found = decode_recorded(2, "hive.evt.task.t.completed", legacy)
    assert (
        isinstance(found, Recorded) and found.event == report and found.subject == "hive.evt.task.t.completed"
    )
    # A version 2 body on the five-token form, or naming another agent than its subject: refused.
    for subject in ("hive.evt.task.t.completed", "hive.evt.task.t.completed.b"):
        refused = decode_recorded(3, subject, encode_event(report))
        assert isinstance(refused, Undecodable) and "does not match" in refused.reason
