"""Recovery's projection: the fleet (who holds what), the breakers and each agent's recent outcomes."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.outcomes import OutcomesState, apply_outcomes
from shared.domain.routed_apply import (
    apply_routed,
    breakers_part,
    fleet_part,
    outcomes_part,
    task_end_breakers_part,
)
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentQuarantined,
    AgentRecovered,
    AgentRegistered,
    AgentStalled,
    AgentUnresponsive,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReset,
    FailureReported,
    RecoveryActionTaken,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskQueued,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded

PROGRESS = TaskProgress.event_type()


class RecoveryState(msgspec.Struct, kw_only=True):
    fleet: FleetState = msgspec.field(default_factory=FleetState)
    breakers: BreakersState = msgspec.field(default_factory=BreakersState)
    outcomes: OutcomesState = msgspec.field(default_factory=OutcomesState)


def apply_every_part(state: RecoveryState, recorded: Recorded) -> RecoveryState:
    """Every part applies the event, in order (what ``apply_recovery`` does for a type it does not
    route): the fleet first, its ``admits`` asked before anything applies it."""
    if not admits(state.fleet, recorded):
        return state
    apply_fleet(state.fleet, recorded)
    apply_breakers(state.breakers, recorded)
    apply_outcomes(state.outcomes, recorded)
    return state


Part = Callable[[RecoveryState, Recorded], None]

FLEET_ONLY: frozenset[type] = frozenset(
    {
        TaskSubmitted,
        TaskQueued,
        TaskFailed,
        AgentRegistered,
        AgentDraining,
        AgentDeregistered,
        AgentRecovered,
        AgentQuarantined,
    }
)
"""Events (of exactly these types) no part but the fleet has a case for: the breakers act on
transitions, assignments and task ends other than a final failure (a task fails for good only
after its attempt ended), the outcomes on reports and an agent's silence or stall."""

PARTS: dict[type, tuple[Part, ...]] = {
    **{kind: (fleet_part,) for kind in FLEET_ONLY},
    TaskStarted: (fleet_part,),
    TaskProgress: (fleet_part,),
    AgentUnresponsive: (fleet_part, outcomes_part),
    AgentStalled: (fleet_part, outcomes_part),
    TaskAssigned: (fleet_part, breakers_part),
    TaskCompleted: (fleet_part, task_end_breakers_part, outcomes_part),
    TaskAttemptFailed: (fleet_part, task_end_breakers_part, outcomes_part),
    TaskRequeued: (fleet_part, task_end_breakers_part),
    TaskCancelled: (fleet_part, task_end_breakers_part),
    BreakerOpened: (breakers_part,),
    BreakerHalfOpened: (breakers_part,),
    BreakerClosed: (breakers_part,),
    BreakerReset: (breakers_part,),
    FailureReported: (),
    RecoveryActionTaken: (),
}
"""Event type -> the parts that act on it, in ``apply_every_part``'s order (``apply_fleet``,
``apply_breakers``, ``apply_outcomes``: their cases). A type not here goes through every part."""


def apply_recovery(state: RecoveryState, recorded: Recorded) -> RecoveryState:
    """``apply_every_part``, each event handed only to the parts that act on it
    (``tests/unit/test_apply_cost.py`` checks the state is the same, byte for byte)."""
    return apply_routed(state, recorded, PARTS, apply_every_part, state.fleet)


TRACKED_SYSTEM_TYPES: frozenset[str] = frozenset(
    {FailureReported.event_type(), RecoveryActionTaken.event_type()}
)
"""The system events recovery applies (a reported failure and the action taken on it, which time
an incident's recovery); the others (keys' slots and tokens, scale advice...) it skips."""


def ignores_recovery(state: RecoveryState, subject: str) -> bool:
    """Skipped undecoded: workflow events (nothing recovery keeps or decides reads them), a task's
    progress (no holder, outcome, breaker or timeout depends on it) and system events other than
    ``TRACKED_SYSTEM_TYPES``. Still counted in their aggregate's version, so what recovery appends
    is guarded by the version its decision saw. Skipped rather than filtered out on the consumer
    (see ``services/balancer/view.py``: ``ignores_balancer``)."""
    tokens = subject.split(".")
    if len(tokens) < 5:
        return False
    aggregate = tokens[2]
    if aggregate == "task":
        return tokens[4] == PROGRESS
    if aggregate == "system":
        return tokens[4] not in TRACKED_SYSTEM_TYPES
    return aggregate == "workflow"


RECOVERY_VIEW: ProjectionSpec[RecoveryState] = ProjectionSpec(
    name="recovery",
    state_type=RecoveryState,
    initial=RecoveryState,
    apply=apply_recovery,
    ignores=ignores_recovery,
)
