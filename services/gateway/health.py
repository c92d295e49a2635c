"""The gateway's health desk: the health of every service instance, and the gateway's Prometheus metrics.

Health is asked of every instance on ``hive.svc.health`` (scatter-gather, ``HEALTH_WINDOW_S``);
the fleet gauges are set from the gateway's projection when ``/metrics`` is read (the windowed
orchestration gauges by the monitor, ``monitoring.py``; the per-agent series and histograms by
``fleet_collector.py``).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Gauge

from services.gateway.core import GatewayCore
from services.gateway.schemas import HealthResponse
from services.gateway.timestamps import iso_utc
from shared.metrics import ServiceMetrics

SERVICES = ("router", "balancer", "recovery", "workflow", "gateway")
COMPONENTS: dict[str, tuple[str, ...]] = {
    "orchestration_engine": ("gateway", "balancer"),
    "task_router": ("router",),
    "recovery_manager": ("recovery",),
    "workflow_engine": ("workflow",),
    "persona_system": ("router",),
}
"""The specification's components and the services that do their work (persona matching is part of
routing; the engine's entry point and load distribution are the gateway and the balancer)."""
HEALTH_WINDOW_S = 1.0
AGENT_STATUSES = ("active", "draining", "unresponsive", "stalled", "quarantined", "deregistered")
WORKFLOW_STATUSES = ("waiting", "running", "completed", "failed", "cancelled")


class HealthDesk:
    def __init__(self, core: GatewayCore, metrics: ServiceMetrics) -> None:
        self.core = core
        self.metrics = metrics
        registry = metrics.registry
        self.agents_gauge = Gauge("hive_agents", "Agents by status", ["status"], registry=registry)
        self.queue_gauge = Gauge("hive_queue_depth", "Tasks waiting for an agent", registry=registry)
        self.in_flight_gauge = Gauge("hive_tasks_in_flight", "Tasks held by agents", registry=registry)
        self.tasks_gauge = Gauge(
            "hive_tasks_total", "Tasks by outcome since the start of the log", ["status"], registry=registry
        )
        self.workflows_gauge = Gauge(
            "hive_workflows", "Workflows kept in memory, by status", ["status"], registry=registry
        )

    async def system(self) -> HealthResponse:
        bus = self.core.bus
        replies = await bus.gather_health(HEALTH_WINDOW_S, expect=frozenset(SERVICES))
        services: dict[str, list[dict[str, Any]]] = {name: [] for name in SERVICES}
        for reply in replies:
            services.setdefault(str(reply.get("service")), []).append(reply)
        missing = [name for name in SERVICES if not services.get(name)]
        fleet = self.core.view.state.fleet
        agents: dict[str, int] = {}
        for agent in fleet.agents.values():
            agents[agent.status] = agents.get(agent.status, 0) + 1
        connected = bus.nc.is_connected
        states = component_states(services)
        now = time.time()
        started = [float(r.get("started_ts") or 0.0) for r in replies if r.get("started_ts")]
        return HealthResponse(
            status="ok" if connected and not missing else "degraded",
            running=connected and all(state == "healthy" for state in states.values()),
            components=states,
            uptime_seconds=round(now - min(started), 1) if started else 0.0,
            integration_mode=self.core.settings.integration_mode,
            timestamp=iso_utc(now),
            nats={
                "connected": connected,
                "server": str(bus.nc.connected_url.netloc) if bus.nc.connected_url else None,
            },
            services=services,
            missing_services=missing,
            projection_seq=self.core.view.seq,
            agents=agents,
            tasks=dict(fleet.totals),
        )

    def render_metrics(self) -> bytes:
        state = self.core.view.state
        fleet = state.fleet
        counts: dict[str, int] = dict.fromkeys(AGENT_STATUSES, 0)
        for agent in fleet.agents.values():
            counts[agent.status] = counts.get(agent.status, 0) + 1
        for status, count in counts.items():
            self.agents_gauge.labels(status).set(count)
        self.queue_gauge.set(len(fleet.queue))
        self.in_flight_gauge.set(sum(a.load for a in fleet.agents.values()))
        for status, count in fleet.totals.items():
            self.tasks_gauge.labels(status).set(count)
        by_status = dict.fromkeys(WORKFLOW_STATUSES, 0)
        for workflow in state.workflows.workflows.values():
            by_status[workflow.status] += 1
        for status, count in by_status.items():
            self.workflows_gauge.labels(status).set(count)
        return self.metrics.render()


def component_states(services: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Each component healthy when every service it needs has a ready instance, starting when one
    has instances none of which is ready yet, missing when one has none."""
    states: dict[str, str] = {}
    for component, needed in COMPONENTS.items():
        worst = "healthy"
        for name in needed:
            instances = services.get(name, [])
            if not instances:
                worst = "missing"
                break
            if not any(instance.get("status") == "ok" for instance in instances):
                worst = "starting"
        states[component] = worst
    return states
