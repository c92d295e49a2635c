"""Routing decisions: pure functions of (router state, task, now). No NATS, no clock of their own.

``next_decision`` walks the queue most-urgent-first and returns the first thing to do: an
``Assign`` for a task an agent can take now, or a ``Hold`` for a task seen for the first time that
no agent can take (it is recorded as queued, with the reason, and assigned as soon as one frees).
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from services.router.view import RouterState
from shared.domain.breakers import admits
from shared.domain.fleet import AgentView, TaskView
from shared.events import RejectedCandidate

MAX_REJECTED_SHOWN = 5


class Assign(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    attempt: int
    agent_id: str
    session: str
    strategy: str
    score: float
    breakdown: dict[str, float]
    rejected: list[RejectedCandidate]
    explanation: str


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    attempt: int
    reason: str
    detail: str


Decision = Assign | Hold


def ineligibility(state: RouterState, agent: AgentView, task: TaskView) -> str | None:
    """Why `agent` cannot take `task` at all (capacity aside), or None if it could."""
    if agent.status != "active":
        return f"agent is {agent.status}"
    blocked = admits(state.breakers, agent.agent_id)
    if blocked is not None:
        return blocked
    if agent.agent_id in task.excluded_agent_ids:
        return "excluded for this attempt"
    needed = [task.spec.task_type, *task.spec.required_capabilities]
    missing = [cap for cap in needed if cap not in agent.capabilities]
    if missing:
        return f"missing capabilities: {', '.join(sorted(set(missing)))}"
    return None


def load_score(agent: AgentView) -> float:
    """1.0 for an idle agent, 0.0 for a full one."""
    return 1.0 - agent.utilisation


def route_task(state: RouterState, task: TaskView) -> Decision:
    """Least-loaded capable agent with room; the preferred agent first when it has room."""
    capable: list[AgentView] = []
    rejected: list[RejectedCandidate] = []
    for agent in state.fleet.agents.values():
        reason = ineligibility(state, agent, task)
        if reason is not None:
            if agent.status != "deregistered":
                rejected.append(RejectedCandidate(agent_id=agent.agent_id, score=0.0, reason=reason))
            continue
        capable.append(agent)
    free = [agent for agent in capable if agent.free > 0]
    if not free:
        if capable:
            return Hold(
                task_id=task.task_id,
                attempt=task.attempt,
                reason="all_capable_agents_busy",
                detail=f"{len(capable)} capable agent(s), all at capacity",
            )
        return Hold(
            task_id=task.task_id,
            attempt=task.attempt,
            reason="no_capable_agent",
            detail=f"no active agent offers {task.spec.task_type} "
            f"with {sorted(task.spec.required_capabilities)}",
        )
    for agent in capable:
        if agent.free <= 0:
            rejected.append(RejectedCandidate(agent_id=agent.agent_id, score=0.0, reason="at capacity"))
    ranked = sorted(
        free,
        key=lambda a: (
            a.agent_id != task.preferred_agent_id,
            -load_score(a),
            a.load,
            a.last_assigned_seq,
            a.agent_id,
        ),
    )
    chosen = ranked[0]
    for other in ranked[1:]:
        rejected.append(
            RejectedCandidate(agent_id=other.agent_id, score=load_score(other), reason="more loaded")
        )
    rejected.sort(key=lambda r: -r.score)
    return Assign(
        task_id=task.task_id,
        attempt=task.attempt,
        agent_id=chosen.agent_id,
        session=chosen.session,
        strategy="load_balanced",
        score=load_score(chosen),
        breakdown={"load": load_score(chosen)},
        rejected=rejected[:MAX_REJECTED_SHOWN],
        explanation=f"least loaded capable agent ({chosen.load}/{chosen.capacity} in flight)",
    )


def next_decision(state: RouterState, now: float, skip: Collection[str] = ()) -> Decision | None:
    """The next thing the router should append, or None when the queue needs nothing now."""
    fleet = state.fleet
    if not fleet.queue:
        return None
    any_room = any(
        a.status == "active" and a.free > 0 and admits(state.breakers, a.agent_id) is None
        for a in fleet.agents.values()
    )
    unplaceable: set[tuple[object, ...]] = set()
    for _rank, _seq, task_id in fleet.queue:
        if task_id in skip:
            continue
        task = fleet.tasks.get(task_id)
        if task is None or task.not_before_ts > now:
            continue
        if task.status == "queued" and not any_room:
            continue
        signature = _placement_signature(task)
        if task.status == "queued" and signature in unplaceable:
            continue
        decision = route_task(state, task)
        if isinstance(decision, Assign):
            return decision
        unplaceable.add(signature)
        if task.status == "pending":
            return decision
    return None


def _placement_signature(task: TaskView) -> tuple[object, ...]:
    """Tasks with the same signature fit the same agents: one miss stands for all of them."""
    spec = task.spec
    return (
        spec.task_type,
        tuple(sorted(spec.required_capabilities)),
        tuple(sorted(task.excluded_agent_ids)),
        task.preferred_agent_id,
    )
