"""Health of the whole system, and Prometheus metrics of the gateway."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from services.gateway.schemas import HealthResponse
from services.gateway.service import GatewayService

Gateway = NamedDependency[GatewayService]


@get("/api/v1/orchestration/health", summary="Health of every service instance and of NATS")
async def health(gateway: Gateway) -> Response[HealthResponse]:
    report = await gateway.system_health()
    return Response(report, status_code=200 if report.status == "ok" else 503)


@get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(gateway: Gateway) -> Response[bytes]:
    return Response(gateway.render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")


ROUTES = [health, metrics]
