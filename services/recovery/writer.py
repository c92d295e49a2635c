"""Recovery's appends: each decision becomes one event, appended against its aggregate's version.

Every message id is derived from the decision (never random), so the same decision taken twice, by
a redelivery or by two recovery instances, is stored once; a decision taken on a stale view is
refused by the server (``ConcurrencyConflict``) and the caller catches up and decides again.
"""

from __future__ import annotations

from services.recovery.decide import GiveUp, Requeue
from services.recovery.incidents import FailAttempt, StopWork
from services.recovery.liveness import MarkRecovered, MarkUnresponsive, TimeOut
from services.recovery.stalls import MarkStalled
from services.recovery.view import RecoveryState
from shared.bus import AppendResult, EventBus
from shared.domain.breaker_policy import Close, Probe, Transition, Trip
from shared.domain.fleet import correlation_of
from shared.domain.message_ids import (
    breaker_msg_id,
    failed_msg_id,
    liveness_msg_id,
    notice_msg_id,
    quarantine_msg_id,
    recovery_action_msg_id,
    report_msg_id,
    requeue_msg_id,
    restart_msg_id,
)
from shared.events import (
    AgentQuarantined,
    AgentRecovered,
    AgentRestartRequested,
    AgentStalled,
    AgentUnresponsive,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    Event,
    RecoveryActionTaken,
    TaskAttemptFailed,
    TaskCancelRequested,
    TaskFailed,
    TaskRequeued,
)
from shared.projection import ProjectionRunner

FROM_VIEW = -1
"""``expected`` sentinel: append against the aggregate's version as the projection knows it."""


class RecoveryWriter:
    def __init__(self, bus: EventBus, view: ProjectionRunner[RecoveryState]) -> None:
        self.bus = bus
        self.view = view

    async def _append(self, event: Event, msg_id: str, expected: int | None = FROM_VIEW) -> AppendResult:
        """Append against the aggregate's version (or `expected` when given), then see it applied."""
        if expected == FROM_VIEW:
            expected = await self.view.expected_version(event.AGGREGATE, event.aggregate_id)
        result = await self.bus.append(event, expected=expected, msg_id=msg_id)
        await self.view.wait_for(result.seq)
        return result

    # --- tasks ----------------------------------------------------------------------------------

    async def task_step(self, step: Requeue | GiveUp | FailAttempt, causation_id: str) -> AppendResult:
        correlation = correlation_of(self.view.state.fleet, step.task_id)
        if isinstance(step, Requeue):
            return await self._append(
                TaskRequeued(
                    task_id=step.task_id,
                    attempt=step.attempt,
                    previous_agent_id=step.previous_agent_id,
                    reason=step.reason,
                    not_before_ts=step.not_before_ts,
                    excluded_agent_ids=step.excluded_agent_ids,
                    correlation_id=correlation,
                    causation_id=causation_id,
                ),
                requeue_msg_id(step.task_id, step.attempt),
            )
        if isinstance(step, GiveUp):
            return await self._append(
                TaskFailed(
                    task_id=step.task_id,
                    attempt=step.attempt,
                    error=step.error,
                    failure_type=step.failure_type,
                    correlation_id=correlation,
                    causation_id=causation_id,
                ),
                failed_msg_id(step.task_id),
            )
        failed = TaskAttemptFailed(
            task_id=step.task_id,
            agent_id=step.agent_id,
            attempt=step.attempt,
            error=step.error,
            failure_type=step.failure_type,
            correlation_id=correlation,
            causation_id=causation_id,
        )
        # One failure per attempt across recovery instances (the holder's own report, keyed by its
        # own id, is kept from counting twice by the task's expected sequence).
        return await self._append(failed, report_msg_id(failed.type_name(), step.task_id, step.attempt))

    async def time_out(self, overdue: TimeOut) -> AppendResult:
        return await self.task_step(
            FailAttempt(
                task_id=overdue.task_id,
                attempt=overdue.attempt,
                agent_id=overdue.agent_id,
                failure_type="task_timeout",
                error=f"no result after {overdue.running_s:.2f}s (timeout {overdue.timeout_s:g}s)",
            ),
            causation_id="",
        )

    async def stop_work(self, stop: StopWork, causation_id: str = "") -> None:
        """A notice to the holder, not a state change: appended without a concurrency check."""
        await self.bus.append(
            TaskCancelRequested(
                agent_id=stop.agent_id,
                task_id=stop.task_id,
                attempt=stop.attempt,
                reason=stop.reason,
                causation_id=causation_id,
            ),
            expected=None,
            msg_id=notice_msg_id(stop.task_id, stop.attempt),
        )

    # --- agents ---------------------------------------------------------------------------------

    async def liveness(
        self, change: MarkUnresponsive | MarkStalled | MarkRecovered, now: float
    ) -> AppendResult:
        expected = await self.view.expected_version("agent", change.agent_id)
        if isinstance(change, MarkStalled):
            event: Event = AgentStalled(
                agent_id=change.agent_id,
                session=change.session,
                received_seq=change.received_seq,
                pending_seq=change.pending_seq,
                behind_since_ts=change.behind_since_ts,
                waited_s=change.waited_s,
                reason=change.reason,
                unreceived=change.unreceived,
                ts=now,
            )
            kind = "stalled"
        elif isinstance(change, MarkUnresponsive):
            event = AgentUnresponsive(
                agent_id=change.agent_id,
                session=change.session,
                last_seen_ts=change.last_seen_ts,
                missed_heartbeats=change.missed_heartbeats,
                reason=change.reason,
                in_flight=change.in_flight,
                ts=now,
            )
            kind = "unresponsive"
        else:
            event = AgentRecovered(
                agent_id=change.agent_id, session=change.session, reason=change.reason, ts=now
            )
            kind = "recovered"
        return await self._append(event, liveness_msg_id(kind, change.agent_id, expected), expected)

    async def quarantine(self, agent_id: str, until_ts: float, reason: str, incident_id: str) -> None:
        await self._append(
            AgentQuarantined(agent_id=agent_id, until_ts=until_ts, reason=reason, incident_id=incident_id),
            quarantine_msg_id(incident_id),
        )

    async def request_restart(self, agent_id: str, session: str, reason: str, incident_id: str) -> None:
        """A request to the agent; it changes no state of ours, so no concurrency check."""
        await self._append(
            AgentRestartRequested(agent_id=agent_id, session=session, reason=reason, incident_id=incident_id),
            restart_msg_id(incident_id),
            expected=None,
        )

    # --- breakers and incidents -----------------------------------------------------------------

    async def breaker(self, agent_id: str, transition: Transition, now: float) -> AppendResult:
        expected = await self.view.expected_version("breaker", agent_id)
        event: Event
        if isinstance(transition, Trip):
            event = BreakerOpened(
                agent_id=agent_id,
                failure_rate=round(transition.failure_rate, 4),
                calls=transition.calls,
                reason=transition.reason,
                retry_after_ts=transition.retry_after_ts,
                ts=now,
            )
        elif isinstance(transition, Probe):
            event = BreakerHalfOpened(agent_id=agent_id, probes_allowed=transition.probes_allowed, ts=now)
        else:
            assert isinstance(transition, Close)
            event = BreakerClosed(agent_id=agent_id, reason=transition.reason, ts=now)
        return await self._append(event, breaker_msg_id(agent_id, expected, event.event_type()), expected)

    async def action_taken(self, action: RecoveryActionTaken, expected: int) -> AppendResult:
        return await self._append(action, recovery_action_msg_id(action.scope), expected)
