"""A view's apply that hands each event only to the parts of its state that act on it. Pure.

Recovery's, the balancer's and the gateway's views each keep a table from event type to their
parts (``PARTS``); this is the one dispatch over such a table, so the rule for a report the fleet
does not admit, and for a type no table names, is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from shared.domain.fleet import FleetState, admits
from shared.events import TaskReport
from shared.recorded import Recorded

S = TypeVar("S")


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
