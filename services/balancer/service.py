"""Balancer shell: a tick that moves unstarted work and re-evaluates scale advice; optimize requests.

Every ``REBALANCE_INTERVAL_S`` the tick plans moves (``decide.plan_moves``) on this instance's view;
a plan with moves is made again up to the horizon the server vouches for (``vouched_until``), and
its moves appended, each against the task's version read in the same step as the decision; a move
refused by the server (the agent started the attempt meanwhile) is dropped and the plan made again
without that task. Scale advice is re-evaluated every ``SCALE_EVERY_S`` and appended only
when it changes. ``system.rebalance_requested`` events (``POST .../load-balancing/optimize``) come
through a work consumer shared by all instances and are answered with ``system.load_rebalanced``
on the request's scope, appended against the request's own sequence (a redelivery answers once).
Several instances may run: they decide the same moves, and the server keeps one of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Collection
from typing import Any, Final

from prometheus_client import Counter, Gauge

from services.balancer.decide import (
    Move,
    Outcome,
    Plan,
    RebalancePolicy,
    efficiency_once_landed,
    plan_moves,
    waiting_attempts,
)
from services.balancer.scaling import ScalePolicy, all_advice, changed_advice
from services.balancer.view import BALANCER_VIEW
from services.balancer.writer import BalancerWriter
from shared.background import cancel_and_wait
from shared.bus import ConcurrencyConflict
from shared.domain.load_balance import fleet_efficiency
from shared.domain.routing.policy import RoutingConfig
from shared.events import RebalanceRequested
from shared.recorded import Recorded
from shared.service import Service
from shared.subjects import events_of_type
from shared.work import WorkSpec

MAX_ROUNDS: Final = 5
"""Plans made again after refused moves, per rebalance."""
SCALE_EVERY_S: Final = 5.0
"""Scale advice needs no sub-second reaction; evaluating it reads the whole queue."""
AUTO = "auto"
REQUEST = "request"


class BalancerService(Service):
    name = "balancer"

    async def setup(self) -> None:
        self.view = self.projection(BALANCER_VIEW)
        self.writer = BalancerWriter(self.bus, self.view)
        self.work(
            WorkSpec(
                durable="balancer",
                filters=[events_of_type("system", RebalanceRequested.event_type())],
                handler=self.on_request,
            )
        )
        settings = self.settings
        self.policy = RebalancePolicy(
            unstarted_after_s=settings.rebalance_after_s,
            quality_tolerance=settings.rebalance_quality_tolerance,
        )
        self.scale_policy = ScalePolicy(
            window_s=settings.scale_window_s, target_utilisation=settings.scale_target_utilisation
        )
        self.config = RoutingConfig(
            mode=settings.orchestration_mode, default_strategy=settings.default_routing_strategy
        )
        self.moves_made = 0
        self.moves_refused = 0
        self.waiting = 0
        self._last_scale_at = -math.inf
        self._ticker: asyncio.Task[None] | None = None
        self._agents_shown: set[str] = set()
        registry = self.metrics.registry
        self.efficiency_gauge = Gauge(
            "orchestration_load_balancing_efficiency_ratio",
            "Load-balancing efficiency over METRICS_WINDOW_S (1 - misplaced / in-flight tasks)",
            registry=registry,
        )
        self.efficiency_gauge.set(math.nan)
        self.utilisation_gauge = Gauge(
            "orchestration_agent_utilization_ratio",
            "Tasks in flight / capacity, per agent",
            ["agent_id"],
            registry=registry,
        )
        self.moves_counter = Counter(
            "hive_balancer_moves_total",
            "Unstarted attempts moved to another agent",
            ["trigger"],
            registry=registry,
        )
        self.waiting_gauge = Gauge(
            "hive_balancer_unstarted_attempts",
            "Assigned attempts unstarted past REBALANCE_AFTER_S (or at an open breaker)",
            registry=registry,
        )
        self.scale_gauge = Gauge(
            "orchestration_scale_recommended_agents",
            "Additional agents the balancer recommends, per capability",
            ["capability"],
            registry=registry,
        )

    async def on_started(self) -> None:
        self._ticker = asyncio.create_task(self._tick_loop(), name="balancer-tick")

    async def on_stopping(self) -> None:
        await cancel_and_wait(self._ticker)

    def details(self) -> dict[str, Any]:
        state = self.view.state
        fleet, breakers = state.router.fleet, state.router.breakers
        agents = [a for a in fleet.agents.values() if a.status == "active"]
        windowed, _ = state.load.efficiency(time.time() - self.settings.metrics_window_s)
        now_efficiency = fleet_efficiency(fleet, breakers)
        return {
            "active_agents": len(agents),
            "in_flight": sum(a.load for a in agents),
            "capacity": sum(a.capacity for a in agents),
            "load_balancing_efficiency": None if windowed is None else round(windowed, 4),
            "efficiency_now": None if now_efficiency is None else round(now_efficiency, 4),
            "unstarted_attempts": self.waiting,
            "moves_made": self.moves_made,
            "moves_refused": self.moves_refused,
            "not_targets_until_they_start": sorted(state.unstarting),
            "rebalancing": self.settings.enable_rebalancing,
            "predictive_scaling": self.settings.enable_predictive_scaling,
            "scale_recommendations": {
                capability: {
                    "additional_agents": advice.additional_agents,
                    "current_agents": advice.current_agents,
                    "arrival_rate_per_s": advice.arrival_rate_per_s,
                    "queue_depth": advice.queue_depth,
                    "reason": advice.reason,
                }
                for capability, advice in sorted(state.scale.items())
                if self.settings.enable_predictive_scaling
            },
        }

    # --- the tick -------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rebalance_interval_s)
            try:
                await self.tick(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("balancer_tick_failed")

    async def tick(self, now: float) -> None:
        """Move unstarted work (when enabled), re-evaluate scale advice (now and then, when enabled),
        refresh gauges."""
        if self.settings.enable_rebalancing:
            await self.rebalance(now, self.policy, trigger=AUTO)
        else:
            self.waiting = len(
                waiting_attempts(self.view.state.router, now, self.policy, self.seen_until(now))
            )
        if self.settings.enable_predictive_scaling and now - self._last_scale_at >= SCALE_EVERY_S:
            self._last_scale_at = now
            await self.recommend_scaling(now)
        self._refresh_gauges(now)

    async def rebalance(
        self,
        now: float,
        policy: RebalancePolicy,
        *,
        trigger: str,
        dry_run: bool = False,
        causation_id: str = "",
    ) -> Outcome:
        """Plan and carry out moves (a dry run only plans). After refused moves the plan is made
        again, at most ``MAX_ROUNDS`` times, with the refused tasks left where they are: their
        targets' slots go to other waiting work. The view does not catch up for it (an urgent read
        to the end of the log, each round: measured as the balancer's CPU bursts at 500 tasks/s);
        it reads on, and the next tick sees what refused them.

        Not ``shared.command``: a refused move is an answer, not a failure (the agent started the
        attempt meanwhile); it is reported in the outcome's notes, and running out of rounds is
        no error, only the end of this rebalance."""
        first: Plan | None = None
        made: list[Move] = []
        refusals: list[str] = []
        notes: list[str] = []
        settled: set[str] = set()
        for _round in range(MAX_ROUNDS):
            plan, versions = self.plan(now, policy, settled=settled)
            if plan.moves:
                plan, versions = self.plan(now, policy, await self.vouched_until(now), settled)
            first = first or plan
            self.waiting = plan.waiting
            notes = plan.notes
            if dry_run:
                return Outcome(
                    plan=plan, moves=plan.moves, notes=notes, efficiency_after=plan.efficiency_after
                )
            if not plan.moves or not await self.carry_out(
                plan.moves, versions, trigger, causation_id, made, refusals, refused_tasks=settled
            ):
                break
            now = time.time()
        assert first is not None
        after = efficiency_once_landed(self.view.state.router, made) if made else first.efficiency_before
        outcome = Outcome(plan=first, moves=made, notes=refusals + notes, efficiency_after=after)
        if made and trigger == AUTO:
            scope = f"auto-{self.view.seq}"
            with contextlib.suppress(ConcurrencyConflict):  # the same summary from another instance
                await self.writer.summary(scope, outcome, expected=0, trigger=AUTO, dry_run=False)
        return outcome

    def seen_until(self, now: float) -> float:
        """`now` less how far the view may be behind the log: what it has not seen happen by then
        may have happened since (``decide.waiting_attempts``)."""
        return now - self.view.lag_s()

    async def vouched_until(self, now: float) -> float:
        """``seen_until``, no later than when the first event the view has not applied was stored,
        as the server says (``ProjectionRunner.unapplied_since``). Asked only of a plan with moves:
        on a busy server the reader's own horizon can be seconds too late, and each move of an
        attempt that in fact started or ended meanwhile is refused, then followed by a catch-up
        and a plan made again (measured at 500 tasks/s: 25-50 refused moves a run, none made)."""
        first = await self.view.unapplied_since()
        seen = self.seen_until(now)
        return seen if first is None else min(seen, first)

    def plan(
        self,
        now: float,
        policy: RebalancePolicy,
        seen_until: float | None = None,
        settled: Collection[str] = (),
    ) -> tuple[Plan, dict[str, int | None]]:
        """A plan, and the task versions it was made on (read in the same step, no await between).
        `seen_until`: how far the view is complete (default: ``seen_until``, the reader's word);
        `settled`: tasks not to move (``decide.plan_moves``)."""
        if seen_until is None:
            seen_until = self.seen_until(now)
        plan = plan_moves(self.view.state, now, policy, self.config, seen_until, settled)
        return plan, {move.task_id: self.view.version("task", move.task_id) for move in plan.moves}

    async def carry_out(
        self,
        moves: list[Move],
        versions: dict[str, int | None],
        trigger: str,
        causation_id: str,
        made: list[Move],
        refusals: list[str],
        *,
        refused_tasks: set[str] | None = None,
    ) -> int:
        """Append each move against its version; returns how many the server refused (their tasks
        added to `refused_tasks`)."""
        refused = 0
        for move in moves:
            expected = versions.get(move.task_id)
            if expected is None:  # the view forgot this task's version: decide on it another time
                refusals.append(f"task {move.task_id}: version unknown to this view, not moved")
                continue
            try:
                result = await self.writer.move(move, expected, causation_id)
            except ConcurrencyConflict:
                refused += 1
                if refused_tasks is not None:
                    refused_tasks.add(move.task_id)
                self.moves_refused += 1
                refusals.append(
                    f"task {move.task_id}: changed since the decision (started meanwhile?), not moved"
                )
                continue
            if result.duplicate:
                continue  # another balancer instance made the same move
            made.append(move)
            self.moves_made += 1
            self.moves_counter.labels(trigger).inc()
            self.log.info(
                "attempt_moved",
                task_id=move.task_id,
                attempt=move.attempt,
                from_agent_id=move.from_agent_id,
                to_agent_id=move.to_agent_id,
                waited_s=round(move.waited_s, 3),
                trigger=trigger,
            )
        return refused

    # --- optimize requests ----------------------------------------------------------------------

    async def on_request(self, recorded: Recorded) -> None:
        await self.view.wait_for(recorded.seq)
        event = recorded.event
        if not isinstance(event, RebalanceRequested):
            return
        if await self.view.expected_version("system", event.scope) > recorded.seq:
            return  # already answered: a redelivery
        policy = RebalancePolicy(
            unstarted_after_s=(
                event.unstarted_after_s
                if event.unstarted_after_s is not None
                else self.policy.unstarted_after_s
            ),
            quality_tolerance=self.policy.quality_tolerance,
            max_moves=event.max_moves,
            max_moves_per_task=self.policy.max_moves_per_task,
            strategy=event.strategy,
        )
        outcome = await self.rebalance(
            time.time(), policy, trigger=REQUEST, dry_run=event.dry_run, causation_id=event.id
        )
        with contextlib.suppress(ConcurrencyConflict):  # answered meanwhile by a redelivery
            await self.writer.summary(
                event.scope,
                outcome,
                expected=recorded.seq,
                trigger=REQUEST,
                dry_run=event.dry_run,
                causation_id=event.id,
            )

    # --- scale advice ---------------------------------------------------------------------------

    async def recommend_scaling(self, now: float) -> None:
        state = self.view.state
        for advice in changed_advice(
            state, all_advice(state, now, self.scale_policy), now, self.scale_policy
        ):
            expected = self.view.version("system", advice.scope)
            if expected is None:
                expected = await self.view.expected_version("system", advice.scope)
            try:
                await self.writer.advice(advice, expected, now)
            except ConcurrencyConflict:
                # Not retried (so not ``shared.command``): advice is evaluated again every
                # SCALE_EVERY_S, and another instance has just advised on this scope.
                await self.view.catch_up()
                continue
            self.log.info(
                "scale_recommended",
                capability=advice.capability,
                additional_agents=advice.additional_agents,
                reason=advice.reason,
            )

    # --- gauges ---------------------------------------------------------------------------------

    def _refresh_gauges(self, now: float) -> None:
        state = self.view.state
        windowed, _ = state.load.efficiency(now - self.settings.metrics_window_s)
        self.efficiency_gauge.set(math.nan if windowed is None else windowed)
        self.waiting_gauge.set(self.waiting)
        shown: set[str] = set()
        for agent in state.router.fleet.agents.values():
            if agent.status == "deregistered":
                continue
            self.utilisation_gauge.labels(agent.agent_id).set(agent.utilisation)
            shown.add(agent.agent_id)
        for gone in self._agents_shown - shown:
            with contextlib.suppress(KeyError):
                self.utilisation_gauge.remove(gone)
        self._agents_shown = shown
        if not self.settings.enable_predictive_scaling:
            return  # advice from before it was turned off is not current
        for capability, advice in state.scale.items():
            self.scale_gauge.labels(capability).set(advice.additional_agents)
