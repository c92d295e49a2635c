"""The Litestar application: routes, the desks they are given, the error shape, OpenAPI, bearer-token auth."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Litestar
from litestar.di import Provide

from services.gateway.agents import AgentDesk
from services.gateway.errors import EXCEPTION_HANDLERS
from services.gateway.events import EventDesk
from services.gateway.guards import guard
from services.gateway.health import HealthDesk
from services.gateway.limits import LimitDesk
from services.gateway.monitoring import MonitorDesk
from services.gateway.openapi import StrictStructs, openapi_config
from services.gateway.performance import PerformanceDesk
from services.gateway.recovery import RecoveryDesk
from services.gateway.routes import (
    agents,
    events,
    health,
    limits,
    performance,
    recovery,
    schedules,
    stream,
    tasks,
    ui,
    workflows,
)
from services.gateway.schedules import ScheduleDesk
from services.gateway.stream import StreamHub
from services.gateway.tasks import TaskDesk
from services.gateway.workflows import WorkflowDesk

DEFAULT_MAX_BODY_BYTES = 1_048_576
ALL_ROUTES = [
    *agents.ROUTES,
    *tasks.ROUTES,
    *workflows.ROUTES,
    *events.ROUTES,
    *health.ROUTES,
    *recovery.ROUTES,
    *performance.ROUTES,
    *schedules.ROUTES,
    *limits.ROUTES,
    *stream.ROUTES,
    *ui.ROUTES,
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
    monitor: MonitorDesk
    schedules: ScheduleDesk
    limits: LimitDesk
    stream: StreamHub

    def dependencies(self) -> dict[str, Provide]:
        return {
            "task_desk": _provide(self.tasks),
            "agent_desk": _provide(self.agents),
            "workflow_desk": _provide(self.workflows),
            "event_desk": _provide(self.events),
            "recovery_desk": _provide(self.recovery),
            "performance_desk": _provide(self.performance),
            "health_desk": _provide(self.health),
            "monitor_desk": _provide(self.monitor),
            "schedule_desk": _provide(self.schedules),
            "limit_desk": _provide(self.limits),
            "stream_hub": _provide(self.stream),
        }


def _provide(desk: object) -> Provide:
    def provider() -> Any:
        return desk

    return Provide(provider, sync_to_thread=False)


def create_app(
    desks: Desks,
    api_token: str = "",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    before_read: Callable[[], Awaitable[None]] | None = None,
) -> Litestar:
    """`before_read`: awaited before each read of the API (``GatewayCore.own_writes_applied``)."""
    return Litestar(
        route_handlers=ALL_ROUTES,
        dependencies=desks.dependencies(),
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=guard(api_token, max_body_bytes, before_read),
        request_max_body_size=max_body_bytes,
        openapi_config=openapi_config(),
        plugins=[StrictStructs()],
        debug=False,
        # structlog writes every line (``handle_internal`` logs what fails); Litestar's default
        # logging config would reconfigure stdlib logging and start a queue thread per app.
        logging_config=None,
    )
