"""The router's own assignments still in flight, laid over its view while it decides. Pure.

The router decides many assignments without waiting to see each one applied by its projection: a
decision is made on the view *plus* the assignments this instance has made that the view has not
applied yet (appended or being appended). ``Assumptions`` applies, in the order they were made,
what such an assignment changes of what decisions read, and ``undo`` takes it all back, so the view
stays the fold of the log:

* the agent holds one more task (its load, free slots and utilisation count it);
* the agent is the one given work last (``last_assigned_seq``: after everything the view applied,
  in the order of the assumptions);
* a half-open breaker counts one more probe.

The tasks themselves are not touched: the caller leaves them out of its decisions (``skip``).
Every ``agent.task_assigned`` records the agents its decision assumed (``assumed``, in order), so
re-running it on the view at ``decided_at_seq`` under the same assumptions gives the same agent.
Whatever a routing rule reads of the view that an assignment changes (a count of work in flight
per key, a rate), ``assume`` must change too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from shared.domain.routing.view import RouterState

ASSUMED_KEY = "~assumed-"
"""Prefix of the stand-in task ids an assumed assignment occupies in an agent's work in flight."""


class Assumptions:
    """Assignments laid over a router state, in order; ``undo`` restores the state exactly."""

    def __init__(self, state: RouterState, after_seq: int) -> None:
        self.state = state
        self.after_seq = after_seq
        self.agents: list[str] = []
        """The agents assumed given work, in order (what ``agent.task_assigned`` records)."""
        self._undo: list[tuple[str, int, bool]] = []
        """(agent id, its last_assigned_seq before, whether a probe was counted) per assumption."""

    def assume(self, agent_id: str) -> None:
        """Count one more assignment to `agent_id` (nothing when the view does not know it)."""
        self.agents.append(agent_id)
        agent = self.state.fleet.agents.get(agent_id)
        if agent is None:
            self._undo.append((agent_id, -1, False))
            return
        agent.in_flight[f"{ASSUMED_KEY}{len(self.agents)}"] = 0
        previous = agent.last_assigned_seq
        agent.last_assigned_seq = self.after_seq + len(self.agents)
        breaker = self.state.breakers.breakers.get(agent_id)
        probe = breaker is not None and breaker.status == "half_open"
        if breaker is not None and probe:
            breaker.probes_assigned += 1
        self._undo.append((agent_id, previous, probe))

    def undo(self) -> None:
        """Take every assumption back, newest first."""
        while self._undo:
            agent_id, previous, probe = self._undo.pop()
            number = len(self.agents)
            self.agents.pop()
            agent = self.state.fleet.agents.get(agent_id)
            if agent is None or previous < 0:
                continue
            del agent.in_flight[f"{ASSUMED_KEY}{number}"]
            agent.last_assigned_seq = previous
            breaker = self.state.breakers.breakers.get(agent_id)
            if probe and breaker is not None:
                breaker.probes_assigned -= 1


@contextmanager
def assuming(state: RouterState, agents: Sequence[str], after_seq: int) -> Iterator[Assumptions]:
    """`state` with assignments to `agents` (in that order) assumed, as if applied right after
    `after_seq`; restored on exit. More may be assumed inside (``Assumptions.assume``)."""
    assumptions = Assumptions(state, after_seq)
    try:
        for agent_id in agents:
            assumptions.assume(agent_id)
        yield assumptions
    finally:
        assumptions.undo()
