"""The router's apply dispatches the events only its fleet reads straight to the fleet
(``FLEET_ONLY``), and keeps the very view the full apply keeps: the reference below is
``apply_router`` as it was (the fleet's ``admits``, then every part), kept as the oracle."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings

from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, admits
from shared.domain.routing.keys import KeysState, apply_keys
from shared.domain.routing.performance import outcome_of
from shared.domain.routing.view import FLEET_ONLY, RouterState, apply_admitted, apply_router
from shared.events import AnyEvent, TaskReport
from shared.recorded import Recorded
from tests.unit.test_balancer_apply import histories, recorded_log

encode = msgspec.msgpack.Encoder().encode


def old_apply_router(state: RouterState, recorded: Recorded) -> RouterState:
    if not admits(state.fleet, recorded):
        return state
    return apply_admitted(state, recorded)


@settings(max_examples=200, deadline=None)
@given(histories())
def test_the_router_view_after_every_event_is_the_one_the_full_apply_keeps(events: list[AnyEvent]) -> None:
    old, new = RouterState(), RouterState()
    for recorded in recorded_log(events):
        old = old_apply_router(old, recorded)
        new = apply_router(new, recorded)
        assert encode(new) == encode(old), recorded


@settings(max_examples=100, deadline=None)
@given(histories())
def test_no_part_but_the_fleet_changes_on_an_event_of_a_fleet_only_type(events: list[AnyEvent]) -> None:
    """What ``FLEET_ONLY`` claims, part by part, on every state a history reaches."""
    state = RouterState()
    for recorded in recorded_log(events):
        if type(recorded.event) in FLEET_ONLY:
            assert not isinstance(recorded.event, TaskReport) and admits(state.fleet, recorded)
            assert outcome_of(state.fleet, recorded) is None
            breakers, keys = encode(state.breakers), encode(state.keys)
            assert apply_breakers(msgspec.msgpack.decode(breakers, type=BreakersState), recorded) == (
                msgspec.msgpack.decode(breakers, type=BreakersState)
            )
            fleet = msgspec.msgpack.decode(encode(state.fleet), type=FleetState)
            assert encode(apply_keys(msgspec.msgpack.decode(keys, type=KeysState), fleet, recorded)) == keys
        state = old_apply_router(state, recorded)
