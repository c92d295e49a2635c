"""The gateway's projection: the fleet, to answer status queries without touching the log."""

from __future__ import annotations

import msgspec

from shared.bus import Recorded
from shared.domain.fleet import FleetState, apply_fleet
from shared.projection import ProjectionSpec


class GatewayState(msgspec.Struct, kw_only=True):
    fleet: FleetState = msgspec.field(default_factory=FleetState)


def apply_gateway(state: GatewayState, recorded: Recorded) -> GatewayState:
    apply_fleet(state.fleet, recorded)
    return state


GATEWAY_VIEW: ProjectionSpec[GatewayState] = ProjectionSpec(
    name="gateway",
    schema="gateway-2",
    state_type=GatewayState,
    initial=GatewayState,
    apply=apply_gateway,
)
