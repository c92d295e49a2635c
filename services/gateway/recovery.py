"""The gateway's recovery desk: failure reports in, breaker state and failure predictions out.

A reported failure is appended as ``system.failure_reported`` (the incident) and answered with
what recovery did about it, if it did so within ``ASSIGN_WAIT_MS``, else with the strategy it will
follow (``choose_strategy``: the same pure table recovery uses). Predictions are computed here,
from the gateway's projection and its own heartbeat table: heartbeats are signals, not events.
"""

from __future__ import annotations

import time
from typing import Any

from services.gateway.core import GatewayCore
from services.gateway.errors import ApiError
from services.gateway.failure_report import (
    Outcome,
    affected_tasks,
    improvement_recommendations,
    recovery_metrics,
    system_impact,
)
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
from services.gateway.timestamps import epoch_of, iso_utc
from shared.bus import ConcurrencyConflict
from shared.command import Change, command
from shared.configured import breaker_policy
from shared.domain.breaker_policy import window_stats
from shared.domain.breakers import BreakerView
from shared.domain.heartbeats import HeartbeatTable
from shared.domain.message_ids import breaker_reset_msg_id
from shared.domain.prediction import HIGH_RISK, REFERENCE_HORIZON_MIN, over_horizon, predict
from shared.domain.strategies import choose_strategy
from shared.events import FAILURE_TYPE_ALIASES, BreakerReset, FailureReported, RecoveryActionTaken
from shared.heartbeats import HeartbeatListener
from shared.ids import InvalidIdError, check_id, new_id
from shared.recorded import Recorded

PREDICTION_METHOD = (
    "logistic score over error_rate, latency_trend, heartbeat_jitter, heartbeat_gap and "
    "breaker_history with hand-set weights, read over 30 minutes and stretched to the horizon asked "
    "assuming a constant hazard; each factor shows its contribution in log-odds"
)


FUTURE_TOLERANCE_S = 60.0
"""A failure reported as happening later than this from now is refused: a clock or unit mistake."""


def _one_of(values: dict[str, str | None], field: str) -> str | None:
    """The value given under either name of a field; a 400 when the two names disagree."""
    given = {name: value for name, value in values.items() if value}
    if len(set(given.values())) > 1:
        names = " and ".join(given)
        raise ApiError(400, "invalid_field", f"{names} name the same thing and differ", field)
    return next(iter(given.values()), None)


