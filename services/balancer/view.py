"""The balancer's projection: the fleet's load view."""

from __future__ import annotations

import msgspec

from shared.bus import Recorded
from shared.domain.fleet import FleetState, apply_fleet
from shared.projection import ProjectionSpec


class BalancerState(msgspec.Struct, kw_only=True):
    fleet: FleetState = msgspec.field(default_factory=FleetState)


def apply_balancer(state: BalancerState, recorded: Recorded) -> BalancerState:
    apply_fleet(state.fleet, recorded)
    return state


BALANCER_VIEW: ProjectionSpec[BalancerState] = ProjectionSpec(
    name="balancer",
    schema="balancer-2",
    state_type=BalancerState,
    initial=BalancerState,
    apply=apply_balancer,
)
