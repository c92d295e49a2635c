"""Gateway shell: an HTTP server over the event log.

Commands become events appended with optimistic concurrency (a task id is new only once: 409 on a
duplicate); queries read the gateway's own projection, falling back to the log for tasks it no
longer keeps in memory. ``task/assign`` waits a bounded time for the router's decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from prometheus_client import Counter, Gauge

from services.gateway.errors import ApiError
from services.gateway.monitoring import MonitorDesk
from services.gateway.performance import PerformanceDesk
from services.gateway.recovery import RecoveryDesk
from services.gateway.schemas import (
    AgentOut,
    AssignmentOut,
    CancelResponse,
    HealthResponse,
    RegisterAgentRequest,
    RegisterAgentResponse,
    TaskAssignRequest,
    TaskAssignResponse,
    TaskOut,
)
from services.gateway.view import GATEWAY_VIEW
from shared.bus import ConcurrencyConflict
from shared.domain.cancellation import cancel_notice, cancellation
from shared.domain.fleet import FLEET_SPEC, TaskView
from shared.domain.message_ids import cancel_msg_id, notice_msg_id
from shared.events import (
    AgentRegistered,
    TaskAssigned,
    TaskProfile,
    TaskQueued,
    TaskSubmitted,
)
from shared.ids import new_id
from shared.projection_spec import fold
from shared.recorded import Recorded
from shared.service import Service
from shared.settings import Settings, SettingsError

SERVICES = ("router", "balancer", "recovery", "workflow", "gateway")
HEALTH_WINDOW_S = 1.0


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
        self.view.add_listener(self._on_event)
        self.recovery = RecoveryDesk(self)
        self.view.add_listener(self.recovery.on_event)
        self.performance = PerformanceDesk(self)
        self.view.add_listener(self.performance.on_event)
        self._routing_waiters: dict[str, asyncio.Future[None]] = {}
        self.port = 0
        self._server: _QuietServer | None = None
        self._server_task: asyncio.Task[None] | None = None
        registry = self.metrics.registry
        self.tasks_submitted = Counter(
            "hive_gateway_tasks_submitted_total", "Tasks submitted over HTTP", registry=registry
        )
        self.agents_gauge = Gauge("hive_agents", "Agents by status", ["status"], registry=registry)
        self.queue_gauge = Gauge("hive_queue_depth", "Tasks waiting for an agent", registry=registry)
        self.in_flight_gauge = Gauge("hive_tasks_in_flight", "Tasks held by agents", registry=registry)
        self.tasks_gauge = Gauge(
            "hive_tasks_total", "Tasks by outcome since the start of the log", ["status"], registry=registry
        )
        self.workflows_gauge = Gauge(
            "hive_workflows", "Workflows kept in memory, by status", ["status"], registry=registry
        )
        self.monitor = MonitorDesk(self)

    async def on_started(self) -> None:
        from services.gateway.app import create_app  # the app's routes import this module

        await self.recovery.start()
        await self.monitor.start()
        app = create_app(self, api_token=self.settings.api_token)
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
        await self.monitor.stop()
        await self.recovery.stop()

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
        }

    # --- events -> waiting requests -------------------------------------------------------------

    def _on_event(self, recorded: Recorded) -> None:
        event = recorded.event
        if isinstance(event, TaskAssigned | TaskQueued):
            waiter = self._routing_waiters.get(event.task_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # --- agents ---------------------------------------------------------------------------------

    async def register_agent(self, data: RegisterAgentRequest) -> RegisterAgentResponse:
        agent_id = data.agent_id or new_id()
        capabilities = (
            {c: 1.0 for c in data.capabilities} if isinstance(data.capabilities, list) else data.capabilities
        )
        session = new_id()
        result = await self.bus.append(
            AgentRegistered(
                agent_id=agent_id,
                name=data.name or agent_id,
                capabilities=capabilities,
                persona=data.persona,
                capacity=data.capacity,
                session=session,
                metadata=data.metadata,
            ),
            expected=None,
        )
        return RegisterAgentResponse(agent_id=agent_id, session=session, seq=result.seq)

    def agents_out(self) -> list[AgentOut]:
        return [
            AgentOut(
                agent_id=a.agent_id,
                name=a.name,
                status=a.status,
                capabilities=a.capabilities,
                persona=a.persona,
                capacity=a.capacity,
                in_flight=a.load,
                utilisation=round(a.utilisation, 4),
                assigned_total=a.assigned_total,
                completed=a.completed,
                failed=a.failed,
            )
            for a in sorted(self.view.state.fleet.agents.values(), key=lambda a: a.agent_id)
        ]

    # --- tasks ----------------------------------------------------------------------------------

    async def submit_task(self, data: TaskAssignRequest) -> TaskAssignResponse:
        task_id = data.task_id or new_id()
        now = time.time()
        event = TaskSubmitted(
            task_id=task_id,
            task_type=data.task_type,
            name=data.name,
            description=data.description,
            priority=data.priority,
            required_capabilities=data.required_capabilities,
            profile=TaskProfile(
                preferred_cognitive_style=data.preferred_cognitive_style,
                creativity_requirements=data.creativity_requirements,
                analytical_depth=data.analytical_depth,
                collaboration_intensity=data.collaboration_intensity,
            ),
            routing_strategy=data.routing_strategy,
            expected_quality_threshold=data.expected_quality_threshold,
            payload=data.payload,
            timeout_s=data.timeout_seconds,
            retry=data.retry,
            deadline_ts=now + data.deadline_seconds if data.deadline_seconds else None,
            estimated_duration_s=data.estimated_duration_seconds,
            submitted_by="gateway",
            correlation_id=data.correlation_id or task_id,
            ts=now,
        )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._routing_waiters[task_id] = waiter
        try:
            try:
                result = await self.bus.append(event, expected=0)
            except ConcurrencyConflict:
                raise ApiError(409, "conflict", f"task {task_id!r} already exists", "task_id") from None
            self.tasks_submitted.inc()
            if self.settings.assign_wait_ms > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        self._routed(task_id, result.seq, waiter), self.settings.assign_wait_ms / 1000
                    )
        finally:
            self._routing_waiters.pop(task_id, None)
        return self._routing_answer(task_id, result.seq)

    async def _routed(self, task_id: str, seq: int, waiter: asyncio.Future[None]) -> None:
        await self.view.wait_for(seq)
        task = self.view.state.fleet.tasks.get(task_id)
        if task is not None and (task.status != "pending" or task.assignments):
            return
        await waiter

    def _routing_answer(self, task_id: str, seq: int) -> TaskAssignResponse:
        task = self.view.state.fleet.tasks.get(task_id)
        if task is not None and task.assignments:
            last = task.assignments[-1]
            return TaskAssignResponse(
                task_id=task_id,
                status="assigned",
                attempt=last.attempt,
                agent_id=last.agent_id,
                strategy=last.strategy,
                score=last.score,
                breakdown=last.breakdown,
                rejected=last.rejected,
                explanation=last.explanation,
                seq=seq,
            )
        if task is not None and task.status == "queued":
            return TaskAssignResponse(
                task_id=task_id,
                status="queued",
                reason=task.queued_reason,
                detail=task.queued_detail,
                attempt=task.attempt,
                seq=seq,
            )
        return TaskAssignResponse(
            task_id=task_id, status="pending", detail="submitted; no routing decision yet", seq=seq
        )

    read_wait_s = 5.0
    """How long a read with ``after_seq`` may wait for this gateway to catch up."""

    async def wait_for_seq(self, seq: int) -> None:
        """Read-your-writes: wait until this gateway has applied the log up to `seq`."""
        timeout = self.read_wait_s
        try:
            await self.view.wait_for(seq, timeout)
        except TimeoutError:
            raise ApiError(503, "unavailable", f"not caught up to sequence {seq} within {timeout}s") from None

    async def _find_task(self, task_id: str) -> TaskView:
        task = self.view.state.fleet.tasks.get(task_id)
        if task is not None:
            return task
        events, _last = await self.bus.read_aggregate("task", task_id)
        if not events:
            raise ApiError(404, "not_found", f"task {task_id!r} does not exist")
        fleet = fold(FLEET_SPEC, events)
        found = fleet.tasks.get(task_id)
        if found is None:
            raise ApiError(404, "not_found", f"task {task_id!r} does not exist")
        return found

    async def task_out(self, task_id: str) -> TaskOut:
        task = await self._find_task(task_id)
        return TaskOut(
            task_id=task.task_id,
            task_type=task.spec.task_type,
            status=task.status,
            attempt=task.attempt,
            priority=task.spec.priority,
            agent_id=task.agent_id,
            required_capabilities=task.spec.required_capabilities,
            submitted_ts=task.submitted_ts,
            assigned_ts=task.assigned_ts,
            started_ts=task.started_ts,
            finished_ts=task.finished_ts,
            queued_reason=task.queued_reason,
            queued_detail=task.queued_detail,
            routing_strategy=task.spec.routing_strategy,
            expected_quality_threshold=task.spec.expected_quality_threshold,
            last_error=task.last_error,
            failure_type=task.failure_type,
            progress=task.progress,
            result=task.result,
            quality=task.quality,
            workflow_id=task.spec.workflow_id,
            assignments=[
                AssignmentOut(
                    agent_id=a.agent_id,
                    attempt=a.attempt,
                    seq=a.seq,
                    ts=a.ts,
                    strategy=a.strategy,
                    score=a.score,
                    breakdown=a.breakdown,
                    rejected=a.rejected,
                    explanation=a.explanation,
                )
                for a in task.assignments
            ],
        )

    async def cancel_task(self, task_id: str, reason: str) -> CancelResponse:
        for _ in range(10):
            task = await self._find_task(task_id)
            if task.terminal:
                raise ApiError(409, "conflict", f"task {task_id!r} is already {task.status}")
            # Both built before any await: the view (and this task in it) moves while we append.
            terminal = cancellation(task, reason)
            notice = cancel_notice(task, reason)
            try:
                result = await self.bus.append(
                    terminal,
                    expected=await self.view.expected_version("task", task_id),
                    msg_id=cancel_msg_id(task_id),
                )
            except ConcurrencyConflict:
                await self.view.catch_up()
                continue
            if notice is not None:
                await self.bus.append(notice, expected=None, msg_id=notice_msg_id(task_id, task.attempt))
            return CancelResponse(task_id=task_id, status="cancelled", seq=result.seq)
        raise ApiError(409, "conflict", f"task {task_id!r} keeps changing; try again")

    # --- health and metrics ---------------------------------------------------------------------

    async def system_health(self) -> HealthResponse:
        replies = await self.bus.gather_health(HEALTH_WINDOW_S, expect=frozenset(SERVICES))
        services: dict[str, list[dict[str, Any]]] = {name: [] for name in SERVICES}
        for reply in replies:
            services.setdefault(str(reply.get("service")), []).append(reply)
        missing = [name for name in SERVICES if not services.get(name)]
        fleet = self.view.state.fleet
        agents: dict[str, int] = {}
        for agent in fleet.agents.values():
            agents[agent.status] = agents.get(agent.status, 0) + 1
        connected = self.bus.nc.is_connected
        return HealthResponse(
            status="ok" if connected and not missing else "degraded",
            nats={
                "connected": connected,
                "server": str(self.bus.nc.connected_url.netloc) if self.bus.nc.connected_url else None,
            },
            services=services,
            missing_services=missing,
            projection_seq=self.view.seq,
            agents=agents,
            tasks=dict(fleet.totals),
        )

    def render_metrics(self) -> bytes:
        fleet = self.view.state.fleet
        counts: dict[str, int] = {
            s: 0 for s in ("active", "draining", "unresponsive", "quarantined", "deregistered")
        }
        for agent in fleet.agents.values():
            counts[agent.status] = counts.get(agent.status, 0) + 1
        for status, count in counts.items():
            self.agents_gauge.labels(status).set(count)
        self.queue_gauge.set(len(fleet.queue))
        self.in_flight_gauge.set(sum(a.load for a in fleet.agents.values()))
        for status, count in fleet.totals.items():
            self.tasks_gauge.labels(status).set(count)
        by_status = dict.fromkeys(("waiting", "running", "completed", "failed", "cancelled"), 0)
        for workflow in self.view.state.workflows.workflows.values():
            by_status[workflow.status] += 1
        for status, count in by_status.items():
            self.workflows_gauge.labels(status).set(count)
        return self.metrics.render()
