"""The router's projection: the fleet (agents, load, queue) and the breakers, kept by a pure apply."""

from __future__ import annotations

import msgspec

from shared.bus import Recorded
from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, apply_fleet
from shared.projection import ProjectionSpec


class RouterState(msgspec.Struct, kw_only=True):
    fleet: FleetState = msgspec.field(default_factory=FleetState)
    breakers: BreakersState = msgspec.field(default_factory=BreakersState)


def apply_router(state: RouterState, recorded: Recorded) -> RouterState:
    apply_fleet(state.fleet, recorded)
    apply_breakers(state.breakers, recorded)
    return state


ROUTER_VIEW: ProjectionSpec[RouterState] = ProjectionSpec(
    name="router",
    schema="router-3",
    state_type=RouterState,
    initial=RouterState,
    apply=apply_router,
)
