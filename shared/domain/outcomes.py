"""Recent outcomes per agent: what its attempts ended in, how long they took, when it went silent
or stalled.

Pure (``apply_outcomes(state, recorded)``), fed by the log: the circuit breakers' sliding window,
the severity of an unresponsive or stalled agent and the failure prediction are all computed from it.
Bounded: the newest ``MAX_OUTCOMES`` outcomes and ``MAX_EPISODES`` silences (and stalls) per agent.
"""

from __future__ import annotations

import msgspec

from shared.events import AgentStalled, AgentUnresponsive, TaskAttemptFailed, TaskCompleted
from shared.recorded import Recorded

MAX_OUTCOMES = 100
"""Outcomes kept per agent: also the largest count-based breaker window."""
MAX_EPISODES = 20

AGENT_FAULTS: frozenset[str] = frozenset({"agent_error", "task_timeout", "resource_exhaustion"})
"""Failure types that speak against the agent (and count in its circuit breaker)."""


class Outcome(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    ts: float
    ok: bool
    duration_s: float = 0.0
    failure_type: str = ""
    retryable: bool = True


def counts_against_agent(outcome: Outcome) -> bool:
    """A failure the agent is to blame for: a retryable error, a timeout, exhaustion.

    A non-retryable failure says the input was bad, not the agent; infrastructure failures
    (rebalanced, restarted, ...) say nothing about it either.
    """
    return not outcome.ok and outcome.retryable and outcome.failure_type in AGENT_FAULTS


class AgentOutcomes(msgspec.Struct, kw_only=True):
    outcomes: list[Outcome] = []
    """Oldest first."""
    unresponsive_ts: list[float] = []
    """When the agent was declared unresponsive, oldest first."""
    stalled_ts: list[float] = []
    """When the agent was declared stalled, oldest first."""
    last_fault_seq: int | None = None
    """Sequence of the newest outcome that counts against the agent (``counts_against_agent``), 0
    if none, as ``apply_outcomes`` keeps it (None: not kept, e.g. a record built by hand): a closed
    breaker that moved since then has no failure in any window, so nothing can trip it."""


class OutcomesState(msgspec.Struct, kw_only=True):
    agents: dict[str, AgentOutcomes] = {}


def _record(state: OutcomesState, agent_id: str) -> AgentOutcomes:
    found = state.agents.get(agent_id)
    if found is None:
        found = AgentOutcomes(last_fault_seq=0)
        state.agents[agent_id] = found
    return found


def _push(record: AgentOutcomes, outcome: Outcome) -> None:
    record.outcomes.append(outcome)
    if len(record.outcomes) > MAX_OUTCOMES:
        del record.outcomes[: len(record.outcomes) - MAX_OUTCOMES]


def _episode(episodes: list[float], ts: float) -> None:
    episodes.append(ts)
    if len(episodes) > MAX_EPISODES:
        del episodes[: len(episodes) - MAX_EPISODES]


def apply_outcomes(state: OutcomesState, recorded: Recorded) -> OutcomesState:
    """Fed only the reports its view admits (``shared/domain/fleet.py``: ``admits``): each one comes
    from the agent holding the attempt, so each is a real outcome of that agent."""
    event = recorded.event
    match event:
        case TaskCompleted():
            outcome = Outcome(recorded.seq, event.ts, True, event.duration_s)
            _push(_record(state, event.agent_id), outcome)
        case TaskAttemptFailed() if event.agent_id:
            outcome = Outcome(
                recorded.seq, event.ts, False, event.duration_s, event.failure_type, event.retryable
            )
            record = _record(state, event.agent_id)
            _push(record, outcome)
            if counts_against_agent(outcome):
                record.last_fault_seq = recorded.seq
        case AgentUnresponsive():
            _episode(_record(state, event.agent_id).unresponsive_ts, event.ts)
        case AgentStalled():
            _episode(_record(state, event.agent_id).stalled_ts, event.ts)
        case _:
            pass
    return state
