"""Recovery shell: heartbeats, timeouts, circuit breakers, incidents, retries and orphaned work.

Two loops drive the pure decisions:

* a periodic **tick** (every ``RECOVERY_TICK_S``, sooner when a disconnect advisory or an outcome
  arrives) runs ``liveness``, ``stalls``, timeouts, quarantine expiry and ``breaker_transition``
  over this instance's projection and heartbeat table; every instance ticks, and duplicates are
  refused by the server (expected version) or de-duplicated (message ids);
* the **work consumer** (shared by all instances, each event handled once) settles failed
  attempts, requeues the work of restarted, unresponsive or stalled agents and carries out the
  strategy of every reported failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.recovery.decide import (
    GiveUp,
    Requeue,
    after_failed_attempt,
    after_lost_attempt,
    orphaned_by_restart,
)
from services.recovery.incidents import Incident, IncidentSteps, StopWork, plan_incident
from services.recovery.liveness import (
    LivenessPolicy,
    MarkUnresponsive,
    agent_liveness,
    overdue_attempts,
    quarantines_over,
)
from services.recovery.stalls import MarkStalled, StallPolicy, StallWatch, agent_stalls
from services.recovery.view import RECOVERY_VIEW
from services.recovery.writer import RecoveryWriter
from shared.background import cancel_and_wait
from shared.bus import ConcurrencyConflict
from shared.command import retry_on_conflict
from shared.configured import breaker_policy
from shared.domain.breaker_policy import Close, Probe, Trip, breaker_transition
from shared.domain.breakers import BREAKER_STATE_VALUES
from shared.domain.heartbeats import HeartbeatTable
from shared.domain.histogram import RECOVERY_BUCKETS_S
from shared.domain.performance_metrics import RecoveryTracker, track_recovery
from shared.domain.strategies import Strategy, choose_strategy, unresponsive_severity
from shared.events import (
    AgentRegistered,
    AgentStalled,
    AgentUnresponsive,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReset,
    FailureReported,
    RecoveryActionTaken,
    TaskAttemptFailed,
    TaskCompleted,
)
from shared.heartbeats import HeartbeatListener
from shared.recorded import Recorded
from shared.service import Service
from shared.subjects import events_of_type, type_filters
from shared.work import WorkSpec

TRANSITION_TARGETS: dict[type, str] = {Trip: "open", Probe: "half_open", Close: "closed"}


class RecoveryService(Service):
    name = "recovery"

    async def setup(self) -> None:
        self.view = self.projection(RECOVERY_VIEW)
        self.view.add_listener(self._on_applied)
        self.writer = RecoveryWriter(self.bus, self.view)
        self.work(
            WorkSpec(
                durable="recovery",
                filters=[
                    *type_filters("task", TaskAttemptFailed.event_type()),
                    events_of_type("agent", AgentRegistered.event_type()),
                    events_of_type("agent", AgentUnresponsive.event_type()),
                    events_of_type("agent", AgentStalled.event_type()),
                    events_of_type("system", FailureReported.event_type()),
                ],
                handler=self.on_event,
            )
        )
        settings = self.settings
        self.liveness_policy = LivenessPolicy(
            interval_s=settings.heartbeat_interval_s,
            missed_limit=settings.heartbeat_missed_limit,
            disconnect_grace_s=settings.disconnect_grace_s,
            timeout_grace_s=settings.task_timeout_grace_s,
        )
        self.breaker_policy = breaker_policy(settings)
        self.stall_policy = StallPolicy(after_s=settings.stall_after_s)
        self.table = HeartbeatTable(started_at=time.time())
        self.watches: dict[str, StallWatch] = {}
        """Assignments each agent has yet to receive, as this instance saw them (``stalls.py``)."""
        self.listener: HeartbeatListener | None = None
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        """Agents with new outcomes since the last look at their breakers."""
        self._ticker: asyncio.Task[None] | None = None
        self.requeued = 0
        self.failed = 0
        registry = self.metrics.registry
        self.detections = Counter(
            "hive_recovery_detections_total",
            "Failures recovery detected itself",
            ["kind"],
            registry=registry,
        )
        self.breaker_moves = Counter(
            "hive_recovery_breaker_transitions_total",
            "Circuit breaker transitions",
            ["to"],
            registry=registry,
        )
        self.incidents = Counter(
            "hive_recovery_incidents_total", "Incidents handled, by strategy", ["strategy"], registry=registry
        )
        self.recovery_duration = Histogram(
            "orchestration_failure_recovery_duration_seconds",
            "From a failure (an unresponsive agent's last heartbeat, a reported failure) until all the work "
            "it took away runs again elsewhere or has ended",
            registry=registry,
            buckets=RECOVERY_BUCKETS_S,
        )
        self.breaker_state = Gauge(
            "orchestration_circuit_breaker_state",
            "Circuit breaker per agent: 0 closed, 1 half-open, 2 open",
            ["agent_id"],
            registry=registry,
        )
        self.tracker = RecoveryTracker()
        """Incidents followed in memory for the duration histogram (not part of the snapshot)."""

    async def on_started(self) -> None:
        self.table = HeartbeatTable(started_at=time.time())
        self.watches = {}
        self.listener = HeartbeatListener(
            self.bus.nc,
            self.table,
            on_bad=self._bad_heartbeat,
            on_disconnect=self._connection_closed,
        )
        await self.listener.start()
        for agent_id in self.view.state.fleet.agents:
            self._show_breaker(agent_id)
        self._ticker = asyncio.create_task(self._tick_loop(), name="recovery-tick")

    async def on_stopping(self) -> None:
        await cancel_and_wait(self._ticker)
        if self.listener is not None:
            await self.listener.stop()

    def details(self) -> dict[str, Any]:
        listener = self.listener
        return {
            "requeued": self.requeued,
            "failed": self.failed,
            "agents_heard": len(self.table.agents),
            "heartbeats": listener.beats if listener else 0,
            "bad_heartbeats": listener.bad if listener else 0,
            "disconnect_advisories": listener.disconnects if listener else 0,
        }

    def _on_applied(self, recorded: Recorded) -> None:
        """An outcome may trip or settle a breaker: look at that agent's now, not at the next tick."""
        event = recorded.event
        settled = track_recovery(self.tracker, recorded)
        if settled is not None and self.ready.is_set():  # not the history replayed at start
            self.recovery_duration.observe(settled)
        if isinstance(
            event, BreakerOpened | BreakerHalfOpened | BreakerClosed | BreakerReset | AgentRegistered
        ):
            self._show_breaker(event.agent_id)
        if isinstance(event, TaskCompleted | TaskAttemptFailed) and event.agent_id:
            self._dirty.add(event.agent_id)
            self._wake.set()

    def _show_breaker(self, agent_id: str) -> None:
        """Every known agent has a sample: closed (0) until its breaker first moves."""
        breaker = self.view.state.breakers.breakers.get(agent_id)
        status = breaker.status if breaker is not None else "closed"
        self.breaker_state.labels(agent_id).set(BREAKER_STATE_VALUES[status])

    def _connection_closed(self, agents: list[str]) -> None:
        """A disconnect advisory named the connection these agents beat over: look at once."""
        self.log.info("agent_connection_closed", agent_ids=agents)
        self._wake.set()

    async def _bad_heartbeat(self, subject: str, data: bytes, reason: str) -> None:
        await self.bus.dead_letter(subject, data, reason)

    # --- the tick -------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        """A full pass every RECOVERY_TICK_S; in between, a wake-up looks only at what changed."""
        period = self.settings.recovery_tick_s
        last_full = 0.0
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 a wake-up arriving with the stop's
            # cancellation made wait_for swallow the cancellation, and stopping waited forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._wake.wait()
            self._wake.clear()
            full = time.monotonic() - last_full >= period
            if full:
                last_full = time.monotonic()
            try:
                await self.tick(full=full)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("recovery_tick_failed")

    async def tick(self, *, full: bool = True) -> None:
        """Decide from (projection, heartbeats, now) and append; on a conflict catch up and redo."""
        stall_s = max(self.settings.heartbeat_interval_s, 5 * self.settings.recovery_tick_s)

        async def once() -> None:
            now = time.time()
            if self.table.tick(now, stall_s):
                self.log.warning("recovery_stalled", detail="silence is counted again from now")
            await self._tick_once(now, full)

        await retry_on_conflict(once, self.view.catch_up, what="the fleet (recovery tick)")

    async def _tick_once(self, now: float, full: bool) -> None:
        """Liveness always (one pass over the agents); timeouts, quarantines and every breaker on a
        full pass; otherwise only the breakers of agents with new outcomes."""
        fleet = self.view.state.fleet
        for change in agent_liveness(fleet, self.table, now, self.liveness_policy):
            await self.writer.liveness(change, now)
            kind = "unresponsive" if isinstance(change, MarkUnresponsive) else "recovered"
            self.detections.labels(kind).inc()
            self.log.warning(f"agent_{kind}", agent_id=change.agent_id, reason=change.reason)
        dirty, self._dirty = self._dirty, set()
        if not full:
            await self._breakers(now, sorted(dirty))
            return
        for stall in agent_stalls(fleet, self.table, self.watches, now, self.stall_policy):
            await self.writer.liveness(stall, now)
            if isinstance(stall, MarkStalled):
                self.detections.labels("stalled").inc()
                self.log.warning(
                    "agent_stalled",
                    agent_id=stall.agent_id,
                    reason=stall.reason,
                    unreceived=stall.unreceived,
                )
            else:
                self.detections.labels("caught_up").inc()
                self.log.info("agent_caught_up", agent_id=stall.agent_id, reason=stall.reason)
        for change in quarantines_over(fleet, now):
            await self.writer.liveness(change, now)
            self.log.info("quarantine_over", agent_id=change.agent_id)
        for overdue in overdue_attempts(fleet, now, self.liveness_policy.timeout_grace_s):
            await self.writer.time_out(overdue)
            reason = f"timed out after {overdue.timeout_s:g}s"
            stop = StopWork(
                agent_id=overdue.agent_id, task_id=overdue.task_id, attempt=overdue.attempt, reason=reason
            )
            await self.writer.stop_work(stop)
            self.detections.labels("task_timeout").inc()
            self.log.warning("attempt_timed_out", task_id=overdue.task_id, attempt=overdue.attempt)
        watched = [a.agent_id for a in fleet.agents.values() if a.status != "deregistered"]
        await self._breakers(now, sorted(watched))

    async def _breakers(self, now: float, agents: list[str]) -> None:
        state = self.view.state
        for agent_id in agents:
            transition = breaker_transition(
                state.breakers.breakers.get(agent_id),
                state.outcomes.agents.get(agent_id),
                now,
                self.breaker_policy,
            )
            if transition is None:
                continue
            await self.writer.breaker(agent_id, transition, now)
            moved_to = TRANSITION_TARGETS[type(transition)]
            self.breaker_moves.labels(moved_to).inc()
            self.log.warning("breaker_transition", agent_id=agent_id, to=moved_to, detail=transition)

    # --- work events ----------------------------------------------------------------------------

    async def on_event(self, recorded: Recorded) -> None:
        await self.view.wait_for(recorded.seq)
        event = recorded.event
        if isinstance(event, TaskAttemptFailed):
            await self._settle_failed_attempt(event)
        elif isinstance(event, AgentRegistered):
            await self._requeue_orphans(event)
        elif isinstance(event, AgentUnresponsive):
            episodes = self.view.state.outcomes.agents.get(event.agent_id)
            incident = Incident(
                incident_id=f"unresponsive-{recorded.seq}",
                failure_type="agent_unresponsive",
                severity=unresponsive_severity(episodes.unresponsive_ts if episodes else [], event.ts),
                ts=event.ts,
                agent_id=event.agent_id,
                detail=event.reason,
                attempts=event.in_flight,
            )
            await self._handle_incident(incident, expected=0, causation_id=event.id)
        elif isinstance(event, AgentStalled):
            episodes = self.view.state.outcomes.agents.get(event.agent_id)
            incident = Incident(
                incident_id=f"stalled-{recorded.seq}",
                failure_type="agent_stalled",
                severity=unresponsive_severity(episodes.stalled_ts if episodes else [], event.ts),
                ts=event.ts,
                agent_id=event.agent_id,
                detail=event.reason,
                attempts=event.unreceived,
                unstarted_only=True,
                session=event.session,
            )
            await self._handle_incident(incident, expected=0, causation_id=event.id)
        elif isinstance(event, FailureReported):
            incident = Incident(
                incident_id=event.scope,
                failure_type=event.failure_type,
                severity=event.severity,
                ts=event.ts,
                agent_id=event.agent_id,
                task_id=event.task_id,
                detail=event.detail,
                workflow_id=event.workflow_id,
                session=event.session,
            )
            await self._handle_incident(
                incident, expected=recorded.seq, causation_id=event.id, asked=event.strategy
            )

    async def _settle_failed_attempt(self, event: TaskAttemptFailed) -> None:
        async def once() -> None:
            task = self.view.state.fleet.tasks.get(event.task_id)
            if task is None or task.status != "retrying" or task.attempt != event.attempt:
                return
            decision = after_failed_attempt(task, event.retryable, time.time())
            await self.writer.task_step(decision, causation_id=event.id)
            self._count(decision)

        await retry_on_conflict(once, self.view.catch_up, what=f"task {event.task_id!r}")

    async def _requeue_orphans(self, event: AgentRegistered) -> None:
        async def once() -> None:
            agent = self.view.state.fleet.agents.get(event.agent_id)
            if agent is None:
                return
            for task_id in orphaned_by_restart(self.view.state.fleet, agent, agent.session):
                decision = after_lost_attempt(self.view.state.fleet.tasks[task_id], "agent_restarted")
                await self.writer.task_step(decision, causation_id=event.id)
                self._count(decision)

        await retry_on_conflict(once, self.view.catch_up, what=f"the work of agent {event.agent_id!r}")

    def _count(self, decision: object) -> None:
        if isinstance(decision, Requeue):
            self.requeued += 1
        else:
            self.failed += 1

    async def _handle_incident(
        self, incident: Incident, expected: int, causation_id: str, asked: Strategy | None = None
    ) -> None:
        """Carry out the strategy asked for, else the one for (type, severity), then record what was
        done on the incident."""
        if await self.view.expected_version("system", incident.incident_id) > expected:
            return  # already recorded: a redelivery
        plan = choose_strategy(incident.failure_type, incident.severity, asked)
        moved: list[str] = []

        async def once() -> IncidentSteps:
            state = self.view.state
            steps = plan_incident(
                state.fleet,
                incident,
                plan,
                self.settings.quarantine_s,
                state.breakers,
                self.breaker_policy,
            )
            await self._carry_out(incident, steps, moved, causation_id)
            return steps

        steps = await retry_on_conflict(
            once, self.view.catch_up, what=f"the work of incident {incident.incident_id!r}"
        )
        self.incidents.labels(plan.strategy).inc()
        detail = "; ".join([incident.detail, *steps.notes]) if steps.notes else incident.detail
        if plan.escalated:
            self.log.error(
                "incident_escalated",
                incident_id=incident.incident_id,
                failure_type=incident.failure_type,
                severity=incident.severity,
                agent_id=steps.agent_id,
                task_ids=moved,
                detail=detail,
            )
        action = RecoveryActionTaken(
            scope=incident.incident_id,
            strategy=plan.strategy,
            agent_id=steps.agent_id,
            task_ids=moved,
            detail=detail,
            failure_type=incident.failure_type,
            severity=incident.severity,
            actions=list(plan.actions),
            escalated=plan.escalated,
            causation_id=causation_id,
        )
        with contextlib.suppress(ConcurrencyConflict):  # recorded meanwhile by a redelivery
            await self.writer.action_taken(action, expected)

    async def _carry_out(
        self, incident: Incident, steps: IncidentSteps, moved: list[str], causation_id: str
    ) -> None:
        why = f"{steps.plan.strategy} after {incident.failure_type} ({incident.severity})"
        if steps.agent_id is not None and steps.quarantine_until_ts is not None:
            agent = self.view.state.fleet.agents.get(steps.agent_id)
            if agent is not None and agent.quarantined_until_ts < steps.quarantine_until_ts:
                await self.writer.quarantine(
                    steps.agent_id, steps.quarantine_until_ts, why, incident.incident_id
                )
        if steps.agent_id is not None and steps.restart_session is not None:
            await self.writer.request_restart(
                steps.agent_id, steps.restart_session, why, incident.incident_id
            )
        if steps.agent_id is not None and steps.breaker is not None:
            await self.writer.breaker(steps.agent_id, steps.breaker, time.time())
            self.breaker_moves.labels(TRANSITION_TARGETS[type(steps.breaker)]).inc()
        for step in steps.task_steps:
            await self.writer.task_step(step, causation_id=causation_id)
            moved.append(step.task_id)
            if isinstance(step, Requeue | GiveUp):
                self._count(step)
        for stop in steps.stops:
            await self.writer.stop_work(stop, causation_id)
