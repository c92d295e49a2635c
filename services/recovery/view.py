"""Recovery's projection: the fleet (who holds which attempt of which task)."""

from __future__ import annotations

import msgspec

from shared.bus import Recorded
from shared.domain.fleet import FleetState, apply_fleet
from shared.projection import ProjectionSpec


class RecoveryState(msgspec.Struct, kw_only=True):
    fleet: FleetState = msgspec.field(default_factory=FleetState)


def apply_recovery(state: RecoveryState, recorded: Recorded) -> RecoveryState:
    apply_fleet(state.fleet, recorded)
    return state


RECOVERY_VIEW: ProjectionSpec[RecoveryState] = ProjectionSpec(
    name="recovery",
    schema="recovery-2",
    state_type=RecoveryState,
    initial=RecoveryState,
    apply=apply_recovery,
)
