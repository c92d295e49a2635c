"""Test agent handlers without NATS: a made-up assignment, progress captured, cancellation on demand.

    from shared.agent.testing import TaskEnvironment

    async def test_review_comments_on_the_diff() -> None:
        env = TaskEnvironment("code_review", {"diff": "..."})
        report = await env.run(agent)          # the agent's handler for code_review, or a handler
        assert report.completed and report.quality == 0.9
        assert env.progress[0].percent == 50

The handler runs as the SDK runs it: the same context, the task's timeout, cancellation as when
Hive takes the attempt away (``is_cancelled`` set, the handler cancelled), and the same judgement
of what it returned or raised (a quality outside 0..1 or a result that is not JSON fails for good).
``report`` says what the agent would have told Hive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.agent.context import TaskContext, TaskOutcome
from shared.agent.errors import AttemptSuperseded
from shared.agent.handlers import Handler
from shared.agent.sdk import Agent
from shared.agent.settle import Failure, failure_of, missing_handler, settle, timed_out
from shared.events import FailureType, TaskAssigned

__all__ = ["Progress", "RunReport", "TaskEnvironment"]


@dataclass(frozen=True)
class Progress:
    """One ``progress`` call of the handler."""

    percent: float
    message: str


@dataclass(frozen=True)
class RunReport:
    """What the agent would have reported: a completion, a failed attempt, or nothing (cancelled).

    Attributes:
        status: ``completed``, ``failed`` or ``cancelled`` (Hive took the attempt away: the SDK
            reports nothing then).
        result, quality: Of a completion.
        error, failure_type, retryable: Of a failed attempt (``retryable`` False: the task fails
            for good; True: Hive retries it per its retry policy).
        progress: Every ``progress`` call, in order.
        duration_s: How long the handler ran.
    """

    status: Literal["completed", "failed", "cancelled"]
    result: Any = None
    quality: float | None = None
    error: str = ""
    failure_type: FailureType | None = None
    retryable: bool | None = None
    progress: list[Progress] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


class TaskEnvironment:
    """One made-up attempt of a task, to run a handler (or an agent's handler) on.

    Args:
        task_type: The task's type; with an ``Agent``, picks its handler.
        payload: The task's payload (default: empty).
        attempt: Attempt number the handler sees (1 first; more after failures or takeovers).
        timeout_s: The task's timeout: the handler is cancelled and the attempt fails past it.
        task_id: The task's id.
        agent_id: The agent's id the context names (default: the agent's, with an ``Agent``).
        on_progress: Called on each progress call, e.g. to ``cancel`` or ``supersede`` mid-way.
    """

    def __init__(
        self,
        task_type: str = "task",
        payload: dict[str, Any] | None = None,
        *,
        attempt: int = 1,
        timeout_s: float = 300.0,
        task_id: str = "test-task",
        agent_id: str = "",
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.task_type = task_type
        self.payload = payload or {}
        self.attempt = attempt
        self.timeout_s = timeout_s
        self.task_id = task_id
        self.agent_id = agent_id
        self.on_progress = on_progress
        self.progress: list[Progress] = []
        self._cancelled = False
        self._superseded = ""
        self._context: TaskContext | None = None
        self._running: asyncio.Task[Any] | None = None

    def cancel(self) -> None:
        """Take the attempt away, as Hive's ``task_cancel_requested`` does: ``is_cancelled`` turns
        True and the handler is cancelled (at once when it runs; as it starts otherwise)."""
        self._cancelled = True
        if self._context is not None:
            self._context._cancel()
        if self._running is not None:
            self._running.cancel()

    def supersede(self, reason: str = "attempt 1 superseded by attempt 2") -> None:
        """Let another attempt take over: the handler's next ``progress`` raises ``AttemptSuperseded``."""
        self._superseded = reason

    async def run(self, target: Agent | Handler) -> RunReport:
        """Run `target` (a handler, or the agent's handler for ``task_type``) and say how it ended."""
        handler = target.handler_for(self.task_type) if isinstance(target, Agent) else target
        agent_id = self.agent_id or (target.agent_id if isinstance(target, Agent) else "test-agent")
        assignment = TaskAssigned(
            agent_id=agent_id,
            task_id=self.task_id,
            attempt=self.attempt,
            task_type=self.task_type,
            payload=self.payload,
            timeout_s=self.timeout_s,
        )
        context = TaskContext(assignment, self._record, started_at=time.time())
        self._context = context
        started = time.monotonic()
        if handler is None:
            handled = target._handlers.by_type if isinstance(target, Agent) else {}
            return self._failed(missing_handler(agent_id, self.task_type, handled), started)
        if self._cancelled:
            context._cancel()
        self._running = asyncio.ensure_future(handler(context))
        if self._cancelled:
            self._running.cancel()
        try:
            async with asyncio.timeout(self.timeout_s) as limit:
                value = await self._running
        except asyncio.CancelledError:
            if not context.is_cancelled:
                raise  # the test itself was cancelled
            return self._ended("cancelled", started)
        except Exception as exc:
            if context.is_cancelled:
                return self._ended("cancelled", started)
            return self._failed(timed_out(self.timeout_s) if limit.expired() else failure_of(exc), started)
        finally:
            self._running = None
        if context.is_cancelled:
            return self._ended("cancelled", started)
        outcome = settle(value)
        if isinstance(outcome, Failure):
            return self._failed(outcome, started)
        return self._completed(outcome, started)

    async def _record(self, context: TaskContext, percent: float, message: str) -> None:
        if self._superseded:
            raise AttemptSuperseded(self._superseded)
        update = Progress(percent, message)
        self.progress.append(update)
        if self.on_progress is not None:
            self.on_progress(update)
        await asyncio.sleep(0)  # a report is a network round trip: a cancellation lands here, as in the SDK

    def _ended(self, status: Literal["completed", "failed", "cancelled"], started: float) -> RunReport:
        return RunReport(status, progress=list(self.progress), duration_s=time.monotonic() - started)

    def _completed(self, outcome: TaskOutcome, started: float) -> RunReport:
        return RunReport(
            "completed",
            result=outcome.result,
            quality=outcome.quality,
            progress=list(self.progress),
            duration_s=time.monotonic() - started,
        )

    def _failed(self, failure: Failure, started: float) -> RunReport:
        return RunReport(
            "failed",
            error=failure.error,
            failure_type=failure.failure_type,
            retryable=failure.retryable,
            progress=list(self.progress),
            duration_s=time.monotonic() - started,
        )
