"""The routing benchmark without NATS: the same hidden world and task stream, the same pure router.

A discrete-event simulation in virtual time: tasks arrive at a fixed rate, the router's pure
``next_decision`` runs after every arrival and completion exactly as the shell does, and agents
finish after a jittered work time reporting a quality drawn from the hidden world. The log it
writes is what the real router would have written, so the same ``routing_figures`` measure it.
Deterministic for a seed: it is what the unit tests run, and ``hive bench routing --offline``.
"""

from __future__ import annotations

import heapq
import random

import msgspec

from services.cli.bench.routing_world import HiddenAgent, World
from services.router.decide import Assign, Decision, Expire, Hold, next_decision
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import RouterState, apply_router
from shared.events import (
    AgentRegistered,
    AnyEvent,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskSubmitted,
)
from shared.recorded import Recorded


class _Log:
    def __init__(self) -> None:
        self.state = RouterState()
        self.records: list[Recorded] = []

    def append(self, event: AnyEvent, ts: float) -> None:
        stamped = msgspec.structs.replace(event, ts=ts)
        recorded = Recorded(len(self.records) + 1, stamped.subject, stamped)
        self.records.append(recorded)
        apply_router(self.state, recorded)


def registration(agent: HiddenAgent) -> AgentRegistered:
    """How a hidden agent registers: what it declares, not its true skill."""
    return AgentRegistered(
        agent_id=agent.agent_id,
        capabilities=agent.capabilities,
        persona=agent.persona,
        capacity=agent.capacity,
        session="sim",
    )


def completion(
    world: World, task_id: str, agent_id: str, attempt: int, rng: random.Random, work_s: float
) -> TaskCompleted:
    """An agent's report of a task done, with a quality drawn from its hidden skill."""
    return TaskCompleted(
        task_id=task_id,
        agent_id=agent_id,
        attempt=attempt,
        quality=world.reported_quality(agent_id, task_id, rng),
        duration_s=work_s,
    )


def decision_event(decision: Decision, seen_seq: int) -> AnyEvent | None:
    """What the router appends for `decision`, made on a view that had read `seen_seq` (None for
    the decisions of keys, which the benchmark's tasks have none of)."""
    if isinstance(decision, Assign):
        return TaskAssigned(
            agent_id=decision.agent_id,
            task_id=decision.task_id,
            attempt=decision.attempt,
            strategy=decision.strategy,
            score=decision.score,
            breakdown=decision.breakdown,
            rejected=decision.rejected,
            explanation=decision.explanation,
            decided_at_seq=seen_seq,
        )
    if isinstance(decision, Hold):
        return TaskQueued(
            task_id=decision.task_id, attempt=decision.attempt, reason=decision.reason, detail=decision.detail
        )
    if isinstance(decision, Expire):
        return TaskFailed(
            task_id=decision.task_id,
            attempt=decision.attempt,
            error=decision.error,
            failure_type="deadline_exceeded",
        )
    return None


def simulate(
    world: World,
    tasks: list[TaskSubmitted],
    *,
    rate: float,
    work_s: float,
    jitter: float = 0.3,
    config: RoutingConfig | None = None,
    seed: int = 7,
) -> list[Recorded]:
    """Run `tasks` through the pure router against `world`; returns the event log."""
    rng = random.Random(seed)
    log = _Log()
    for agent in world.agents.values():
        log.append(registration(agent), 0.0)
    # (time, order, task id, agent id, attempt): arrivals (no agent) and completions, in time order.
    agenda: list[tuple[float, int, str, str, int]] = []
    for index, task in enumerate(tasks):
        heapq.heappush(agenda, (index / rate, index, task.task_id, "", 0))
    by_id = {task.task_id: task for task in tasks}
    order = len(tasks)
    while agenda:
        now, _order, task_id, agent_id, attempt = heapq.heappop(agenda)
        if not agent_id:
            log.append(by_id[task_id], now)
        else:
            log.append(completion(world, task_id, agent_id, attempt, rng, work_s), now)
        while (decision := next_decision(log.state, now, (), config)) is not None:
            event = decision_event(decision, len(log.records))
            if event is None:
                continue
            log.append(event, now)
            if isinstance(decision, Assign):
                done = now + work_s * (1.0 + rng.uniform(-jitter, jitter))
                order += 1
                heapq.heappush(agenda, (done, order, decision.task_id, decision.agent_id, decision.attempt))
    return log.records
