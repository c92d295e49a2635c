"""The gateway's projection: fleet, workflows, breakers, agent outcomes, schedules (queries without
the log), what keys hold (limits, slots, buckets), the orchestration metrics (read against the fleet
and breakers before they apply each event) and the standing performance alerts."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from services.gateway.alerts import AlertsState, apply_alerts
from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.outcomes import OutcomesState, apply_outcomes
from shared.domain.performance_metrics import MetricsState, apply_metrics
from shared.domain.routed_apply import (
    apply_routed,
    breakers_part,
    fleet_part,
    outcomes_part,
    task_end_breakers_part,
)
from shared.domain.routing.keys import KeysState, apply_keys
from shared.domain.schedules import SchedulesState, apply_schedules
from shared.domain.workflows import WorkflowsState, apply_workflows
from shared.events import (
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskQueued,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded


class GatewayState(msgspec.Struct, kw_only=True):
    fleet: FleetState = msgspec.field(default_factory=FleetState)
    workflows: WorkflowsState = msgspec.field(default_factory=WorkflowsState)
    breakers: BreakersState = msgspec.field(default_factory=BreakersState)
    outcomes: OutcomesState = msgspec.field(default_factory=OutcomesState)
    metrics: MetricsState = msgspec.field(default_factory=MetricsState)
    alerts: AlertsState = msgspec.field(default_factory=AlertsState)
    schedules: SchedulesState = msgspec.field(default_factory=SchedulesState)
    keys: KeysState = msgspec.field(default_factory=KeysState)


def apply_every_part(state: GatewayState, recorded: Recorded) -> GatewayState:
    """Every part applies the event, in order (what ``apply_gateway`` does for a type it does not
    route): the metrics first (they read the fleet and breakers before the event), the keys last
    (they read the fleet after it), ``admits`` asked before anything applies it."""
    if not admits(state.fleet, recorded):
        return state
    apply_metrics(state.metrics, state.fleet, state.breakers, recorded)
    apply_fleet(state.fleet, recorded)
    apply_workflows(state.workflows, recorded)
    apply_breakers(state.breakers, recorded)
    apply_outcomes(state.outcomes, recorded)
    apply_alerts(state.alerts, recorded)
    apply_schedules(state.schedules, recorded)
    apply_keys(state.keys, state.fleet, recorded)
    return state


def _metrics(state: GatewayState, recorded: Recorded) -> None:
    apply_metrics(state.metrics, state.fleet, state.breakers, recorded)


def _workflows(state: GatewayState, recorded: Recorded) -> None:
    apply_workflows(state.workflows, recorded)


def _schedules(state: GatewayState, recorded: Recorded) -> None:
    apply_schedules(state.schedules, recorded)


def _keys(state: GatewayState, recorded: Recorded) -> None:
    apply_keys(state.keys, state.fleet, recorded)


Part = Callable[[GatewayState, Recorded], None]

PARTS: dict[type, tuple[Part, ...]] = {
    TaskSubmitted: (_metrics, fleet_part, _workflows, _schedules),
    TaskAssigned: (_metrics, fleet_part, breakers_part, _keys),
    TaskStarted: (_metrics, fleet_part),
    TaskProgress: (fleet_part,),
    TaskCompleted: (_metrics, fleet_part, _workflows, task_end_breakers_part, outcomes_part, _keys),
    TaskAttemptFailed: (_metrics, fleet_part, task_end_breakers_part, outcomes_part, _keys),
    TaskQueued: (_metrics, fleet_part),
    TaskRequeued: (_metrics, fleet_part, task_end_breakers_part, _keys),
    TaskFailed: (_metrics, fleet_part, _workflows, _keys),
    TaskCancelled: (_metrics, fleet_part, _workflows, task_end_breakers_part, _keys),
}
"""A task's events (nearly all the log) -> the parts that act on them, in ``apply_every_part``'s
order: the metrics (``apply_metrics`` and its ``track_recovery``), the fleet, the workflows (a
step's task submitted or ended), the breakers (an assignment, a probe's end), the outcomes (a
report's end), the schedules (a target's submission) and the keys (an assignment and the ends
that release a slot). No task event is a performance alert. Any other type goes through every
part."""


def apply_gateway(state: GatewayState, recorded: Recorded) -> GatewayState:
    """``apply_every_part``, a task's event handed only to the parts that act on it
    (``tests/unit/test_apply_cost.py`` checks the state is the same, byte for byte)."""
    return apply_routed(state, recorded, PARTS, apply_every_part, state.fleet)


GATEWAY_VIEW: ProjectionSpec[GatewayState] = ProjectionSpec(
    name="gateway",
    state_type=GatewayState,
    initial=GatewayState,
    apply=apply_gateway,
)
