"""A router state driven as the router shell drives it, without NATS: each decision becomes the
event the shell would append (claims, tokens, assignments, holds, cancellations)."""

from __future__ import annotations

from collections.abc import Callable

from services.router.decide import Assign, Decision, Expire, Hold, next_decision
from services.router.keyed import CancelForKey, ClaimKeys, KeyHold
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import RouterState, apply_router
from shared.events import (
    AgentRegistered,
    AnyEvent,
    KeySlotClaimed,
    RateTokensTaken,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskRequeued,
    TaskSubmitted,
    key_scope,
)
from shared.recorded import Recorded


class World:
    def __init__(self, config: RoutingConfig | None = None) -> None:
        self.state = RouterState()
        self.seq = 0
        self.config = config or RoutingConfig()
        self.decisions: list[Decision] = []
        self.log: list[AnyEvent] = []
        self.listeners: list[Callable[[AnyEvent], None]] = []
        """Called with each event once applied (as the router shell's view listeners are)."""

    def add(self, *events: AnyEvent, ts: float | None = None) -> World:
        for event in events:
            self.seq += 1
            if ts is not None:
                event = _at(event, ts)
            apply_router(self.state, Recorded(self.seq, event.subject, event))
            self.log.append(event)
            for listener in self.listeners:
                listener(event)
        return self

    def agents(self, count: int, capacity: int = 1, **labels: str) -> World:
        for index in range(count):
            self.add(
                AgentRegistered(
                    agent_id=f"a{index}", capabilities={"x": 1.0}, capacity=capacity, labels=labels
                )
            )
        return self

    def submit(self, task_id: str, ts: float = 0.0, **fields: object) -> World:
        return self.add(TaskSubmitted(task_id=task_id, task_type="x", ts=ts, **fields))  # type: ignore[arg-type]

    def drive(self, now: float = 0.0, limit: int = 10_000) -> list[Decision]:
        """Append what the router decides until it decides nothing more (as the shell would)."""
        made: list[Decision] = []
        for _ in range(limit):
            decision = next_decision(self.state, now, (), self.config)
            if decision is None:
                break
            made.append(decision)
            self._append(decision, now)
        else:
            raise AssertionError(f"the router never settles: last decisions {made[-5:]}")
        self.decisions += made
        return made

    def _append(self, decision: Decision, now: float) -> None:
        task = self.state.fleet.tasks[decision.task_id]
        if isinstance(decision, Assign):
            self.add(
                TaskAssigned(
                    agent_id=decision.agent_id,
                    task_id=task.task_id,
                    attempt=task.attempt,
                    rejected=decision.rejected,
                    explanation=decision.explanation,
                ),
                ts=now,
            )
        elif isinstance(decision, ClaimKeys):
            self.claim(decision, now)
            self._append(decision.assign, now)  # as the shell: the assignment follows its claim
        elif isinstance(decision, KeyHold | Hold):
            eligible = decision.eligible_ts if isinstance(decision, KeyHold) else None
            self.add(
                TaskQueued(
                    task_id=task.task_id,
                    attempt=task.attempt,
                    reason=decision.reason,
                    detail=decision.detail,
                    eligible_ts=eligible,
                ),
                ts=now,
            )
        elif isinstance(decision, CancelForKey):
            self.add(
                TaskCancelled(task_id=task.task_id, reason=decision.reason, attempt=task.attempt), ts=now
            )
        elif isinstance(decision, Expire):
            self.add(TaskFailed(task_id=task.task_id, attempt=task.attempt, error=decision.error), ts=now)

    def claim(self, decision: ClaimKeys, now: float = 0.0) -> None:
        """Append what a claim of keys appends before its assignment (the slot, the tokens)."""
        task = self.state.fleet.tasks[decision.task_id]
        if decision.claim is not None:
            self.add(
                KeySlotClaimed(
                    scope=key_scope("concurrency", decision.claim.key),
                    key=decision.claim.key,
                    task_id=task.task_id,
                    attempt=task.attempt,
                ),
                ts=now,
            )
        if decision.take is not None:
            self.add(
                RateTokensTaken(
                    scope=key_scope("rate", decision.take.key),
                    key=decision.take.key,
                    task_id=task.task_id,
                    attempt=task.attempt,
                    units=decision.take.units,
                    tokens_left=decision.take.tokens_left,
                ),
                ts=now,
            )

    def complete(self, task_id: str, now: float = 0.0) -> World:
        task = self.state.fleet.tasks[task_id]
        assert task.agent_id is not None
        return self.add(
            TaskCompleted(task_id=task_id, agent_id=task.agent_id, attempt=task.attempt, quality=0.9), ts=now
        )

    def fail_attempt(self, task_id: str, now: float = 0.0) -> World:
        """The attempt fails (as recovery reports an agent's death) and the task is requeued."""
        task = self.state.fleet.tasks[task_id]
        assert task.agent_id is not None
        attempt = task.attempt
        return self.add(
            TaskAttemptFailed(
                task_id=task_id, agent_id=task.agent_id, attempt=attempt, failure_type="agent_unresponsive"
            ),
            TaskRequeued(task_id=task_id, attempt=attempt + 1, reason="agent lost"),
            ts=now,
        )

    def in_flight(self, key: str | None = None) -> list[str]:
        return sorted(
            t.task_id
            for t in self.state.fleet.tasks.values()
            if t.status in ("assigned", "running") and (key is None or t.spec.concurrency_key == key)
        )


def _at(event: AnyEvent, ts: float) -> AnyEvent:
    import msgspec

    return msgspec.structs.replace(event, ts=ts)
