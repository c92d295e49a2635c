"""Liveness decisions, pure: (fleet, heartbeat table, now, policy) -> what changed.

Run on every recovery tick by every instance; several instances deciding the same thing is
harmless because the shell appends against the aggregate's version with a deterministic message id.

* An agent expected to be alive (active, draining, quarantined, stalled) is unresponsive after
  ``missed_limit`` heartbeat intervals without a beat, or ``disconnect_grace_s`` after the NATS
  connection its beats came over closed without a beat since (a killed process).
* An unresponsive agent recovers when its beats come back.
* An attempt running longer than its task's ``timeout_s`` (plus a grace, so a live agent reports its
  own timeout first) is failed as ``task_timeout``.
* A quarantine that is over ends.
"""

from __future__ import annotations

import msgspec

from shared.domain.fleet import AgentView, FleetState, current_attempt
from shared.domain.heartbeats import HeartbeatTable, Liveness

WATCHED = frozenset({"active", "draining", "quarantined", "stalled"})
"""Agent statuses in which heartbeats are expected."""


class LivenessPolicy(msgspec.Struct, frozen=True, kw_only=True):
    interval_s: float = 0.5
    missed_limit: int = 3
    disconnect_grace_s: float = 0.5
    timeout_grace_s: float = 0.5


class MarkUnresponsive(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    session: str
    last_seen_ts: float
    missed_heartbeats: int
    reason: str
    in_flight: dict[str, int]


class MarkRecovered(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    session: str
    reason: str


class TimeOut(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    attempt: int
    agent_id: str
    timeout_s: float
    running_s: float


def interval_of(entry: Liveness | None, policy: LivenessPolicy) -> float:
    """The agent's own period when it announced a longer one than ours."""
    return max(policy.interval_s, entry.interval_s if entry is not None else 0.0)


def _silence(
    agent: AgentView, entry: Liveness | None, table: HeartbeatTable, now: float, policy: LivenessPolicy
) -> MarkUnresponsive | None:
    interval = interval_of(entry, policy)
    baseline = max(table.resumed_at, agent.last_change_ts)
    last = max(baseline, entry.last_seen) if entry is not None else baseline
    silent_for = now - last
    missed = int(silent_for // interval)
    reason = ""
    if silent_for >= interval * policy.missed_limit:
        reason = f"no heartbeat for {silent_for:.2f}s ({policy.missed_limit} x {interval:g}s missed)"
    elif (
        entry is not None
        and entry.disconnected_at is not None
        and entry.last_seen <= entry.disconnected_at
        and now - entry.disconnected_at >= policy.disconnect_grace_s
    ):
        reason = f"its NATS connection closed ({entry.disconnect_reason or 'no reason'}) and no beat since"
    if not reason:
        return None
    return MarkUnresponsive(
        agent_id=agent.agent_id,
        session=agent.session,
        last_seen_ts=entry.last_ts if entry is not None else 0.0,
        missed_heartbeats=missed,
        reason=reason,
        in_flight=dict(agent.in_flight),
    )


def _back(
    agent: AgentView, entry: Liveness | None, now: float, policy: LivenessPolicy
) -> MarkRecovered | None:
    if entry is None or entry.last_seen <= agent.last_change_ts:
        return None
    if entry.disconnected_at is not None and entry.last_seen <= entry.disconnected_at:
        return None
    if now - entry.last_seen >= interval_of(entry, policy) * policy.missed_limit:
        return None
    return MarkRecovered(agent_id=agent.agent_id, session=agent.session, reason="heartbeats resumed")


def agent_liveness(
    fleet: FleetState, table: HeartbeatTable, now: float, policy: LivenessPolicy
) -> list[MarkUnresponsive | MarkRecovered]:
    """Agents that went silent and agents whose beats came back, in agent id order."""
    changes: list[MarkUnresponsive | MarkRecovered] = []
    for agent_id in sorted(fleet.agents):
        agent = fleet.agents[agent_id]
        entry = table.agents.get(agent_id)
        change: MarkUnresponsive | MarkRecovered | None = None
        if agent.status in WATCHED:
            change = _silence(agent, entry, table, now, policy)
        elif agent.status == "unresponsive":
            change = _back(agent, entry, now, policy)
        if change is not None:
            changes.append(change)
    return changes


def overdue_attempts(fleet: FleetState, now: float, grace_s: float) -> list[TimeOut]:
    """Attempts running past their task's timeout (an unresponsive agent's are reassigned instead)."""
    overdue = []
    for agent_id in sorted(fleet.agents):
        agent = fleet.agents[agent_id]
        if agent.status == "unresponsive":
            continue
        for task_id, attempt in sorted(agent.in_flight.items()):
            task = current_attempt(fleet, task_id, attempt)
            if task is None:
                continue
            started = task.started_ts or task.assigned_ts
            if started is None:
                continue
            running = now - started
            if running > task.spec.timeout_s + grace_s:
                overdue.append(
                    TimeOut(
                        task_id=task_id,
                        attempt=attempt,
                        agent_id=agent_id,
                        timeout_s=task.spec.timeout_s,
                        running_s=running,
                    )
                )
    return overdue


def quarantines_over(fleet: FleetState, now: float) -> list[MarkRecovered]:
    return [
        MarkRecovered(agent_id=agent.agent_id, session=agent.session, reason="quarantine over")
        for agent_id, agent in sorted(fleet.agents.items())
        if agent.status == "quarantined" and agent.quarantined_until_ts <= now
    ]
