"""Router shell: wake on events that change who can take what, decide, append, repeat.

Every instance keeps the full fleet view; the work consumer only says *when* to look. Appends are
made against the last sequence of everything about the agent (``hive.evt.*.<agent>.>``: the agent
and its circuit breaker), so two instances racing for the same agent cannot both win, and nothing
is assigned on a view that missed the breaker opening: the loser catches up and decides again.
One assignment per task attempt is enforced by the message id ``assign:<task>:<attempt>``. A timer
wakes the router at the deadline of the earliest task held below its quality threshold, so that
task ends even when nothing else happens, and at the ``not_before_ts`` of the earliest delayed task
(kept in a heap as their submissions are applied, so no task is looked at before its time). When
the server requires credentials, the router also opens each registered agent's inbox
(``shared/agent/inbox.py``): agents may create no consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from typing import Any

from prometheus_client import Histogram

from services.router.decide import Assign, Decision, Expire, next_decision, next_expiry
from services.router.keyed import CancelForKey, ClaimKeys, KeyHold, limits_of
from shared.agent.inbox import open_inbox
from shared.background import cancel_and_wait
from shared.bus import AppendResult, ConcurrencyConflict
from shared.domain.cancellation import cancel_notice, cancellation
from shared.domain.fleet import WAITING, correlation_of
from shared.domain.histogram import ASSIGNMENT_BUCKETS_S
from shared.domain.message_ids import (
    assign_msg_id,
    cancel_msg_id,
    failed_msg_id,
    key_claim_msg_id,
    key_hold_msg_id,
    notice_msg_id,
    queued_msg_id,
)
from shared.domain.routing.admission import rate_wake
from shared.domain.routing.keys import parse_concurrency_limits, parse_rate_limits
from shared.domain.routing.policy import RoutingConfig, signal_weights
from shared.domain.routing.view import ROUTER_VIEW
from shared.events import (
    AgentRecovered,
    AgentRegistered,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerReset,
    ConcurrencyLimitRemoved,
    ConcurrencyLimitSet,
    Event,
    KeySlotClaimed,
    RateLimitRemoved,
    RateLimitSet,
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
from shared.service import Service
from shared.subjects import entity_subjects, events_of_type
from shared.work import Retry, WorkSpec

EXPIRY_POLL_S = 1.0
"""Longest sleep of the expiry timer: a held task that appears meanwhile is looked at by then."""

TRIGGERS: list[type[Event]] = [
    TaskSubmitted,
    TaskRequeued,
    AgentRegistered,
    AgentRecovered,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerReset,
    ConcurrencyLimitSet,
    ConcurrencyLimitRemoved,
    RateLimitSet,
    RateLimitRemoved,
]
"""Events after which a waiting task may fit somewhere: a new task or added capacity; one router
instance (whichever the work consumer hands it to) looks at the queue."""

RELEASES = (TaskCompleted, TaskAttemptFailed, TaskFailed, TaskCancelled)
"""Events that free a slot. They are as frequent as tasks, and most of the time nothing waits: so
they are not work events; every instance's projection notices them, and only an instance whose
queue is not empty looks at it (racing instances are refereed by the agent's sequence)."""


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
        self.config = RoutingConfig(
            mode=self.settings.orchestration_mode,
            default_strategy=self.settings.default_routing_strategy,
            confidence=self.settings.routing_confidence,
            quality_wait_s=self.settings.quality_wait_s,
            concurrency_limits=parse_concurrency_limits(self.settings.concurrency_limits),
            rate_limits=parse_rate_limits(self.settings.rate_limits),
        )
        self.assignments = 0
        self.expired = 0
        self.conflicts = 0
        self._expiry_task: asyncio.Task[None] | None = None
        self._dispatching = asyncio.Lock()
        self._decided_seq, self._decided_ts = 0, 0.0
        """The view's sequence and the clock the decision being appended read."""
        self._release_task: asyncio.Task[None] | None = None
        self._release_pending = False
        self._starts: list[tuple[float, str]] = []
        """(not_before_ts, task id) of delayed tasks: when the timer must look at the queue."""
        self._timer_woken = asyncio.Event()
        self.view.add_listener(self._on_applied)
        self.assignment_duration = Histogram(
            "orchestration_task_assignment_duration_seconds",
            "Time from a task's submission to its first assignment (tasks never held for lack of an agent)",
            registry=self.metrics.registry,
            buckets=ASSIGNMENT_BUCKETS_S,
        )

    async def on_started(self) -> None:
        now = time.time()
        for task in self.view.state.fleet.tasks.values():  # delayed before the snapshot was taken
            if task.status in WAITING and task.not_before_ts > now:
                heapq.heappush(self._starts, (task.not_before_ts, task.task_id))
        self._expiry_task = asyncio.create_task(self._expiry_timer(), name="router-expiry")
        # Slots may have freed while this instance was starting: look at the queue once.
        self._release_pending = True
        self._release_task = asyncio.create_task(self._dispatch_releases(), name="router-releases")

    async def on_stopping(self) -> None:
        for task in (self._expiry_task, self._release_task):
            await cancel_and_wait(task)

    def _on_applied(self, recorded: Recorded) -> None:
        """A slot freed while tasks wait: look at the queue (once for a burst of releases). A delayed
        task: the timer looks at the queue at its time."""
        event = recorded.event
        if isinstance(event, TaskSubmitted) and event.not_before_ts and event.not_before_ts > event.ts:
            earliest = self._starts[0][0] if self._starts else None
            heapq.heappush(self._starts, (event.not_before_ts, event.task_id))
            if earliest is None or event.not_before_ts < earliest:
                self._timer_woken.set()
            return
        if not isinstance(event, RELEASES) or not self.view.state.fleet.queue:
            return
        self._release_pending = True
        if self.ready.is_set() and (self._release_task is None or self._release_task.done()):
            self._release_task = asyncio.create_task(self._dispatch_releases(), name="router-releases")

    async def _dispatch_releases(self) -> None:
        while self._release_pending:
            self._release_pending = False
            try:
                await self.dispatch(causation_id="")
            except Exception:
                self.log.exception("release_dispatch_failed")

    def details(self) -> dict[str, Any]:
        state = self.view.state
        weights = signal_weights("adaptive", state.adaptive)
        return {
            "queue_depth": len(state.fleet.queue),
            "agents": len(state.fleet.agents),
            "assignments_made": self.assignments,
            "expired": self.expired,
            "conflicts": self.conflicts,
            "orchestration_mode": self.config.mode,
            "default_strategy": self.config.default_strategy,
            "outcomes_learned": state.performance.outcomes,
            "adaptive_weights": {name: round(value, 4) for name, value in weights.items()},
        }

    def _next_wake(self) -> float | None:
        """The earliest deadline or end of quality wait of a held task, start of a delayed one, or
        refill of the bucket a rate-limited task waits for."""
        state = self.view.state
        deadline = next_expiry(state, self.config)
        refill = rate_wake(state.keys, state.fleet, limits_of(state, self.config), time.time())
        if refill is not None and (deadline is None or refill < deadline):
            deadline = refill
        if self._starts and (deadline is None or self._starts[0][0] < deadline):
            return self._starts[0][0]
        return deadline

    async def _expiry_timer(self) -> None:
        """Look at the queue when the earliest quality-held task reaches its deadline or the end of
        its quality wait, and when the earliest delayed task may start."""
        while True:
            self._timer_woken.clear()
            deadline = self._next_wake()
            now = time.time()
            while self._starts and self._starts[0][0] <= now:
                heapq.heappop(self._starts)  # its time has come: the dispatch below looks at it
            if deadline is not None and deadline <= now:
                try:
                    await self.dispatch(causation_id="")
                except Exception:
                    self.log.exception("expiry_dispatch_failed")
                deadline = self._next_wake()
                if deadline is not None and deadline <= time.time():
                    await asyncio.sleep(EXPIRY_POLL_S)  # not ours to expire (e.g. no longer held)
                continue
            wait = EXPIRY_POLL_S if deadline is None else min(EXPIRY_POLL_S, deadline - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_woken.wait(), max(wait, 0.001))

    async def on_trigger(self, recorded: Recorded) -> Retry | None:
        await self.view.wait_for(recorded.seq)
        event = recorded.event
        if isinstance(event, AgentRegistered) and self.bus.user is not None:
            await self._open_inbox(event, recorded.seq)
        if isinstance(event, TaskRequeued) and event.not_before_ts > time.time():
            return Retry(event.not_before_ts - time.time())
        await self.dispatch(causation_id=event.id)
        return None

    async def _open_inbox(self, registration: AgentRegistered, seq: int) -> None:
        """The agent's durable, starting after this registration (agents may create no consumer)."""
        if await open_inbox(self.bus.js, registration.agent_id, seq, registration.capacity):
            self.log.info("agent_inbox_opened", agent_id=registration.agent_id, start_seq=seq + 1)

    async def dispatch(self, causation_id: str = "") -> None:
        """Append decisions until the queue needs nothing more right now (one pass at a time)."""
        async with self._dispatching:
            await self._dispatch(causation_id)

    async def _dispatch(self, causation_id: str) -> None:
        # Not ``shared.command``: this loop drains the queue, and each round decides afresh which
        # task goes to which agent, so a refusal is no failure to retry a bounded number of times.
        # It means another router instance placed work on that agent first (progress for the
        # fleet); the next round decides on the state that includes it. A bound would turn a busy
        # fleet with several routers into failed triggers and redeliveries.
        skip: set[str] = set()
        while True:
            seen, now = self.view.seq, time.time()
            self._decided_seq, self._decided_ts = seen, now
            decision = next_decision(self.view.state, now, skip, self.config)
            if decision is None:
                return
            try:
                result = await self._append(decision, causation_id, seen, now)
            except ConcurrencyConflict:
                self.conflicts += 1
                await self.view.catch_up()
                continue
            if result.duplicate:
                skip.add(decision.task_id)
            await self.view.wait_for(result.seq)

    async def _append(
        self,
        decision: Decision,
        causation_id: str,
        seen: int,
        now: float,
        agent_version: int | None = None,
    ) -> AppendResult:
        task = self.view.state.fleet.tasks[decision.task_id]
        correlation = correlation_of(self.view.state.fleet, decision.task_id)
        if isinstance(decision, Assign):
            never_held = decision.attempt == 1 and task.status == "pending"  # read before any await
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
                decided_at_seq=seen,
                decided_at_ts=now,
                mode=self.config.mode,
                correlation_id=correlation,
                causation_id=causation_id,
            )
            # Against everything about the agent, its breaker included: an assignment decided before
            # the router saw the breaker open (or the agent go silent) is refused, not stored.
            result = await self.bus.append(
                event,
                expected=agent_version
                if agent_version is not None
                else await self.view.expected_entity_version(decision.agent_id),
                msg_id=assign_msg_id(decision.task_id, decision.attempt),
                expected_filter=entity_subjects(decision.agent_id),
            )
            if not result.duplicate:
                self.assignments += 1
                if never_held:
                    routable = max(task.submitted_ts, task.not_before_ts)  # a delayed task: its time
                    self.assignment_duration.observe(max(0.0, event.ts - routable))
                self.log.debug("task_assigned", task_id=decision.task_id, agent_id=decision.agent_id)
            return result
        if isinstance(decision, Expire):
            result = await self.bus.append(
                TaskFailed(
                    task_id=decision.task_id,
                    attempt=decision.attempt,
                    error=decision.error,
                    failure_type="deadline_exceeded",
                    correlation_id=correlation,
                    causation_id=causation_id,
                ),
                expected=await self.view.expected_version("task", decision.task_id),
                msg_id=failed_msg_id(decision.task_id),
            )
            if not result.duplicate:
                self.expired += 1
                self.log.info("task_expired", task_id=decision.task_id, error=decision.error)
            return result
        if isinstance(decision, ClaimKeys | CancelForKey | KeyHold):
            return await self._append_keyed(decision, causation_id, correlation)
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
            msg_id=queued_msg_id(decision.task_id, decision.attempt),
        )

    # --- keys: concurrency slots, rate tokens, their holds and cancellations (keyed.py) ----------

    async def _append_keyed(
        self, decision: ClaimKeys | CancelForKey | KeyHold, causation_id: str, correlation: str
    ) -> AppendResult:
        if isinstance(decision, KeyHold):
            return await self.bus.append(
                TaskQueued(
                    task_id=decision.task_id,
                    attempt=decision.attempt,
                    reason=decision.reason,
                    detail=decision.detail,
                    eligible_ts=decision.eligible_ts,
                    correlation_id=correlation,
                    causation_id=causation_id,
                ),
                expected=await self.view.expected_version("task", decision.task_id),
                msg_id=key_hold_msg_id(decision.task_id, decision.attempt, decision.reason),
            )
        if isinstance(decision, CancelForKey):
            return await self._cancel_for_key(decision, causation_id)
        # The agent's version as the decision saw it, read before the claim's await: the assignment
        # is appended against it, so work given to the agent meanwhile makes it a conflict.
        agent_version = await self.view.expected_entity_version(decision.assign.agent_id)
        seen, now = self._decided_seq, self._decided_ts
        result: AppendResult | None = None
        if decision.claim is not None:
            scope = key_scope("concurrency", decision.claim.key)
            result = await self.bus.append(
                KeySlotClaimed(
                    scope=scope,
                    key=decision.claim.key,
                    task_id=decision.task_id,
                    attempt=decision.attempt,
                    max_running=decision.claim.max_running,
                    running=decision.claim.running,
                    correlation_id=correlation,
                    causation_id=causation_id,
                ),
                expected=await self._key_version(scope, seen),
                msg_id=key_claim_msg_id("claim", decision.task_id, decision.attempt),
            )
            self.log.debug("key_slot_claimed", task_id=decision.task_id, key=decision.claim.key)
        if decision.take is not None:
            take = decision.take
            scope = key_scope("rate", take.key)
            result = await self.bus.append(
                RateTokensTaken(
                    scope=scope,
                    key=take.key,
                    task_id=decision.task_id,
                    attempt=decision.attempt,
                    units=take.units,
                    tokens_left=take.tokens_left,
                    limit=take.limit.limit,
                    period_s=take.limit.period_s,
                    burst=take.limit.capacity,
                    correlation_id=correlation,
                    causation_id=causation_id,
                ),
                expected=await self._key_version(scope, seen),
                msg_id=key_claim_msg_id("tokens", decision.task_id, decision.attempt),
            )
        assert result is not None  # a ClaimKeys claims or takes
        if result.duplicate:
            return result  # claimed by another instance for this attempt: decided again, on its view
        # The claim touched no agent: the assignment decided with it is appended at once, against
        # the agent's sequence the decision read (refused if another router gave the agent work).
        return await self._append(decision.assign, causation_id, seen, now, agent_version)

    async def _key_version(self, scope: str, seen: int) -> int:
        """The key's last sequence the decision saw. When the view no longer remembers it (pruned),
        the server's, unless the server holds a claim the decision did not see: then a conflict
        (catch up and decide again), never a claim counted against a stale view."""
        known = self.view.version("system", scope)
        if known is not None:
            return known
        latest = await self.bus.aggregate_version("system", scope)
        if latest > seen:
            raise ConcurrencyConflict(f"hive.evt.system.{scope}.*", seen, "the view is behind the key")
        return latest

    async def _cancel_for_key(self, decision: CancelForKey, causation_id: str) -> AppendResult:
        task = self.view.state.fleet.tasks[decision.task_id]
        # Both built before any await: the view moves while we append.
        cancelled, notice = (
            cancellation(task, decision.reason, causation_id),
            cancel_notice(task, decision.reason, causation_id),
        )
        result = await self.bus.append(
            cancelled,
            expected=await self.view.expected_version("task", decision.task_id),
            msg_id=cancel_msg_id(decision.task_id),
        )
        if not result.duplicate:
            self.log.info("task_cancelled_for_key", task_id=decision.task_id, reason=decision.reason)
            if notice is not None:
                await self.bus.append(
                    notice, expected=None, msg_id=notice_msg_id(decision.task_id, notice.attempt)
                )
        return result
