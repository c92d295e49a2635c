"""The gateway's recovery desk: failure reports in, breaker state and failure predictions out.

A reported failure is appended as ``system.failure_reported`` (the incident) and answered with
what recovery did about it, if it did so within ``ASSIGN_WAIT_MS``, else with the strategy it will
follow (``choose_strategy``: the same pure table recovery uses). Predictions are computed here,
from the gateway's projection and its own heartbeat table: heartbeats are signals, not events.
"""

from __future__ import annotations

import time

from services.gateway.core import GatewayCore
from services.gateway.errors import ApiError
from services.gateway.recovery_schemas import (
    BreakerOut,
    BreakerPolicyOut,
    BreakerResetRequest,
    BreakerResetResponse,
    CircuitBreakersResponse,
    FailureHandleRequest,
    FailureHandleResponse,
    PredictResponse,
)
from services.gateway.replies import Replies
from shared.bus import ConcurrencyConflict
from shared.command import Change, command
from shared.configured import breaker_policy
from shared.domain.breaker_policy import window_stats
from shared.domain.breakers import BreakerView
from shared.domain.heartbeats import HeartbeatTable
from shared.domain.message_ids import breaker_reset_msg_id
from shared.domain.prediction import predict
from shared.domain.strategies import choose_strategy
from shared.events import BreakerReset, FailureReported, RecoveryActionTaken
from shared.heartbeats import HeartbeatListener
from shared.ids import InvalidIdError, check_id, new_id
from shared.recorded import Recorded

PREDICTION_METHOD = (
    "logistic score over error_rate, latency_trend, heartbeat_jitter, heartbeat_gap and "
    "breaker_history with hand-set weights; each factor shows its contribution in log-odds"
)


