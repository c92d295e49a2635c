"""The balancer's appends: each decision one event, against the version the decision was made on.

Message ids are derived from the decision, never random: a move is ``requeue:<task>:<attempt>``
(the key recovery uses too, so one attempt is requeued once whoever decides it), an advice is
``scale:<scope>:<version>``, a summary ``rebalanced:<scope>``. The same decision taken twice (a
redelivery, two balancer instances) is stored once; one taken on a stale view is refused.
"""

from __future__ import annotations

from services.balancer.decide import Move, Outcome
from services.balancer.scaling import Advice
from services.balancer.view import REBALANCED, BalancerState
from shared.bus import AppendResult, EventBus
from shared.domain.fleet import correlation_of
from shared.domain.message_ids import notice_msg_id, rebalanced_msg_id, requeue_msg_id, scale_msg_id
from shared.events import LoadRebalanced, ScaleRecommended, TaskCancelRequested, TaskRequeued
from shared.projection import ProjectionRunner


class BalancerWriter:
    def __init__(self, bus: EventBus, view: ProjectionRunner[BalancerState]) -> None:
        self.bus = bus
        self.view = view

    async def move(self, move: Move, expected: int, causation_id: str = "") -> AppendResult:
        """Requeue the attempt with the target preferred; tell the holder to drop the old one."""
        correlation = correlation_of(self.view.state.router.fleet, move.task_id)
        result = await self.bus.append(
            TaskRequeued(
                task_id=move.task_id,
                attempt=move.attempt,
                previous_agent_id=move.from_agent_id,
                reason=REBALANCED,
                preferred_agent_id=move.to_agent_id,
                correlation_id=correlation,
                causation_id=causation_id,
            ),
            expected=expected,
            msg_id=requeue_msg_id(move.task_id, move.attempt),
        )
        if not result.duplicate:
            # A notice, not a state change: the holder drops the attempt if it queued it somewhere.
            await self.bus.append(
                TaskCancelRequested(
                    agent_id=move.from_agent_id,
                    task_id=move.task_id,
                    attempt=move.attempt - 1,
                    reason=f"rebalanced to {move.to_agent_id}",
                    causation_id=causation_id,
                ),
                expected=None,
                msg_id=notice_msg_id(move.task_id, move.attempt - 1),
            )
        await self.view.wait_for(result.seq)
        return result

    async def summary(
        self,
        scope: str,
        outcome: Outcome,
        *,
        expected: int,
        trigger: str,
        dry_run: bool,
        causation_id: str = "",
    ) -> AppendResult:
        """``system.load_rebalanced``; nothing in flight counts as perfectly even (1.0)."""
        before, after = outcome.plan.efficiency_before, outcome.efficiency_after
        event = LoadRebalanced(
            scope=scope,
            moves=[move.as_record() for move in outcome.moves],
            efficiency_before=1.0 if before is None else round(before, 4),
            efficiency_after=1.0 if after is None else round(after, 4),
            dry_run=dry_run,
            trigger=trigger,
            notes=outcome.notes,
            causation_id=causation_id,
        )
        result = await self.bus.append(event, expected=expected, msg_id=rebalanced_msg_id(scope))
        await self.view.wait_for(result.seq)
        return result

    async def advice(self, advice: Advice, expected: int, now: float) -> AppendResult:
        event = ScaleRecommended(
            scope=advice.scope,
            capability=advice.capability,
            current_agents=advice.current_agents,
            additional_agents=advice.additional_agents,
            arrival_rate_per_s=advice.arrival_rate_per_s,
            queue_depth=advice.queue_depth,
            reason=advice.reason,
            current_slots=advice.current_slots,
            needed_slots=advice.needed_slots,
            mean_duration_s=advice.mean_duration_s,
            ts=now,
        )
        result = await self.bus.append(event, expected=expected, msg_id=scale_msg_id(advice.scope, expected))
        await self.view.wait_for(result.seq)
        return result
