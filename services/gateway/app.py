"""The Litestar application: routes, the desks they are given, the error shape, OpenAPI, bearer-token auth."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from services.gateway.agents import AgentDesk
from services.gateway.errors import EXCEPTION_HANDLERS, error_response
from services.gateway.events import EventDesk
from services.gateway.health import HealthDesk
from services.gateway.performance import PerformanceDesk
from services.gateway.recovery import RecoveryDesk
from services.gateway.routes import agents, events, health, performance, recovery, tasks, workflows
from services.gateway.tasks import TaskDesk
from services.gateway.workflows import WorkflowDesk

PUBLIC_PATHS = frozenset({"/api/v1/orchestration/health"})
ALL_ROUTES = [
    *agents.ROUTES,
    *tasks.ROUTES,
    *workflows.ROUTES,
    *events.ROUTES,
    *health.ROUTES,
    *recovery.ROUTES,
    *performance.ROUTES,
]


@dataclass(frozen=True)
class Desks:
    """One desk per resource; a route names the one it needs (``task_desk: NamedDependency[TaskDesk]``)."""

    tasks: TaskDesk
    agents: AgentDesk
    workflows: WorkflowDesk
    events: EventDesk
    recovery: RecoveryDesk
    performance: PerformanceDesk
    health: HealthDesk

    def dependencies(self) -> dict[str, Provide]:
        return {
            "task_desk": _provide(self.tasks),
            "agent_desk": _provide(self.agents),
            "workflow_desk": _provide(self.workflows),
            "event_desk": _provide(self.events),
            "recovery_desk": _provide(self.recovery),
            "performance_desk": _provide(self.performance),
            "health_desk": _provide(self.health),
        }


def _provide(desk: object) -> Provide:
    def provider() -> Any:
        return desk

    return Provide(provider, sync_to_thread=False)


def create_app(desks: Desks, api_token: str = "") -> Litestar:
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
        dependencies=desks.dependencies(),
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=require_token,
        openapi_config=OpenAPIConfig(
            title="Hive orchestration API",
            version="1.0.0",
            path="/api/v1/schema",
            description="Route tasks to AI agents, run workflows, watch the fleet. Errors share one shape: "
            '{"error": {"status", "code", "message", "field"}}.',
        ),
        debug=False,
    )
