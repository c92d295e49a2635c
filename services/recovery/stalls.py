"""Stalled agents, pure: (fleet, heartbeat table, watches, now, policy) -> who stalled, who caught up.

A stalled agent beats but does not take its assignments: its heartbeat loop lives while its inbox
consumer is dead or stuck (the "zombie worker"). Silence cannot show it; only the agent's own word
on what it received can. Each beat carries ``received_seq``, the last inbox sequence the agent took;
the fleet holds the last assignment of the agent's session (``last_assigned_seq``).

* **Watch.** When an active agent's beat is behind its last assignment, the observer notes that
  assignment and the time it saw it pending (its own clock): a watermark the agent must pass.
  Once a beat shows it passed, the watch ends (or moves to a newer pending assignment), so an agent
  that receives everything promptly, however fast work arrives, is never judged.
* **Stalled.** A beat received at least ``after_s`` after the watch began (silence is the other
  path: ``liveness.py``) still says the agent is below the watermark.
* **Busy is not stalled.** An agent whose beat says it is full (``in_flight >= capacity``) may
  rightly not pull while it has no slot: it is not watched. The router never assigns past
  capacity, so an agent with room has no reason to leave an assignment unread.
* **No word, no judgement.** A beat without ``received_seq`` (an agent of an older protocol), or of
  another session than the fleet's, starts no watch.
* **Caught up.** A stalled agent recovers once a beat of its session says it received the
  ``agent.stalled`` event itself (it is on the agent's own subjects, so the inbox delivers it).

Watches are the observer's memory, like the heartbeat table: each recovery instance keeps its own
and starts afresh on restart (a judgement is then only delayed). Several instances deciding the
same thing is harmless (the shell appends against the agent's version, with a derived message id).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from services.recovery.liveness import MarkRecovered
from shared.domain.fleet import AgentView, FleetState
from shared.domain.heartbeats import HeartbeatTable, Liveness


class StallPolicy(msgspec.Struct, frozen=True, kw_only=True):
    after_s: float = 3.0
    """How long an assignment may stay unreceived while the agent beats (``STALL_AFTER_S``)."""


@dataclass
class StallWatch:
    """An assignment the agent must receive: the observer saw it pending at ``since``."""

    session: str
    pending_seq: int
    since: float


class MarkStalled(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    session: str
    received_seq: int
    pending_seq: int
    behind_since_ts: float
    waited_s: float
    reason: str
    unreceived: dict[str, int]


def unreceived_attempts(fleet: FleetState, agent: AgentView, received_seq: int) -> dict[str, int]:
    """The attempts `agent` holds, not started, whose assignment came after `received_seq`."""
    found: dict[str, int] = {}
    for task_id, attempt in sorted(agent.in_flight.items()):
        task = fleet.tasks.get(task_id)
        if task is None or task.attempt != attempt or task.status != "assigned" or not task.assignments:
            continue
        record = task.assignments[-1]
        if record.agent_id == agent.agent_id and record.seq > received_seq:
            found[task_id] = attempt
    return found


def _speaks_for(agent: AgentView, entry: Liveness | None) -> int | None:
    """The inbox sequence the agent's last beat vouches for in its current session, else None."""
    if entry is None or entry.session != agent.session:
        return None
    return entry.received_seq


def _caught_up(agent: AgentView, entry: Liveness | None) -> MarkRecovered | None:
    received = _speaks_for(agent, entry)
    if agent.stall is None or received is None or received < agent.stall.seq:
        return None
    return MarkRecovered(
        agent_id=agent.agent_id,
        session=agent.session,
        reason=f"caught up: it received its inbox up to seq {received} (stalled at seq {agent.stall.seq})",
    )


def _judge(
    fleet: FleetState,
    agent: AgentView,
    entry: Liveness | None,
    table: HeartbeatTable,
    watches: dict[str, StallWatch],
    now: float,
    policy: StallPolicy,
) -> MarkStalled | None:
    received = _speaks_for(agent, entry)
    pending = agent.last_assigned_seq
    if (
        entry is None
        or received is None
        or entry.in_flight >= entry.capacity  # busy: it may rightly pull nothing without a slot
        or pending <= max(received, agent.registered_seq)
    ):
        watches.pop(agent.agent_id, None)
        return None
    watch = watches.get(agent.agent_id)
    if watch is None or watch.session != agent.session or received >= watch.pending_seq:
        watch = StallWatch(session=agent.session, pending_seq=pending, since=now)
        watches[agent.agent_id] = watch
    # Counted from when this observer could hear: beats buffered while it was paused prove nothing.
    since = max(watch.since, table.resumed_at)
    if entry.last_seen - since < policy.after_s:
        return None
    waited = now - watch.since
    return MarkStalled(
        agent_id=agent.agent_id,
        session=agent.session,
        received_seq=received,
        pending_seq=watch.pending_seq,
        behind_since_ts=watch.since,
        waited_s=round(waited, 3),
        reason=(
            f"assignment at seq {watch.pending_seq} not received after {waited:.2f}s "
            f"while it kept beating (it received up to seq {received})"
        ),
        unreceived=unreceived_attempts(fleet, agent, received),
    )


def agent_stalls(
    fleet: FleetState,
    table: HeartbeatTable,
    watches: dict[str, StallWatch],
    now: float,
    policy: StallPolicy,
) -> list[MarkStalled | MarkRecovered]:
    """Active agents found stalled and stalled agents that caught up, in agent id order.

    Updates `watches` (the observer's memory of pending assignments) in place.
    """
    changes: list[MarkStalled | MarkRecovered] = []
    for agent_id in sorted(fleet.agents):
        agent = fleet.agents[agent_id]
        entry = table.agents.get(agent_id)
        change: MarkStalled | MarkRecovered | None = None
        if agent.status == "active":
            change = _judge(fleet, agent, entry, table, watches, now, policy)
        else:
            watches.pop(agent_id, None)
            if agent.status == "stalled":
                change = _caught_up(agent, entry)
        if change is not None:
            changes.append(change)
    for gone in set(watches) - set(fleet.agents):
        del watches[gone]
    return changes
