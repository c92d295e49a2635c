"""Recovery's projection: the fleet (who holds what), the breakers and each agent's recent outcomes."""

from __future__ import annotations

import msgspec

from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.outcomes import OutcomesState, apply_outcomes
from shared.events import FailureReported, RecoveryActionTaken, TaskProgress
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded

PROGRESS = TaskProgress.event_type()


class RecoveryState(msgspec.Struct, kw_only=True):
    fleet: FleetState = msgspec.field(default_factory=FleetState)
    breakers: BreakersState = msgspec.field(default_factory=BreakersState)
    outcomes: OutcomesState = msgspec.field(default_factory=OutcomesState)


def apply_recovery(state: RecoveryState, recorded: Recorded) -> RecoveryState:
    if not admits(state.fleet, recorded):
        return state
    apply_fleet(state.fleet, recorded)
    apply_breakers(state.breakers, recorded)
    apply_outcomes(state.outcomes, recorded)
    return state


TRACKED_SYSTEM_TYPES: frozenset[str] = frozenset(
    {FailureReported.event_type(), RecoveryActionTaken.event_type()}
)
"""The system events recovery applies (a reported failure and the action taken on it, which time
an incident's recovery); the others (keys' slots and tokens, scale advice...) it skips."""


def ignores_recovery(state: RecoveryState, subject: str) -> bool:
    """Skipped undecoded: workflow events (nothing recovery keeps or decides reads them), a task's
    progress (no holder, outcome, breaker or timeout depends on it) and system events other than
    ``TRACKED_SYSTEM_TYPES``. Still counted in their aggregate's version, so what recovery appends
    is guarded by the version its decision saw. Skipped rather than filtered out on the consumer
    (see ``services/balancer/view.py``: ``ignores_balancer``)."""
    tokens = subject.split(".")
    if len(tokens) < 5:
        return False
    aggregate = tokens[2]
    if aggregate == "task":
        return tokens[4] == PROGRESS
    if aggregate == "system":
        return tokens[4] not in TRACKED_SYSTEM_TYPES
    return aggregate == "workflow"


RECOVERY_VIEW: ProjectionSpec[RecoveryState] = ProjectionSpec(
    name="recovery",
    state_type=RecoveryState,
    initial=RecoveryState,
    apply=apply_recovery,
    ignores=ignores_recovery,
)
