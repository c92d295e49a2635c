"""The gateway's projection: fleet, workflows, breakers, agent outcomes, schedules (queries without
the log), what keys hold (limits, slots, buckets), the orchestration metrics (read against the fleet
and breakers before they apply each event) and the standing performance alerts."""

from __future__ import annotations

import msgspec

from services.gateway.alerts import AlertsState, apply_alerts
from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.outcomes import OutcomesState, apply_outcomes
from shared.domain.performance_metrics import MetricsState, apply_metrics
from shared.domain.routing.keys import KeysState, apply_keys
from shared.domain.schedules import SchedulesState, apply_schedules
from shared.domain.workflows import WorkflowsState, apply_workflows
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


def apply_gateway(state: GatewayState, recorded: Recorded) -> GatewayState:
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


GATEWAY_VIEW: ProjectionSpec[GatewayState] = ProjectionSpec(
    name="gateway",
    state_type=GatewayState,
    initial=GatewayState,
    apply=apply_gateway,
)
