"""Router shell: wake on events that change who can take what, decide, append, repeat.

Every instance keeps the full fleet view; the work consumer only says *when* to look. Appends are
made against the last sequence of everything about the agent (``hive.evt.*.<agent>.*``: the agent
and its circuit breaker), so two instances racing for the same agent cannot both win, and nothing
is assigned on a view that missed the breaker opening: the loser catches up and decides again.
One assignment per task attempt is enforced by the message id ``assign:<task>:<attempt>``.
"""

from __future__ import annotations

import time
from typing import Any

from services.router.decide import Assign, Decision, next_decision
from services.router.view import ROUTER_VIEW
from shared.bus import AppendResult, ConcurrencyConflict, Recorded
from shared.events import (
    AgentRecovered,
    AgentRegistered,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerReset,
    Event,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskRequeued,
    TaskSubmitted,
)
from shared.service import Service
from shared.subjects import entity_subjects, events_of_type
from shared.work import Retry, WorkSpec

TRIGGERS: list[type[Event]] = [
    TaskSubmitted,
    TaskRequeued,
    TaskCompleted,
    TaskAttemptFailed,
    TaskFailed,
    TaskCancelled,
    AgentRegistered,
    AgentRecovered,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerReset,
]
"""Events after which a waiting task may fit somewhere: a new task or freed/added capacity."""


class RouterService(Service):
    name = "router"

    async def setup(self) -> None:
        self.view = self.projection(ROUTER_VIEW)
        self.work(
            WorkSpec(
                durable="router",
                filters=[events_of_type(cls.AGGREGATE, cls.event_type()) for cls in TRIGGERS],
                handler=self.on_trigger,
            )
        )
        self.assignments = 0
        self.conflicts = 0

    def details(self) -> dict[str, Any]:
        fleet = self.view.state.fleet
        return {
            "queue_depth": len(fleet.queue),
            "agents": len(fleet.agents),
            "assignments_made": self.assignments,
            "conflicts": self.conflicts,
        }

    async def on_trigger(self, recorded: Recorded) -> Retry | None:
        await self.view.wait_for(recorded.seq)
        event = recorded.event
        if isinstance(event, TaskRequeued) and event.not_before_ts > time.time():
            return Retry(event.not_before_ts - time.time())
        await self.dispatch(causation_id=event.id)
        return None

    async def dispatch(self, causation_id: str = "") -> None:
        """Append decisions until the queue needs nothing more right now."""
        skip: set[str] = set()
        while True:
            view_seq = self.view.seq
            decision = next_decision(self.view.state, time.time(), skip)
            if decision is None:
                return
            try:
                result = await self._append(decision, causation_id, view_seq)
            except ConcurrencyConflict:
                self.conflicts += 1
                await self.view.catch_up()
                continue
            if result.duplicate:
                skip.add(decision.task_id)
            await self.view.wait_for(result.seq)

    async def _append(self, decision: Decision, causation_id: str, view_seq: int) -> AppendResult:
        task = self.view.state.fleet.tasks[decision.task_id]
        correlation = task.spec.correlation_id or task.task_id
        if isinstance(decision, Assign):
            event = TaskAssigned(
                agent_id=decision.agent_id,
                task_id=decision.task_id,
                attempt=decision.attempt,
                task_seq=await self.view.expected_version("task", decision.task_id),
                session=decision.session,
                task_type=task.spec.task_type,
                payload=task.spec.payload,
                timeout_s=task.spec.timeout_s,
                strategy=decision.strategy,
                score=decision.score,
                breakdown=decision.breakdown,
                rejected=decision.rejected,
                explanation=decision.explanation,
                view_seq=view_seq,
                correlation_id=correlation,
                causation_id=causation_id,
            )
            # Against everything about the agent, its breaker included: an assignment decided before
            # the router saw the breaker open (or the agent go silent) is refused, not stored.
            result = await self.bus.append(
                event,
                expected=await self.view.expected_entity_version(decision.agent_id),
                msg_id=f"assign:{decision.task_id}:{decision.attempt}",
                expected_filter=entity_subjects(decision.agent_id),
            )
            if not result.duplicate:
                self.assignments += 1
                self.log.debug("task_assigned", task_id=decision.task_id, agent_id=decision.agent_id)
            return result
        queued = TaskQueued(
            task_id=decision.task_id,
            attempt=decision.attempt,
            reason=decision.reason,
            detail=decision.detail,
            correlation_id=correlation,
            causation_id=causation_id,
        )
        return await self.bus.append(
            queued,
            expected=await self.view.expected_version("task", decision.task_id),
            msg_id=f"queued:{decision.task_id}:{decision.attempt}",
        )
