"""Building router states from events for the pure routing tests (no NATS)."""

from __future__ import annotations

from collections.abc import Iterable

from shared.domain.routing.view import RouterState, apply_router
from shared.events import (
    AgentRegistered,
    AnyEvent,
    CognitiveStyle,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskProfile,
    TaskSubmitted,
)
from shared.recorded import Recorded


class Log:
    """A router state and the sequence of the next event, fed one event at a time."""

    def __init__(self, *events: AnyEvent) -> None:
        self.state = RouterState()
        self.seq = 0
        self.add(*events)

    def add(self, *events: AnyEvent) -> Log:
        for event in events:
            self.seq += 1
            apply_router(self.state, Recorded(self.seq, event.subject, event))
        return self

    def outcomes(
        self,
        agent_id: str,
        task_type: str,
        qualities: Iterable[float | None],
        *,
        style: CognitiveStyle | None = None,
        prefix: str = "",
        duration_s: float = 1.0,
    ) -> Log:
        """Tasks of `task_type` given to `agent_id`, each completed with the quality given (None:
        the attempt failed). An agent not registered yet is registered with room for all of them."""
        if agent_id not in self.state.fleet.agents:
            self.add(AgentRegistered(agent_id=agent_id, capabilities={task_type: 1.0}, capacity=10_000))
        for index, quality in enumerate(qualities):
            task_id = f"{prefix or agent_id}-{task_type}-{style or 'any'}-{self.seq}-{index}"
            self.add(
                TaskSubmitted(
                    task_id=task_id,
                    task_type=task_type,
                    profile=TaskProfile(preferred_cognitive_style=style),
                ),
                TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1),
            )
            if quality is None:
                self.add(
                    TaskAttemptFailed(task_id=task_id, agent_id=agent_id, attempt=1, duration_s=duration_s)
                )
            else:
                self.add(
                    TaskCompleted(
                        task_id=task_id, agent_id=agent_id, attempt=1, quality=quality, duration_s=duration_s
                    )
                )
        return self
