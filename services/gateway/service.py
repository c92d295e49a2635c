"""Gateway shell: assembles the core, the desks and the HTTP server over the event log.

The core is the gateway's projection with the bus and the settings; each desk (tasks, agents,
workflows, recovery, performance, health) takes the core, and the routes are given the desks by
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
from services.gateway.core import GatewayCore
from services.gateway.events import EventDesk
from services.gateway.health import HealthDesk
from services.gateway.performance import PerformanceDesk
from services.gateway.query.model import QueryModel
from services.gateway.recovery import RecoveryDesk
from services.gateway.tasks import TaskDesk
from services.gateway.view import GATEWAY_VIEW
from services.gateway.workflows import WorkflowDesk
from shared.service import Service


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the service shell owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GatewayService(Service):
    name = "gateway"
    serves_metrics_port = False

    async def setup(self) -> None:
        self.view = self.projection(GATEWAY_VIEW)
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
        self.desks = Desks(
            tasks=self.tasks,
            agents=AgentDesk(self.core),
            workflows=WorkflowDesk(self.core),
            events=EventDesk(self.core),
            recovery=self.recovery,
            performance=self.performance,
            health=HealthDesk(self.core, self.performance, self.metrics),
        )
        for desk in (self.tasks, self.recovery, self.performance):  # each waits for answers in the log
            self.view.add_listener(desk.on_event)
        self.port = 0
        self._server: _QuietServer | None = None
        self._server_task: asyncio.Task[None] | None = None

    async def on_started(self) -> None:
        await self.query.start()  # catches up from its file in the background; reads wait for it
        await self.recovery.start()
        app = create_app(self.desks, api_token=self.settings.api_token)
        config = uvicorn.Config(
            app,
            host=self.settings.gateway_host,
            port=self.settings.gateway_port,
            log_config=None,
            access_log=False,
            lifespan="on",
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
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._server_task, return_exceptions=True)
        await self.recovery.stop()
        await self.query.stop()

    def details(self) -> dict[str, Any]:
        return {"port": self.port, "query_model": self.query.details()}
