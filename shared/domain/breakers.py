"""The breaker view: per-agent circuit breaker state as the log says it is. Pure.

Recovery decides the transitions (closed -> open -> half_open -> closed/open) and appends them;
this view only records them, plus the probe assignments made while half-open, so the router can
ask ``admits`` before giving an agent work.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.bus import Recorded
from shared.events import BreakerClosed, BreakerHalfOpened, BreakerOpened, BreakerReset, TaskAssigned

BreakerStatus = Literal["closed", "open", "half_open"]


class BreakerView(msgspec.Struct, kw_only=True):
    agent_id: str
    status: BreakerStatus = "closed"
    failure_rate: float = 0.0
    reason: str = ""
    opened_ts: float = 0.0
    retry_after_ts: float = 0.0
    probes_allowed: int = 0
    probes_assigned: int = 0
    last_change_ts: float = 0.0
    times_opened: int = 0


class BreakersState(msgspec.Struct, kw_only=True):
    breakers: dict[str, BreakerView] = {}


def _breaker(state: BreakersState, agent_id: str) -> BreakerView:
    found = state.breakers.get(agent_id)
    if found is None:
        found = BreakerView(agent_id=agent_id)
        state.breakers[agent_id] = found
    return found


def apply_breakers(state: BreakersState, recorded: Recorded) -> BreakersState:
    event = recorded.event
    match event:
        case BreakerOpened():
            breaker = _breaker(state, event.agent_id)
            breaker.status = "open"
            breaker.failure_rate = event.failure_rate
            breaker.reason = event.reason
            breaker.opened_ts = event.ts
            breaker.retry_after_ts = event.retry_after_ts
            breaker.probes_allowed = 0
            breaker.probes_assigned = 0
            breaker.last_change_ts = event.ts
            breaker.times_opened += 1
        case BreakerHalfOpened():
            breaker = _breaker(state, event.agent_id)
            breaker.status = "half_open"
            breaker.probes_allowed = event.probes_allowed
            breaker.probes_assigned = 0
            breaker.last_change_ts = event.ts
        case BreakerClosed() | BreakerReset():
            breaker = _breaker(state, event.agent_id)
            breaker.status = "closed"
            breaker.reason = getattr(event, "reason", "") or "reset"
            breaker.probes_allowed = 0
            breaker.probes_assigned = 0
            breaker.last_change_ts = event.ts
        case TaskAssigned():
            found = state.breakers.get(event.agent_id)
            if found is not None and found.status == "half_open":
                found.probes_assigned += 1
        case _:
            pass
    return state


def admits(state: BreakersState, agent_id: str) -> str | None:
    """None if the agent's breaker lets a new task through, else why not."""
    breaker = state.breakers.get(agent_id)
    if breaker is None or breaker.status == "closed":
        return None
    if breaker.status == "open":
        return "circuit breaker open"
    if breaker.probes_assigned >= breaker.probes_allowed:
        return "circuit breaker half-open: probe quota used"
    return None