class RecoveryDesk:
    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.policy = breaker_policy(core.settings)
        self.table = HeartbeatTable(started_at=time.time())
        self.listener: HeartbeatListener | None = None
        self.replies = Replies(RecoveryActionTaken)

    async def start(self) -> None:
        self.table = HeartbeatTable(started_at=time.time())
        self.listener = HeartbeatListener(self.core.bus.nc, self.table)
        await self.listener.start()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()

    def on_event(self, recorded: Recorded) -> None:
        self.replies.on_event(recorded)

    # --- failures -------------------------------------------------------------------------------

    async def handle_failure(self, data: FailureHandleRequest) -> FailureHandleResponse:
        if data.agent_id is None and data.task_id is None:
            raise ApiError(400, "invalid_field", "name the failed agent_id, task_id or both", "agent_id")
        fleet = self.core.view.state.fleet
        if data.agent_id is not None and data.agent_id not in fleet.agents:
            raise ApiError(404, "not_found", f"agent {data.agent_id!r} is not registered", "agent_id")
        if data.task_id is not None:
            try:
                await self.core.find_task(data.task_id)  # 404 when the log has no such task
            except ApiError as exc:
                raise ApiError(exc.status, exc.code, exc.message, "task_id") from None
        incident_id = data.incident_id or new_id()
        plan = choose_strategy(data.failure_type, data.severity)
        report = FailureReported(
            scope=incident_id,
            failure_type=data.failure_type,
            severity=data.severity,
            agent_id=data.agent_id,
            task_id=data.task_id,
            detail=data.detail,
            correlation_id=incident_id,
        )
        try:  # asked once (expected 0): a conflict is a reused incident id, never retried
            result, action = await self.replies.ask(
                self.core.bus, report, incident_id, self.core.settings.assign_wait_ms / 1000
            )
        except ConcurrencyConflict:
            raise ApiError(
                409, "conflict", f"incident {incident_id!r} was already reported", "incident_id"
            ) from None
        if action is None:
            return FailureHandleResponse(
                incident_id=incident_id,
                status="reported",
                failure_type=data.failure_type,
                severity=data.severity,
                strategy=plan.strategy,
                actions=list(plan.actions),
                escalated=plan.escalated,
                agent_id=data.agent_id,
                detail="recovery has not acted yet; this is the strategy it will follow",
                seq=result.seq,
            )
        return FailureHandleResponse(
            incident_id=incident_id,
            status="handled",
            failure_type=data.failure_type,
            severity=data.severity,
            strategy=action.strategy,
            actions=action.actions,
            escalated=action.escalated,
            agent_id=action.agent_id,
            task_ids=action.task_ids,
            detail=action.detail,
            seq=result.seq,
        )

    # --- breakers -------------------------------------------------------------------------------

    def _breaker_out(self, agent_id: str, agent_status: str, now: float) -> BreakerOut:
        state = self.core.view.state
        breaker = state.breakers.breakers.get(agent_id) or BreakerView(agent_id=agent_id)
        stats = window_stats(state.outcomes.agents.get(agent_id), breaker.last_change_seq, now, self.policy)
        rate = stats.failure_rate if breaker.status == "closed" else breaker.failure_rate
        return BreakerOut(
            agent_id=agent_id,
            agent_status=agent_status,
            status=breaker.status,
            failure_rate=round(rate, 4),
            calls=stats.calls,
            failures=stats.failures,
            reason=breaker.reason,
            opened_ts=breaker.opened_ts,
            retry_after_ts=breaker.retry_after_ts,
            probes_allowed=breaker.probes_allowed,
            probes_assigned=breaker.probes_assigned,
            probe_successes=breaker.probe_successes,
            probe_failures=breaker.probe_failures,
            times_opened=breaker.times_opened,
            last_change_ts=breaker.last_change_ts,
        )

    def circuit_breakers(self, status: str | None, agent_id: str | None) -> CircuitBreakersResponse:
        now = time.time()
        agents = self.core.view.state.fleet.agents
        if agent_id is not None and agent_id not in agents:
            raise ApiError(404, "not_found", f"agent {agent_id!r} is not registered", "agent_id")
        chosen = (
            [agents[agent_id]] if agent_id is not None else sorted(agents.values(), key=lambda a: a.agent_id)
        )
        listed = [self._breaker_out(a.agent_id, a.status, now) for a in chosen if a.status != "deregistered"]
        counts = {"closed": 0, "open": 0, "half_open": 0}
        for breaker in listed:
            counts[breaker.status] += 1
        policy = self.policy
        return CircuitBreakersResponse(
            policy=BreakerPolicyOut(
                enabled=policy.enabled,
                failure_threshold=policy.failure_threshold,
                window_size=policy.window_size,
                window_s=policy.window_s,
                min_calls=policy.min_calls,
                open_s=policy.open_s,
                half_open_probes=policy.half_open_probes,
            ),
            counts=counts,
            breakers=[b for b in listed if status is None or b.status == status],
        )

    async def reset_breaker(self, agent_id: str, data: BreakerResetRequest) -> BreakerResetResponse:
        try:
            check_id(agent_id, "agent_id")
        except InvalidIdError as exc:
            raise ApiError(400, "invalid_field", str(exc), "agent_id") from None
        if agent_id not in self.core.view.state.fleet.agents:
            raise ApiError(404, "not_found", f"agent {agent_id!r} is not registered", "agent_id")

        async def decide(version: int) -> Change:
            return Change(
                BreakerReset(agent_id=agent_id, requested_by=data.requested_by),
                breaker_reset_msg_id(agent_id, version),
            )

        done = await command(self.core.bus, self.core.view, "breaker", agent_id, decide)
        assert done is not None  # decide always resets
        _change, result = done
        return BreakerResetResponse(agent_id=agent_id, status="closed", seq=result.seq)

    # --- prediction -----------------------------------------------------------------------------

    def predictions(self, agent_id: str | None) -> PredictResponse:
        now = time.time()
        state = self.core.view.state
        agents = state.fleet.agents
        if agent_id is not None and agent_id not in agents:
            raise ApiError(404, "not_found", f"agent {agent_id!r} is not registered", "agent_id")
        chosen = [agents[agent_id]] if agent_id is not None else list(agents.values())
        interval = self.core.settings.heartbeat_interval_s
        found = []
        for agent in chosen:
            if agent.status == "deregistered" and agent_id is None:
                continue
            heard = self.table.agents.get(agent.agent_id)
            own_interval = max(interval, heard.interval_s) if heard is not None else interval
            found.append(
                predict(
                    agent,
                    state.outcomes.agents.get(agent.agent_id),
                    state.breakers.breakers.get(agent.agent_id),
                    self.table.jitter(agent.agent_id, now),
                    own_interval,
                )
            )
        found.sort(key=lambda p: (-p.probability, p.agent_id))
        return PredictResponse(
            generated_ts=now, heartbeat_interval_s=interval, method=PREDICTION_METHOD, predictions=found
        )
