"""Gateway shell: assembles the core, the desks and the HTTP server over the event log.

The core is the gateway's projection with the bus and the settings; each desk (tasks, agents,
workflows, recovery, performance, health, monitor) takes the core, and the routes are given the desks by
the application. This module only builds them, wires the desks that wait for events to the
projection, and runs uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

from services.gateway.agents import AgentDesk
from services.gateway.app import Desks, create_app
from services.gateway.connections import deadline_protocol
from services.gateway.core import GatewayCore
from services.gateway.events import EventDesk
from services.gateway.health import HealthDesk
from services.gateway.limits import LimitDesk
from services.gateway.monitoring import MonitorDesk
from services.gateway.performance import PerformanceDesk
from services.gateway.query.model import QueryModel
from services.gateway.recovery import RecoveryDesk
from services.gateway.schedules import ScheduleDesk
from services.gateway.stream import StreamHub
from services.gateway.tasks import TaskDesk
from services.gateway.view import GATEWAY_VIEW
from services.gateway.workflows import WorkflowDesk
from shared.service import Service
from shared.settings import Settings, SettingsError


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the service shell owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


VERSIONS_KEPT = 50_000
"""Aggregates whose last sequence the gateway's projection keeps (the rest: asked when needed)."""


class GatewayService(Service):
    name = "gateway"
    serves_metrics_port = False

    async def setup(self) -> None:
        # Commands on older aggregates ask the server for their version: memory stays flat.
        self.view = self.projection(GATEWAY_VIEW, max_versions=VERSIONS_KEPT)
        self.query = QueryModel(
            self.bus,
            self.view,
            home=self.settings.hive_home,
            instance=self.settings.instance,
            retention_s=self.settings.query_retention_s,
        )
        await self.query.open()  # claims this gateway's file now: a second one is refused at start
        self.core = GatewayCore(self.bus, self.view, self.query, self.settings)
        self.tasks = TaskDesk(self.core, self.metrics.registry)
        self.recovery = RecoveryDesk(self.core)
        self.performance = PerformanceDesk(self.core)
        self.monitor = MonitorDesk(self.core, self.performance, self.metrics.registry, self.log)
        self.stream = StreamHub(lambda: self.view.seq, ticket_secret=self.settings.api_token)
        self.monitor.sample_listeners.append(self.stream.on_sample)
        self.desks = Desks(
            tasks=self.tasks,
            agents=AgentDesk(self.core, heard=self.recovery.last_heartbeat),
            workflows=WorkflowDesk(self.core),
            events=EventDesk(self.core),
            recovery=self.recovery,
            performance=self.performance,
            health=HealthDesk(self.core, self.metrics),
            monitor=self.monitor,
            schedules=ScheduleDesk(self.core),
            limits=LimitDesk(self.core),
            stream=self.stream,
        )
        for desk in (self.tasks, self.recovery, self.performance):  # each waits for answers in the log
            self.view.add_listener(desk.on_event)
        self.view.add_listener(self.stream.on_event)
        self.port = 0
        self._server: _QuietServer | None = None
        self._server_task: asyncio.Task[None] | None = None

    async def on_started(self) -> None:
        await self.query.start()  # catches up from its file in the background; reads wait for it
        await self.recovery.start()
        await self.monitor.start()
        app = create_app(
            self.desks,
            api_token=self.settings.api_token,
            max_body_bytes=self.settings.gateway_max_body_bytes,
            before_read=self.core.own_writes_applied,  # it reads in bursts: its own writes are waited for
        )
        settings = self.settings
        config = uvicorn.Config(
            app,
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_config=None,
            access_log=False,
            lifespan="on",
            http=deadline_protocol(
                settings.gateway_header_timeout_s,
                settings.gateway_body_timeout_s,
                settings.gateway_max_connections,
            ),
            timeout_keep_alive=settings.gateway_keepalive_s,  # type: ignore[arg-type]  # seconds; floats work
        )
        self._server = _QuietServer(config)
        self._server_task = asyncio.create_task(self._server.serve(), name="uvicorn")
        while not self._server.started:
            if self._server_task.done():
                self._server_task.result()
                raise RuntimeError(f"gateway could not listen on port {self.settings.gateway_port}")
            await asyncio.sleep(0.01)
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        self.metrics_port = self.port  # /metrics is one of its routes
        self.log.info("gateway_listening", url=f"http://{self.settings.gateway_host}:{self.port}")

    async def on_stopping(self) -> None:
        self.stream.close()  # open streams end first: the HTTP server waits for every response
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._server_task, return_exceptions=True)
        await self.monitor.stop()
        await self.recovery.stop()
        await self.query.stop()

    async def on_released(self) -> None:
        await self.query.release()  # a stop that failed before the query model's own stop

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        if settings.requires_api_token and not settings.api_token:
            raise SettingsError(
                f"INTEGRATION_MODE={settings.integration_mode} requires HIVE_API_TOKEN: the gateway serves "
                "no one without it ('hive up' generates one under <HIVE_HOME>/auth/api-token)"
            )

    def details(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "integration_mode": self.settings.integration_mode,
            "performance_alerts": self.settings.enable_performance_alerts,
            "alerts_appended": self.monitor.alerts_appended,
            "monitoring_interval_s": self.settings.monitoring_interval_seconds,
            "history_samples": len(self.monitor.history.samples),
            "query_model": self.query.details(),
        }
