"""The router's projection, kept by a pure apply: the fleet (agents, load, queue), the breakers, the
learned performance of every agent, the adaptive strategy's weights and what concurrency, rate-limit
and affinity keys hold (``keys.py``). The balancer keeps the
same state inside its own, to judge moves as the router would.

Outcomes are learned before the fleet applies the event: the fleet view still says who held the
attempt, and it drops a finished task's holder once applied.
"""

from __future__ import annotations

import msgspec

from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.routing.adaptive import AdaptiveState, observe
from shared.domain.routing.keys import KeysState, apply_keys
from shared.domain.routing.performance import PerformanceState, learn, outcome_of
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentQuarantined,
    AgentRecovered,
    AgentRegistered,
    AgentStalled,
    AgentUnresponsive,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskRequeued,
    TaskSubmitted,
)
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded
from shared.subjects import aggregate_filter, type_filters


class RouterState(msgspec.Struct, kw_only=True):
    fleet: FleetState = msgspec.field(default_factory=FleetState)
    breakers: BreakersState = msgspec.field(default_factory=BreakersState)
    performance: PerformanceState = msgspec.field(default_factory=PerformanceState)
    adaptive: AdaptiveState = msgspec.field(default_factory=AdaptiveState)
    keys: KeysState = msgspec.field(default_factory=KeysState)


FLEET_ONLY: frozenset[type] = frozenset(
    {
        TaskSubmitted,
        TaskQueued,
        AgentRegistered,
        AgentDraining,
        AgentDeregistered,
        AgentUnresponsive,
        AgentStalled,
        AgentRecovered,
        AgentQuarantined,
    }
)
"""Events (of exactly these types) that only the fleet applies: none is a report (the fleet
admits it), none is an outcome to learn from, and the breakers and the keys have no case for them.
A submission is about a third of what the router reads: it skips the four other dispatches."""


def apply_router(state: RouterState, recorded: Recorded) -> RouterState:
    if type(recorded.event) in FLEET_ONLY:
        apply_fleet(state.fleet, recorded)
        return state
    if not admits(state.fleet, recorded):
        return state
    return apply_admitted(state, recorded)


def apply_admitted(state: RouterState, recorded: Recorded) -> RouterState:
    """``apply_router`` for an event its fleet ``admits`` (asked by the caller, before anything
    applied it)."""
    outcome = outcome_of(state.fleet, recorded)
    if outcome is not None:
        learn(state.performance, outcome)
        observe(state.adaptive, outcome)
    apply_fleet(state.fleet, recorded)
    apply_breakers(state.breakers, recorded)
    apply_keys(state.keys, state.fleet, recorded)
    return state


ROUTER_READS: tuple[str, ...] = (
    aggregate_filter("agent"),
    aggregate_filter("breaker"),
    aggregate_filter("system"),
    *(
        subject_filter
        for event_type in (TaskSubmitted, TaskQueued, TaskRequeued, TaskFailed, TaskCancelled)
        for subject_filter in type_filters("task", event_type.event_type())
    ),
    *type_filters("task", TaskCompleted.event_type()),
    *type_filters("task", TaskAttemptFailed.event_type()),
)
"""Agents, breakers and system events (keys' limits, slots and tokens) whole; of the tasks, what
puts them in the queue, takes them out or teaches how an agent did. Not a task's start or progress
(nothing it decides reads them: a completion from ``assigned`` is one) nor workflows."""

ROUTER_VIEW: ProjectionSpec[RouterState] = ProjectionSpec(
    name="router",
    state_type=RouterState,
    initial=RouterState,
    apply=apply_router,
    reads=ROUTER_READS,
)
