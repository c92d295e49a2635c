"""Re-run a recorded routing decision on the view the router had, and compare.

Each assignment records the last sequence its router had applied (``decided_at_seq``), the clock
it read, its mode and, when the tie rule weighed in, its confidence (``tie_confidence`` in the
breakdown); folding the log up to that sequence with the router's own apply, and laying over it
the router's own assignments it had not applied yet (``assumed``, ``overlay.py``), gives back the
exact view, and the pure decide function must choose the same agent again. A mismatch means the
decision was not reproducible.

One input is in no other event: the agents other router instances had just given work to
(``RoutingConfig.crowded``), which steer a tie only while rivals race. So an assignment records
what of it counted: a tie taken in the deciding instance's own order (every near contender
crowded) is re-run from ``decided_by``, one that passed over some crowded contenders for another
from ``passed_over``. An assignment recorded before those fields is re-run without the crowded
agents and says so (``note``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from services.router.decide import Assign, route_task
from services.router.overlay import assuming
from shared.bus import EventBus
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.separation import DEFAULT_CONFIDENCE
from shared.domain.routing.view import ROUTER_VIEW
from shared.events import RejectedCandidate, TaskAssigned
from shared.projection import rebuild
from shared.recorded import Recorded
from shared.story import task_story


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


UNLISTED_RIVALS = (
    "the tie passed over agents other router instances had just given work to, and the assignment "
    "does not list them (recorded before passed_over): the re-run names the least loaded contender"
)
UNNAMED_INSTANCE = (
    "the tie was taken in its router instance's own order, but the assignment does not name the "
    "instance (recorded before decided_by): the re-run names the least loaded contender"
)


def recorded_config(event: TaskAssigned, agents: Iterable[str]) -> RoutingConfig:
    """The routing configuration an assignment was decided with, as far as it recorded it.

    A tie taken in the deciding instance's own order had every near contender crowded: the re-run
    counts every one of `agents` (the view's fleet) as crowded and decides as that instance. One
    that passed over crowded contenders counts those as crowded."""
    config = RoutingConfig(
        mode=event.mode or "standard",  # type: ignore[arg-type]
        default_strategy=event.strategy or "adaptive",  # type: ignore[arg-type]
        confidence=event.breakdown.get("tie_confidence", DEFAULT_CONFIDENCE),
    )
    if event.decided_by and event.breakdown.get("tie_in_own_order"):
        return msgspec.structs.replace(config, instance=event.decided_by, crowded=frozenset(agents))
    if event.passed_over:
        return msgspec.structs.replace(config, crowded=frozenset(event.passed_over))
    return config


def unlisted_input(event: TaskAssigned) -> str:
    """Why a re-run of `event` may name another agent than it recorded ("": it should not)."""
    if event.breakdown.get("tie_in_own_order"):
        return "" if event.decided_by else UNNAMED_INSTANCE
    unlisted = event.breakdown.get("tie_avoided_rival_agent") and not event.passed_over
    return UNLISTED_RIVALS if unlisted else ""


async def assignments_of(bus: EventBus, task_id: str) -> list[Recorded]:
    """Every recorded assignment of the task, in log order: they live on the agents' aggregates
    (``shared/story.py`` finds them within the task's life, and those stored by subject before)."""
    return await task_story(bus, task_id, own=False, notices={TaskAssigned.event_type()})


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
            with assuming(state, event.assumed, view_seq):  # its router's appends not yet applied
                config = recorded_config(event, state.fleet.agents)
                decision = route_task(state, task, event.decided_at_ts or event.ts, config)
            if isinstance(decision, Assign):
                explanation.rerun_agent = decision.agent_id
                explanation.rerun_score = decision.score
                explanation.breakdown = decision.breakdown
                explanation.rejected = decision.rejected
                explanation.note = unlisted_input(event)
            else:
                explanation.note = f"re-run holds the task: {decision.reason} ({decision.detail})"
        explanations.append(explanation)
    return explanations
