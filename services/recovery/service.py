"""Recovery shell: turns failed attempts into retries or terminal failures, requeues orphans."""

from __future__ import annotations

import time
from typing import Any

from services.recovery.decide import GiveUp, Requeue, after_failed_attempt, orphaned_by_restart
from services.recovery.view import RECOVERY_VIEW
from shared.bus import ConcurrencyConflict, Recorded
from shared.events import AgentRegistered, TaskAttemptFailed, TaskFailed, TaskRequeued
from shared.service import Service
from shared.subjects import events_of_type
from shared.work import WorkSpec

MAX_CONFLICT_RETRIES = 20


class RecoveryService(Service):
    name = "recovery"

    async def setup(self) -> None:
        self.view = self.projection(RECOVERY_VIEW)
        self.work(
            WorkSpec(
                durable="recovery",
                filters=[
                    events_of_type("task", TaskAttemptFailed.event_type()),
                    events_of_type("agent", AgentRegistered.event_type()),
                ],
                handler=self.on_event,
            )
        )
        self.requeued = 0
        self.failed = 0

    def details(self) -> dict[str, Any]:
        return {"requeued": self.requeued, "failed": self.failed}

    async def on_event(self, recorded: Recorded) -> None:
        await self.view.wait_for(recorded.seq)
        event = recorded.event
        if isinstance(event, TaskAttemptFailed):
            await self._settle_failed_attempt(event)
        elif isinstance(event, AgentRegistered):
            await self._requeue_orphans(event)

    async def _settle_failed_attempt(self, event: TaskAttemptFailed) -> None:
        for _ in range(MAX_CONFLICT_RETRIES):
            task = self.view.state.fleet.tasks.get(event.task_id)
            if task is None or task.status != "retrying" or task.attempt != event.attempt:
                return
            decision = after_failed_attempt(task, event.retryable, time.time())
            try:
                await self._append_decision(decision, causation_id=event.id)
                return
            except ConcurrencyConflict:
                await self.view.catch_up()

    async def _requeue_orphans(self, event: AgentRegistered) -> None:
        for _ in range(MAX_CONFLICT_RETRIES):
            agent = self.view.state.fleet.agents.get(event.agent_id)
            if agent is None:
                return
            orphans = orphaned_by_restart(self.view.state.fleet, agent, agent.session)
            if not orphans:
                return
            try:
                for task_id in orphans:
                    task = self.view.state.fleet.tasks[task_id]
                    await self._append_decision(
                        Requeue(
                            task_id=task_id,
                            attempt=task.attempt + 1,
                            reason="agent_restarted",
                            previous_agent_id=event.agent_id,
                            not_before_ts=0.0,
                        ),
                        causation_id=event.id,
                    )
                return
            except ConcurrencyConflict:
                await self.view.catch_up()

    async def _append_decision(self, decision: Requeue | GiveUp, causation_id: str) -> None:
        task_id = decision.task_id
        correlation = self.view.state.fleet.tasks[task_id].spec.correlation_id or task_id
        expected = await self.view.expected_version("task", task_id)
        if isinstance(decision, Requeue):
            result = await self.bus.append(
                TaskRequeued(
                    task_id=task_id,
                    attempt=decision.attempt,
                    previous_agent_id=decision.previous_agent_id,
                    reason=decision.reason,
                    not_before_ts=decision.not_before_ts,
                    excluded_agent_ids=decision.excluded_agent_ids,
                    correlation_id=correlation,
                    causation_id=causation_id,
                ),
                expected=expected,
                msg_id=f"requeue:{task_id}:{decision.attempt}",
            )
            self.requeued += 1
        else:
            result = await self.bus.append(
                TaskFailed(
                    task_id=task_id,
                    attempt=decision.attempt,
                    error=decision.error,
                    failure_type=decision.failure_type,
                    correlation_id=correlation,
                    causation_id=causation_id,
                ),
                expected=expected,
                msg_id=f"failed:{task_id}",
            )
            self.failed += 1
        await self.view.wait_for(result.seq)
