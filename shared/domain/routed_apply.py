"""A view's apply that hands each event only to the parts of its state that act on it. Pure.

Recovery's, the balancer's and the gateway's views each keep a table from event type to their
parts (``PARTS``); this is the one dispatch over such a table, so the rule for a report the fleet
does not admit, and for a type no table names, is written once. The parts that recovery's and the
gateway's states share (a fleet, breakers and outcomes at the top of the state) are written here
once too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from shared.domain.breakers import BreakersState, apply_breakers, apply_task_end
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.outcomes import OutcomesState, apply_outcomes
from shared.events import TaskReport
from shared.recorded import Recorded

S = TypeVar("S")


class HasFleet(Protocol):
    fleet: FleetState


class HasBreakers(Protocol):
    breakers: BreakersState


class HasOutcomes(Protocol):
    outcomes: OutcomesState


def fleet_part(state: HasFleet, recorded: Recorded) -> None:
    """The fleet part of a state that keeps one at ``.fleet`` (recovery's, the gateway's)."""
    apply_fleet(state.fleet, recorded)


def breakers_part(state: HasBreakers, recorded: Recorded) -> None:
    apply_breakers(state.breakers, recorded)


def task_end_breakers_part(state: HasBreakers, recorded: Recorded) -> None:
    """A task's end reaches the breakers only when it is a pending probe (``apply_task_end``)."""
    apply_task_end(state.breakers, recorded)


def outcomes_part(state: HasOutcomes, recorded: Recorded) -> None:
    apply_outcomes(state.outcomes, recorded)


def apply_routed(
    state: S,
    recorded: Recorded,
    parts: Mapping[type, tuple[Callable[[S, Recorded], None], ...]],
    every_part: Callable[[S, Recorded], S],
    fleet: FleetState,
) -> S:
    """The event to the parts its type is routed to, in order; a type not in `parts` to
    `every_part` (which asks the fleet's ``admits`` itself); a report the fleet does not admit
    (a stale attempt's) to none."""
    event = recorded.event
    routed = parts.get(type(event))
    if routed is None:
        return every_part(state, recorded)
    if isinstance(event, TaskReport) and not admits(fleet, recorded):
        return state
    for part in routed:
        part(state, recorded)
    return state
