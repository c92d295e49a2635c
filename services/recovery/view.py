"""Recovery's projection: the fleet (who holds what), the breakers and each agent's recent outcomes."""

from __future__ import annotations

import msgspec

from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.outcomes import OutcomesState, apply_outcomes
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded


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


RECOVERY_VIEW: ProjectionSpec[RecoveryState] = ProjectionSpec(
    name="recovery",
    state_type=RecoveryState,
    initial=RecoveryState,
    apply=apply_recovery,
)
