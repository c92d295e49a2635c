"""Health of the whole system, and Prometheus metrics of the gateway."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from services.gateway.health import HealthDesk
from services.gateway.openapi import PUBLIC, also
from services.gateway.schemas import HealthResponse

Health = NamedDependency[HealthDesk]


@get(
    "/api/v1/orchestration/health",
    summary="Health of every service instance and of NATS",
    security=PUBLIC,
    responses=also(503, HealthResponse, "Degraded: a service or NATS is missing (the body says which)"),
)
async def health(health_desk: Health) -> Response[HealthResponse]:
    report = await health_desk.system()
    return Response(report, status_code=200 if report.status == "ok" else 503)


@get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(health_desk: Health) -> Response[bytes]:
    return Response(health_desk.render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")


ROUTES = [health, metrics]
