"""The Litestar application: routes, the error shape, OpenAPI, bearer-token auth."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from services.gateway.errors import EXCEPTION_HANDLERS, error_response
from services.gateway.routes import agents, health, performance, recovery, tasks, workflows
from services.gateway.service import GatewayService

PUBLIC_PATHS = frozenset({"/api/v1/orchestration/health"})
ALL_ROUTES = [
    *agents.ROUTES,
    *tasks.ROUTES,
    *workflows.ROUTES,
    *health.ROUTES,
    *recovery.ROUTES,
    *performance.ROUTES,
]


def create_app(gateway: GatewayService, api_token: str = "") -> Litestar:
    def provide_gateway() -> GatewayService:
        return gateway

    async def require_token(request: Request[Any, Any, Any]) -> Response[Any] | None:
        if not api_token or request.url.path in PUBLIC_PATHS:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_token.encode()):
            return error_response(401, "unauthorized", "missing or invalid bearer token")
        return None

    return Litestar(
        route_handlers=ALL_ROUTES,
        dependencies={"gateway": Provide(provide_gateway, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=require_token,
        signature_namespace={"GatewayService": GatewayService},
        openapi_config=OpenAPIConfig(
            title="Hive orchestration API",
            version="1.0.0",
            path="/api/v1/schema",
            description="Route tasks to AI agents, run workflows, watch the fleet. Errors share one shape: "
            '{"error": {"status", "code", "message", "field"}}.',
        ),
        debug=False,
    )
