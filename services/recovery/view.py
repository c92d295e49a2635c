"""Recovery's projection: the fleet (who holds what), the breakers and each agent's recent outcomes."""

from __future__ import annotations

import msgspec

from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.outcomes import OutcomesState, apply_outcomes
from shared.events import FailureReported, RecoveryActionTaken, TaskProgress
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded
from shared.subjects import aggregate_filter

PROGRESS = TaskProgress.event_type()


class RecoveryState(msgspec.Struct, kw_only=True):
    fleet: FleetState = msgspec.field(default_factory=FleetState)
    breakers: BreakersState = msgspec.field(default_factory=BreakersState)
    outcomes: OutcomesState = msgspec.field(default_factory=OutcomesState)


def apply_recovery(state: RecoveryState, recorded: Recorded) -> RecoveryState:
    if not admits(state.fleet, recorded):
        return state
    apply_fleet(state.fleet, recorded)
    apply_breakers(state.breakers, recorded)
    apply_outcomes(state.outcomes, recorded)
    return state


RECOVERY_READS: tuple[str, ...] = tuple(
    aggregate_filter(aggregate) for aggregate in ("agent", "task", "breaker", "system")
)
"""Every aggregate but the workflows (nothing recovery keeps or decides reads them); those it reads
are read whole, so the version of a task, an agent, a breaker or an incident it appends against is
the one its decision saw (``ProjectionRunner.version``)."""

TRACKED_SYSTEM_TYPES: frozenset[str] = frozenset(
    {FailureReported.event_type(), RecoveryActionTaken.event_type()}
)
"""The system events recovery applies (a reported failure and the action taken on it, which time
an incident's recovery); the others (keys' slots and tokens, scale advice...) it skips."""


def ignores_recovery(state: RecoveryState, subject: str) -> bool:
    """Skipped undecoded: a task's progress (no holder, outcome, breaker or timeout depends on it)
    and system events other than ``TRACKED_SYSTEM_TYPES``. Still counted in their aggregate's
    version."""
    tokens = subject.split(".")
    if len(tokens) < 5:
        return False
    if tokens[2] == "task":
        return tokens[4] == PROGRESS
    return tokens[2] == "system" and tokens[4] not in TRACKED_SYSTEM_TYPES


RECOVERY_VIEW: ProjectionSpec[RecoveryState] = ProjectionSpec(
    name="recovery",
    state_type=RecoveryState,
    initial=RecoveryState,
    apply=apply_recovery,
    reads=RECOVERY_READS,
    ignores=ignores_recovery,
)
