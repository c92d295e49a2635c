"""Performance: orchestration metrics and their history, validation against the targets,
load-balancing optimize."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from services.gateway.monitoring import MonitorDesk
from services.gateway.openapi import READ, WRITE, also, refusals
from services.gateway.performance import PerformanceDesk
from services.gateway.performance_schemas import (
    MetricsHistoryResponse,
    MetricsResponse,
    OptimizeRequest,
    OptimizeResponse,
    ValidateResponse,
)

Performance = NamedDependency[PerformanceDesk]
Monitor = NamedDependency[MonitorDesk]
Window = Annotated[
    float | None,
    Parameter(gt=0, le=3600, description="seconds the figures cover, ending now (default: METRICS_WINDOW_S)"),
]


@get(
    "/api/v1/orchestration/metrics",
    summary="Orchestration figures computed from the event log over a window",
    description="Each figure is null when the window holds nothing to measure it on; README "
    "'Metrics and targets' says exactly how each is computed.",
    responses=refusals(*READ),
)
async def orchestration_metrics(performance_desk: Performance, window_s: Window = None) -> MetricsResponse:
    return performance_desk.metrics(window_s)


@get(
    "/api/v1/orchestration/metrics/history",
    summary="The figures as sampled every MONITORING_INTERVAL_SECONDS, kept METRICS_RETENTION_HOURS",
    responses=refusals(*READ),
)
async def metrics_history(
    monitor_desk: Monitor,
    since_s: Annotated[
        float | None,
        Parameter(gt=0, description="only the samples of the last since_s seconds (default: all kept)"),
    ] = None,
) -> MetricsHistoryResponse:
    return monitor_desk.history_out(since_s)


@get(
    "/api/v1/orchestration/performance/validate",
    summary="Each target with its measured value and whether it is met",
    responses=refusals(*READ),
)
async def validate_performance(performance_desk: Performance, window_s: Window = None) -> ValidateResponse:
    return performance_desk.validate(window_s)


@post(
    "/api/v1/orchestration/load-balancing/optimize",
    summary="Move assigned work that waits unstarted to idle capable agents, now",
    description="200 with the moves and the efficiency before and after when the balancer answered "
    "within ASSIGN_WAIT_MS, else 202. dry_run only says what would move. 409 on a reused request_id.",
    status_code=200,
    responses={
        **also(202, OptimizeResponse, "Requested: the balancer has not answered yet"),
        **refusals(*WRITE, 409),
    },
)
async def optimize_load(
    performance_desk: Performance, data: JSONBody[OptimizeRequest | None] = None
) -> Response[OptimizeResponse]:
    answer = await performance_desk.optimize(data or OptimizeRequest())
    return Response(answer, status_code=200 if answer.status == "done" else 202)


ROUTES = [orchestration_metrics, metrics_history, validate_performance, optimize_load]
