"""The gateway's performance desk: orchestration metrics, target validation, load-balancing requests.

Metrics are computed from the gateway's projection (``shared/domain/performance_metrics.py``,
folded from the log) over a window ending now; targets come from the settings. An optimize request
is appended as ``system.rebalance_requested`` and answered with what the balancer did about it
(``system.load_rebalanced`` on the same scope), if it did so within ``ASSIGN_WAIT_MS``.
"""

from __future__ import annotations

import time
from typing import Literal

from services.gateway.core import GatewayCore
from services.gateway.errors import ApiError
from services.gateway.host import HostUsage
from services.gateway.performance_schemas import (
    MetricsResponse,
    MoveOut,
    OptimizeRequest,
    OptimizeResponse,
    OrchestrationMetricsOut,
    ScaleAdviceOut,
    SystemMetricsOut,
    ValidateResponse,
)
from services.gateway.replies import Replies
from services.gateway.timestamps import iso_utc
from shared.bus import ConcurrencyConflict
from shared.configured import performance_targets
from shared.domain.performance_metrics import OrchestrationFigures, figures
from shared.domain.performance_targets import (
    DEFINITIONS,
    TargetCheck,
    check_targets,
    performance_score,
    recommendations,
)
from shared.events import LoadRebalanced, RebalanceRequested
from shared.ids import new_id
from shared.recorded import Recorded

METRICS = tuple(DEFINITIONS)
"""The orchestration metrics, in the order their definitions are documented."""


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class PerformanceDesk:
    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.targets = performance_targets(core.settings)
        self.host = HostUsage()
        self.replies = Replies(LoadRebalanced)

    def on_event(self, recorded: Recorded) -> None:
        self.replies.on_event(recorded)

    # --- metrics --------------------------------------------------------------------------------

    def figures(self, window_s: float | None, now: float) -> OrchestrationFigures:
        window = window_s if window_s is not None else self.core.settings.metrics_window_s
        return figures(self.core.view.state.metrics, now, window)

    def checks(self, found: OrchestrationFigures) -> list[TargetCheck]:
        return check_targets(found, self.targets)

    def metrics(self, window_s: float | None = None) -> MetricsResponse:
        now = time.time()
        found = self.figures(window_s, now)
        checks = self.checks(found)
        state = self.core.view.state.metrics
        fleet = self.core.view.state.fleet
        return MetricsResponse(
            timestamp=iso_utc(now),
            ts=now,
            window_s=found.window_s,
            performance_score=performance_score(checks),
            targets_met=sum(1 for check in checks if check.met),
            total_targets=len(checks),
            orchestration_metrics=OrchestrationMetricsOut(
                **{name: _rounded(getattr(found, name).value) for name in METRICS}
            ),
            samples={name: getattr(found, name).samples for name in METRICS},
            percentiles={
                "task_assignment_latency_ms": {
                    k: _rounded(v) for k, v in found.assignment_latency_ms.items()
                },
                "failure_recovery_time_ms": {k: _rounded(v) for k, v in found.recovery_time_ms.items()},
            },
            scale_recommendations=[
                ScaleAdviceOut(
                    capability=advice.capability,
                    additional_agents=advice.additional_agents,
                    current_agents=advice.current_agents,
                    current_slots=advice.current_slots,
                    needed_slots=advice.needed_slots,
                    arrival_rate_per_s=advice.arrival_rate_per_s,
                    queue_depth=advice.queue_depth,
                    mean_duration_s=advice.mean_duration_s,
                    reason=advice.reason,
                    ts=advice.ts,
                )
                for _capability, advice in sorted(state.scale.items())
                if self.core.settings.enable_predictive_scaling
            ],
            seq=self.core.view.seq,
            system_metrics=SystemMetricsOut(
                active_agents=sum(1 for agent in fleet.agents.values() if agent.status == "active"),
                total_tasks=fleet.totals.get("submitted", 0),
                completed_tasks=fleet.totals.get("completed", 0),
                failed_tasks=fleet.totals.get("failed", 0),
                active_workflows=len(self.core.view.state.workflows.running),
                cpu_utilization_percent=self.host.cpu_percent(),
                memory_utilization_percent=self.host.memory_percent(),
            ),
        )

    def validate(self, window_s: float | None = None) -> ValidateResponse:
        now = time.time()
        found = self.figures(window_s, now)
        checks = self.checks(found)
        measured = [check for check in checks if check.met is not None]
        met = sum(1 for check in measured if check.met)
        status: Literal["met", "not_met", "no_data"] = "no_data"
        if measured:
            status = "met" if met == len(measured) else "not_met"
        score = performance_score(checks)
        return ValidateResponse(
            timestamp=iso_utc(now),
            ts=now,
            window_s=found.window_s,
            status=status,
            performance_score=score,
            targets_met=met,
            targets_measured=len(measured),
            total_targets=len(checks),
            targets=checks,
            seq=self.core.view.seq,
            overall_score=score,
            target_results={check.metric: check.met for check in checks},
            current_metrics={check.metric: check.measured for check in checks},
            performance_targets={check.metric: check.target for check in checks},
            improvement_recommendations=recommendations(checks),
            validation_timestamp=iso_utc(now),
        )

    # --- load balancing -------------------------------------------------------------------------

    async def optimize(self, data: OptimizeRequest) -> OptimizeResponse:
        request_id = data.request_id or new_id()
        request = RebalanceRequested(
            scope=request_id,
            dry_run=data.dry_run,
            max_moves=data.max_moves,
            unstarted_after_s=data.unstarted_after_s,
            requested_by=data.requested_by,
            strategy=data.strategy,
            correlation_id=request_id,
        )
        try:  # asked once (expected 0): a conflict is a reused request id, never retried
            result, answer = await self.replies.ask(
                self.core.bus, request, request_id, self.core.settings.assign_wait_ms / 1000
            )
        except ConcurrencyConflict:
            raise ApiError(
                409, "conflict", f"request {request_id!r} was already made", "request_id"
            ) from None
        if answer is None:
            return OptimizeResponse(
                request_id=request_id,
                status="requested",
                dry_run=data.dry_run,
                detail="the balancer has not answered yet; its answer will be system.load_rebalanced "
                f"on scope {request_id}",
                seq=result.seq,
            )
        return OptimizeResponse(
            request_id=request_id,
            status="done",
            dry_run=answer.dry_run,
            moves=[
                MoveOut(
                    task_id=move.get("task_id", ""),
                    attempt=int(move.get("attempt", "0")),
                    from_agent_id=move.get("from_agent_id", ""),
                    to_agent_id=move.get("to_agent_id", ""),
                    waited_s=float(move.get("waited_s", "0")),
                    quality_from=float(move.get("quality_from", "0")),
                    quality_to=float(move.get("quality_to", "0")),
                )
                for move in answer.moves
            ],
            efficiency_before=answer.efficiency_before,
            efficiency_after=answer.efficiency_after,
            notes=answer.notes,
            seq=result.seq,
        )
