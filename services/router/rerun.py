"""Re-run a recorded routing decision on the view the router had, and compare.

Each assignment records the last sequence its router had applied (``decided_at_seq``), the clock
it read, its mode and, when the tie rule weighed in, its confidence (``tie_confidence`` in the
breakdown); folding the log up to that sequence with the router's own apply gives back
the exact view, and the pure decide function must choose the same agent again. A mismatch means
the decision was not reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.router.decide import Assign, route_task
from shared.bus import EventBus
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.separation import DEFAULT_CONFIDENCE
from shared.domain.routing.view import ROUTER_VIEW
from shared.events import RejectedCandidate, TaskAssigned
from shared.projection import rebuild
from shared.recorded import Recorded
from shared.subjects import notice_subject, type_filters


@dataclass
class Explanation:
    task_id: str
    attempt: int
    seq: int
    view_seq: int
    recorded_agent: str
    recorded_score: float
    recorded_strategy: str
    rerun_agent: str | None
    rerun_score: float | None
    breakdown: dict[str, float] = field(default_factory=dict)
    rejected: list[RejectedCandidate] = field(default_factory=list)
    note: str = ""

    @property
    def reproduced(self) -> bool:
        return self.rerun_agent == self.recorded_agent


def recorded_config(event: TaskAssigned) -> RoutingConfig:
    """The routing configuration an assignment was decided with, as far as it recorded it."""
    return RoutingConfig(
        mode=event.mode or "standard",  # type: ignore[arg-type]
        default_strategy=event.strategy or "adaptive",  # type: ignore[arg-type]
        confidence=event.breakdown.get("tie_confidence", DEFAULT_CONFIDENCE),
    )


async def assignments_of(bus: EventBus, task_id: str) -> list[Recorded]:
    """Every recorded assignment of the task (they live on the agents' aggregates, the task's id in
    their subject: one read of the server's index), and those stored before assignments named their
    task (version 1: every old assignment is read to find them), in log order."""
    found: dict[int, Recorded] = {}
    legacy = type_filters("agent", TaskAssigned.event_type())[1]
    for subject_filter in (notice_subject("*", TaskAssigned.event_type(), task_id), legacy):
        async for item in bus.read(subject_filter=subject_filter):
            if (
                isinstance(item, Recorded)
                and isinstance(item.event, TaskAssigned)
                and item.event.task_id == task_id
            ):
                found[item.seq] = item
    return [found[seq] for seq in sorted(found)]


async def explain_task(bus: EventBus, task_id: str) -> list[Explanation]:
    explanations = []
    for recorded in await assignments_of(bus, task_id):
        event = recorded.event
        assert isinstance(event, TaskAssigned)
        view_seq = event.decided_at_seq or recorded.seq - 1
        state, _ = await rebuild(bus, ROUTER_VIEW, stop_seq=view_seq)
        task = state.fleet.tasks.get(task_id)
        explanation = Explanation(
            task_id=task_id,
            attempt=event.attempt,
            seq=recorded.seq,
            view_seq=view_seq,
            recorded_agent=event.agent_id,
            recorded_score=event.score,
            recorded_strategy=event.strategy,
            rerun_agent=None,
            rerun_score=None,
        )
        if task is None or task.attempt != event.attempt:
            explanation.note = f"the view at {view_seq} does not hold attempt {event.attempt} of the task"
        else:
            decision = route_task(state, task, event.decided_at_ts or event.ts, recorded_config(event))
            if isinstance(decision, Assign):
                explanation.rerun_agent = decision.agent_id
                explanation.rerun_score = decision.score
                explanation.breakdown = decision.breakdown
                explanation.rejected = decision.rejected
            else:
                explanation.note = f"re-run holds the task: {decision.reason} ({decision.detail})"
        explanations.append(explanation)
    return explanations
