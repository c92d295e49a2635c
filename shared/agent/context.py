"""What a handler gets (``TaskContext``) and may return (``TaskOutcome``).

The context shows the task as its author needs it (id, type, payload, attempt, deadline,
cancellation) and one action, ``progress``. How the SDK reports and fences (the assignment event,
the task's last known sequence) stays in private attributes the SDK alone uses.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shared.agent.assignment import Assignment
from shared.events import TaskAssigned

ProgressSink = Callable[["TaskContext", float, str], Awaitable[None]]
"""Where ``TaskContext.progress`` goes: the SDK appends ``task.progress``; the testing helper records."""


@dataclass
class TaskOutcome:
    """What a handler may return to attach a quality score to its result.

    Args:
        result: Any JSON-encodable value; stored in ``task.completed`` and shown by the gateway.
        quality: How good the work was, 0..1, or None if the agent cannot tell. The router learns
            from it which agent does which kind of task best.
    """

    result: Any = None
    quality: float | None = None


class TaskContext:
    """One attempt of a task, as a handler sees it.

    Attributes (read-only): ``task_id``, ``task_type``, ``payload``, ``attempt`` (1, 2, ... : a new
    attempt after a failure or a takeover), ``deadline`` (Unix time by which the attempt must end;
    the SDK cancels the handler then), ``is_cancelled`` (Hive took the attempt away: stop, nothing
    you report will be stored), ``agent_id``.
    """

    def __init__(
        self, assignment: TaskAssigned | Assignment, progress_sink: ProgressSink, *, started_at: float
    ) -> None:
        """Built by the SDK (or ``shared.agent.testing``) for each attempt; not by handlers."""
        self._assignment = assignment
        self._progress_sink = progress_sink
        self._cancelled = False
        self._last_seq = assignment.task_seq
        """The task's last sequence this agent knows: its next report is appended against it."""
        self._deadline = started_at + assignment.timeout_s

    @property
    def task_id(self) -> str:
        return self._assignment.task_id

    @property
    def task_type(self) -> str:
        return self._assignment.task_type

    @property
    def payload(self) -> dict[str, Any]:
        return self._assignment.payload

    @property
    def attempt(self) -> int:
        return self._assignment.attempt

    @property
    def agent_id(self) -> str:
        return self._assignment.agent_id

    @property
    def timeout_s(self) -> float:
        """How long the attempt may run, from its start."""
        return self._assignment.timeout_s

    @property
    def deadline(self) -> float:
        return self._deadline

    def remaining_s(self) -> float:
        """Seconds left before the deadline (0 when past it)."""
        return max(0.0, self._deadline - time.time())

    @property
    def is_cancelled(self) -> bool:
        return self._cancelled

    async def progress(self, percent: float, message: str = "") -> None:
        """Tell Hive how far the work is.

        Args:
            percent: 0..100 (clamped).
            message: A short note shown with the task (what the agent is doing now).

        Raises:
            AttemptSuperseded: the attempt is no longer this agent's (taken over, cancelled): stop.
        """
        await self._progress_sink(self, max(0.0, min(100.0, float(percent))), message)

    def _cancel(self) -> None:
        self._cancelled = True

    def __repr__(self) -> str:
        return f"TaskContext(task_id={self.task_id!r}, task_type={self.task_type!r}, attempt={self.attempt})"
