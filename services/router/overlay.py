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

A claim of keys in flight (``claim_keys``: a concurrency slot claimed, rate tokens taken, with its
assignment) is laid over the keys in the same way, unless the view applied it already:

* the task holds a slot of its concurrency key, and the key is the one served last;
* the rate key's bucket holds what the take left, at the decision's time.

The caller decides nothing more about a key while a claim of it is in flight (``busy``): the next
claim is appended against the key's last sequence, which the claim in flight moves.

The tasks themselves are not touched: the caller leaves them out of its decisions (``skip``).
Every ``agent.task_assigned`` records the agents its decision assumed (``assumed``, in order), so
re-running it on the view at ``decided_at_seq`` under the same assumptions gives the same agent.
Whatever a routing rule reads of the view that an assignment or a claim changes, ``assume`` or
``claim_keys`` must change too (what a claim changes decides which task goes, never which agent
takes it: re-running an assignment needs only the agents).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from services.router.keyed import ClaimKeys
from shared.domain.fleet import WAITING, TaskView
from shared.domain.routing.keys import Bucket, KeysState
from shared.domain.routing.view import RouterState

V = TypeVar("V")

ASSUMED_KEY = "~assumed-"
"""Prefix of the stand-in task ids an assumed assignment occupies in an agent's work in flight."""


def decided_in_view(task: TaskView | None, attempt: int) -> bool:
    """Whether the view shows that attempt decided already (assigned, ended or superseded, by this
    router or another): the stream can deliver an event to the projection before its publisher
    hears where it was stored, and laid over the view as well, an assignment's slot (or a claim's)
    would be counted twice and a task queued beside a free slot. Such a decision is assumed no more."""
    return task is None or task.attempt != attempt or task.status not in WAITING


class Assumptions:
    """Assignments laid over a router state, in order; ``undo`` restores the state exactly."""

    def __init__(self, state: RouterState, after_seq: int) -> None:
        self.state = state
        self.after_seq = after_seq
        self.agents: list[str] = []
        """The agents assumed given work, in order (what ``agent.task_assigned`` records)."""
        self._undo: list[tuple[str, int, bool]] = []
        """(agent id, its last_assigned_seq before, whether a probe was counted) per assumption."""
        self.busy: set[tuple[str, str]] = set()
        """Keys with a claim laid over: ("c", concurrency key) and ("r", rate key)."""
        self._keys_undo: list[Callable[[], None]] = []

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

    def claim_keys(self, claim: ClaimKeys, ts: float) -> None:
        """Count a claim of keys decided at `ts` (the parts the view has not applied yet)."""
        keys = self.state.keys
        served_at = self.after_seq + len(self.agents)
        if claim.claim is not None:
            key = claim.claim.key
            self.busy.add(("c", key))
            holders = keys.holders.get(key)
            if holders is None or holders.get(claim.task_id) != claim.attempt:
                self._keys_undo.append(_set_holder(keys, key, claim.task_id, claim.attempt))
            self._keys_undo.append(_set_entry(keys.served, key, served_at))
        if claim.take is not None:
            take = claim.take
            self.busy.add(("r", take.key))
            if keys.taken.get(claim.task_id) != claim.attempt:
                bucket = Bucket(tokens=take.tokens_left, ts=ts)
                self._keys_undo.append(_set_entry(keys.buckets, take.key, bucket))

    def undo(self) -> None:
        """Take every assumption back, newest first."""
        while self._keys_undo:
            self._keys_undo.pop()()
        self.busy.clear()
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


def _set_entry(table: dict[str, V], key: str, value: V) -> Callable[[], None]:
    """Set ``table[key]``; the function returned puts back what was there (in place: same order)."""
    had = key in table
    previous = table.get(key)
    table[key] = value

    def restore() -> None:
        if had:
            table[key] = previous  # type: ignore[assignment]
        else:
            del table[key]

    return restore


def _set_holder(keys: KeysState, key: str, task_id: str, attempt: int) -> Callable[[], None]:
    """Count `task_id` among `key`'s holders; the function returned takes it back."""
    created = key not in keys.holders
    restore = _set_entry(keys.holders.setdefault(key, {}), task_id, attempt)

    def undo() -> None:
        restore()
        if created:
            del keys.holders[key]

    return undo


@contextmanager
def assuming(
    state: RouterState,
    agents: Sequence[str],
    after_seq: int,
    claims: Sequence[tuple[ClaimKeys, float]] = (),
) -> Iterator[Assumptions]:
    """`state` with assignments to `agents` (in that order) and `claims` of keys (each with the
    time it was decided) assumed, as if applied right after `after_seq`; restored on exit. More may
    be assumed inside (``Assumptions.assume``, ``Assumptions.claim_keys``)."""
    assumptions = Assumptions(state, after_seq)
    try:
        for agent_id in agents:
            assumptions.assume(agent_id)
        for claim, ts in claims:
            assumptions.claim_keys(claim, ts)
        yield assumptions
    finally:
        assumptions.undo()