def reported_failure(data: FailureHandleRequest, now: float | None = None) -> FailureReported:
    """The request in Hive's own words: aliases resolved, enum values lower-cased, time parsed."""
    incident_id = _one_of({"incident_id": data.incident_id, "event_id": data.event_id}, "incident_id")
    detail = _one_of({"detail": data.detail, "error_message": data.error_message}, "detail") or ""
    occurred_ts = None
    if data.timestamp is not None:
        try:
            occurred_ts = epoch_of(data.timestamp)
        except ValueError as exc:
            raise ApiError(400, "invalid_field", f"invalid field 'timestamp': {exc}", "timestamp") from None
        current = time.time() if now is None else now
        if occurred_ts > current + FUTURE_TOLERANCE_S:
            raise ApiError(
                400,
                "invalid_field",
                f"invalid field 'timestamp': {iso_utc(occurred_ts)} is in the future",
                "timestamp",
            )
    failure_type = data.failure_type.lower()
    strategy = data.recovery_strategy.lower() if data.recovery_strategy is not None else None
    scope = incident_id or new_id()
    return FailureReported(
        scope=scope,
        failure_type=FAILURE_TYPE_ALIASES.get(failure_type, failure_type),  # type: ignore[arg-type]
        severity=data.severity.lower(),  # type: ignore[arg-type]
        agent_id=data.agent_id,
        task_id=data.task_id,
        workflow_id=data.workflow_id,
        session=data.session_id,
        detail=detail,
        strategy=strategy,  # type: ignore[arg-type]
        occurred_ts=occurred_ts,
        context=data.context,
        correlation_id=scope,
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

    def last_heartbeat(self, agent_id: str) -> float | None:
        """When this gateway last heard the agent's heartbeat (Unix seconds; None: not since it started)."""
        heard = self.table.agents.get(agent_id)
        return heard.last_seen if heard is not None else None

    # --- failures -------------------------------------------------------------------------------

    async def handle_failure(self, data: FailureHandleRequest) -> FailureHandleResponse:
        requested = time.time()
        report = reported_failure(data)
        if report.agent_id is None and report.task_id is None and report.workflow_id is None:
            raise ApiError(
                400, "invalid_field", "name the failed agent_id, task_id or workflow_id", "agent_id"
            )
        core = self.core
        if report.agent_id is not None and not await core.knows_agent(report.agent_id):
            raise ApiError(404, "not_found", f"agent {report.agent_id!r} is not registered", "agent_id")
        if report.workflow_id is not None and report.workflow_id not in core.view.state.workflows.workflows:
            await core.caught_up_on("workflow", report.workflow_id)  # submitted a moment ago?
            if report.workflow_id not in core.view.state.workflows.workflows:
                raise ApiError(
                    404, "not_found", f"workflow {report.workflow_id!r} is not known", "workflow_id"
                )
        if report.task_id is not None:
            try:
                await self.core.find_task(report.task_id)  # 404 when the log has no such task
            except ApiError as exc:
                raise ApiError(exc.status, exc.code, exc.message, "task_id") from None
        incident_id = report.scope
        plan = choose_strategy(report.failure_type, report.severity, report.strategy)
        try:  # asked once (expected 0): a conflict is a reused incident id, never retried
            result, action = await self.replies.ask(
                self.core.bus, report, incident_id, self.core.settings.assign_wait_ms / 1000
            )
        except ConcurrencyConflict:
            raise ApiError(
                409, "conflict", f"incident {incident_id!r} was already reported", "incident_id"
            ) from None
        occurred_at = iso_utc(report.occurred_ts) if report.occurred_ts is not None else None
        answered = time.time()
        if action is None:
            outcome = Outcome(
                incident_id=incident_id,
                failure_type=report.failure_type,
                severity=report.severity,
                strategy=plan.strategy,
                acted=False,
                escalated=plan.escalated,
                actions=len(plan.actions),
                agent_id=report.agent_id,
                task_ids=affected_tasks([report.task_id] if report.task_id else []),
            )
            return FailureHandleResponse(
                incident_id=incident_id,
                status="reported",
                failure_type=report.failure_type,
                severity=report.severity,
                strategy=plan.strategy,
                actions=list(plan.actions),
                escalated=plan.escalated,
                agent_id=report.agent_id,
                detail="recovery has not acted yet; this is the strategy it will follow",
                seq=result.seq,
                occurred_at=occurred_at,
                handled_timestamp=iso_utc(answered),
                **self._assessment(outcome, requested, answered, report.occurred_ts),
            )
        outcome = Outcome(
            incident_id=incident_id,
            failure_type=report.failure_type,
            severity=report.severity,
            strategy=action.strategy,
            acted=True,
            escalated=action.escalated,
            actions=len(action.actions),
            agent_id=action.agent_id,
            task_ids=affected_tasks(action.task_ids),
        )
        return FailureHandleResponse(
            incident_id=incident_id,
            status="handled",
            failure_type=report.failure_type,
            severity=report.severity,
            strategy=action.strategy,
            actions=action.actions,
            escalated=action.escalated,
            agent_id=action.agent_id,
            task_ids=action.task_ids,
            detail=action.detail,
            seq=result.seq,
            recovery_success=not action.escalated,
            occurred_at=occurred_at,
            handled_timestamp=iso_utc(answered),
            **self._assessment(outcome, requested, answered, report.occurred_ts),
        )

    def _assessment(
        self, outcome: Outcome, requested: float, answered: float, occurred_ts: float | None
    ) -> dict[str, Any]:
        """The specification's figures, reach and advice, from the fleet as this gateway sees it."""
        state = self.core.view.state
        breaker = state.breakers.breakers.get(outcome.agent_id) if outcome.agent_id else None
        return {
            "recovery_metrics": recovery_metrics(outcome, requested, answered, occurred_ts),
            "system_impact": system_impact(outcome, state.fleet.agents, state.fleet.tasks),
            "improvement_recommendations": improvement_recommendations(
                outcome, breaker.times_opened if breaker is not None else 0
            ),
        }

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
        if not await self.core.knows_agent(agent_id):
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

    def predictions(
        self, agent_id: str | None, time_horizon_minutes: float = REFERENCE_HORIZON_MIN
    ) -> PredictResponse:
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
                over_horizon(
                    predict(
                        agent,
                        state.outcomes.agents.get(agent.agent_id),
                        state.breakers.breakers.get(agent.agent_id),
                        self.table.jitter(agent.agent_id, now),
                        own_interval,
                    ),
                    time_horizon_minutes,
                )
            )
        found.sort(key=lambda p: (-p.probability, p.agent_id))
        return PredictResponse(
            generated_ts=now,
            heartbeat_interval_s=interval,
            method=PREDICTION_METHOD,
            predictions={p.agent_id: p.probability for p in found},
            forecasts=found,
            time_horizon_minutes=time_horizon_minutes,
            high_risk_agents=[p.agent_id for p in found if p.probability > HIGH_RISK],
            prediction_timestamp=iso_utc(now),
        )
