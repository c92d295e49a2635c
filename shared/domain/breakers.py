"""The breaker view: per-agent circuit breaker state as the log says it is. Pure.

Recovery decides the transitions (closed -> open -> half_open -> closed/open, see
``shared/domain/breaker_policy.py``) and appends them; this view only records them, the probe
assignments made while half-open and how those probes ended, so the router can ask ``admits``
before giving an agent work. ``last_change_seq`` is where the breaker's sliding window starts:
outcomes before a transition or a reset do not count after it. Reports reach it only through a view
that admits them (``shared/domain/fleet.py``: ``admits``), so a probe is settled only by its holder.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from shared.domain.outcomes import AGENT_FAULTS
from shared.events import (
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReset,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskEvent,
    TaskRequeued,
)
from shared.recorded import Recorded

BreakerStatus = Literal["closed", "open", "half_open"]
BREAKER_STATE_VALUES: Final[dict[str, float]] = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
"""orchestration_circuit_breaker_state: 0 closed, 1 half-open, 2 open (an agent never tripped: 0)."""


class BreakerView(msgspec.Struct, kw_only=True):
    agent_id: str
    status: BreakerStatus = "closed"
    failure_rate: float = 0.0
    reason: str = ""
    opened_ts: float = 0.0
    retry_after_ts: float = 0.0
    probes_allowed: int = 0
    probes_assigned: int = 0
    probe_tasks: dict[str, int] = {}
    """task id -> attempt of the probes sent while half-open and not settled yet."""
    probe_successes: int = 0
    probe_failures: int = 0
    last_change_ts: float = 0.0
    last_change_seq: int = 0
    times_opened: int = 0


class BreakersState(msgspec.Struct, kw_only=True):
    breakers: dict[str, BreakerView] = {}
    probes: dict[str, str] = {}
    """task id -> agent whose half-open breaker it probes (to settle probes from task events)."""


def _breaker(state: BreakersState, agent_id: str) -> BreakerView:
    found = state.breakers.get(agent_id)
    if found is None:
        found = BreakerView(agent_id=agent_id)
        state.breakers[agent_id] = found
    return found


def _transition(state: BreakersState, breaker: BreakerView, recorded: Recorded) -> None:
    for task_id in breaker.probe_tasks:
        state.probes.pop(task_id, None)
    breaker.probe_tasks = {}
    breaker.probes_assigned = 0
    breaker.probe_successes = 0
    breaker.probe_failures = 0
    breaker.last_change_ts = recorded.event.ts
    breaker.last_change_seq = recorded.seq


def _probe(state: BreakersState, task_id: str, attempt: int) -> BreakerView | None:
    """The half-open breaker this attempt probes, removed from its pending probes."""
    agent_id = state.probes.get(task_id)
    breaker = state.breakers.get(agent_id or "")
    if breaker is None or breaker.probe_tasks.get(task_id) != attempt:
        return None
    del breaker.probe_tasks[task_id]
    del state.probes[task_id]
    return breaker


def apply_breakers(state: BreakersState, recorded: Recorded) -> BreakersState:
    event = recorded.event
    match event:
        case BreakerOpened():
            breaker = _breaker(state, event.agent_id)
            _transition(state, breaker, recorded)
            breaker.status = "open"
            breaker.failure_rate = event.failure_rate
            breaker.reason = event.reason
            breaker.opened_ts = event.ts
            breaker.retry_after_ts = event.retry_after_ts
            breaker.probes_allowed = 0
            breaker.times_opened += 1
        case BreakerHalfOpened():
            breaker = _breaker(state, event.agent_id)
            _transition(state, breaker, recorded)
            breaker.status = "half_open"
            breaker.probes_allowed = event.probes_allowed
        case BreakerClosed() | BreakerReset():
            breaker = _breaker(state, event.agent_id)
            _transition(state, breaker, recorded)
            breaker.status = "closed"
            breaker.reason = event.reason if isinstance(event, BreakerClosed) else "reset"
            breaker.failure_rate = 0.0
            breaker.probes_allowed = 0
        case TaskAssigned():
            found = state.breakers.get(event.agent_id)
            if found is not None and found.status == "half_open":
                found.probes_assigned += 1
                found.probe_tasks[event.task_id] = event.attempt
                state.probes[event.task_id] = event.agent_id
        case TaskCompleted():
            probed = _probe(state, event.task_id, event.attempt)
            if probed is not None:
                probed.probe_successes += 1
        case TaskAttemptFailed():
            probed = _probe(state, event.task_id, event.attempt)
            if probed is not None:
                if event.retryable and event.failure_type in AGENT_FAULTS:
                    probed.probe_failures += 1
                else:
                    probed.probes_assigned -= 1  # says nothing about the agent: send another probe
        case TaskRequeued():
            probed = _probe(state, event.task_id, event.attempt - 1)
            if probed is not None:
                probed.probe_failures += 1  # the probe was lost (agent silent, restarted, ...)
        case TaskCancelled():
            probed = _probe(state, event.task_id, event.attempt)
            if probed is not None:
                probed.probes_assigned -= 1
        case _:
            pass
    return state


def apply_task_end(state: BreakersState, recorded: Recorded) -> None:
    """``apply_breakers`` for a task's end (completed, failed, requeued, cancelled), skipped when
    it cannot change a breaker: it does so only by settling a probe, and only a task in ``probes``
    is one (``_probe``). Views that route events by type call it instead of ``apply_breakers``."""
    event = recorded.event
    if isinstance(event, TaskEvent) and event.task_id in state.probes:
        apply_breakers(state, recorded)


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
